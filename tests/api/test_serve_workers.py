"""``serve --workers N``: several processes on one port, one service to its users."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ledger.datadir import DataDir, resolve_keys
from ledger.ledger import Ledger
from tests.api.service import start_service
from tests.conftest import run_cli


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _put(url: str, auth: dict[str, str], i: int) -> dict:
    """One blob put on a connection of its own (new connections spread over the workers)."""
    resp = httpx.put(f"{url}/v1/blobs", content=b"blob %d" % i, headers=auth, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _counter(metrics: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in metrics.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_metrics_count_every_workers_requests(tmp_path):
    """Small puts go through the writer process, a large one is put by its worker: both
    workers' requests and every process's events are counted once."""
    svc = start_service(tmp_path / "m", "--workers", "2")
    auth = {"Authorization": f"Bearer {svc.admin_token}"}
    try:
        with ThreadPoolExecutor(8) as pool:
            puts = list(pool.map(lambda i: _put(svc.url, auth, i), range(59)))
        big = os.urandom(300 << 10)  # past the LMDB tier: the file tier, put by the worker
        resp = httpx.put(f"{svc.url}/v1/blobs", content=big, headers=auth, timeout=30)
        assert resp.status_code == 201 and resp.json()["tier"] == "fs", resp.text
        puts.append(resp.json())
        got = httpx.get(f"{svc.url}/v1/blobs/{resp.json()['blob_id']}", headers=auth, timeout=30)
        assert got.content == big
        # Whichever worker answers the scrape, it reports both workers' requests.
        for _ in range(4):
            text = httpx.get(f"{svc.url}/metrics", headers=auth).text
            assert _counter(text, "cap_http_requests_total", route="/v1/blobs", status="201") == 60
            assert _counter(text, "cap_events_appended_total", type="blob.put") == 60
    finally:
        code, err = svc.stop()
    assert code == 0, err[-2000:]
    served_by = {json.loads(x).get("worker") for x in err.splitlines() if '"http.request"' in x}
    assert served_by == {0, 1}
    assert len({p["seq"] for p in puts}) == 60


def test_a_stream_on_one_worker_sees_writes_served_by_the_other(tmp_path):
    svc = start_service(tmp_path / "s", "--workers", "2", "--heartbeat", "60")
    auth = {"Authorization": f"Bearer {svc.admin_token}"}
    try:
        with httpx.stream("GET", f"{svc.url}/v1/events/stream", headers=auth, timeout=10) as stream:
            puts = [_put(svc.url, auth, i) for i in range(20)]  # 20 connections: both workers
            seen: list[int] = []
            started = time.monotonic()
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    doc = json.loads(line[6:])
                    if doc["type"] == "blob.put":
                        seen.append(doc["seq"])
                if len(seen) == 20:
                    break
            assert time.monotonic() - started < 8  # not the 60 s heartbeat
    finally:
        code, err = svc.stop()
    assert code == 0, err[-2000:]
    assert seen == sorted(p["seq"] for p in puts)
    served_by = {json.loads(x).get("worker") for x in err.splitlines() if '"PUT"' in x}
    assert served_by == {0, 1}


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (state 0A in /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    return inodes


def _roles(pid: int, port: int) -> dict[str, list[int]]:
    """The service's children: workers (they listen on the port) and the writer."""
    listening = _listening_inodes(port)
    roles: dict[str, list[int]] = {"worker": [], "writer": []}
    for child in _children(pid):
        fds = Path(f"/proc/{child}/fd")
        sockets = {os.readlink(fds / fd)[8:-1] for fd in os.listdir(fds)}
        roles["worker" if sockets & listening else "writer"].append(child)
    return roles


@pytest.mark.parametrize("victim", ["worker", "writer"])
def test_a_process_killed_stops_the_service_and_loses_nothing(tmp_path, victim):
    data = tmp_path / "k"
    svc = start_service(data, "--workers", "2")
    auth = {"Authorization": f"Bearer {svc.admin_token}"}
    puts = [_put(svc.url, auth, i) for i in range(10)]
    roles = _roles(svc.proc.pid, int(svc.url.rsplit(":", 1)[1]))
    assert len(roles["worker"]) == 2 and len(roles["writer"]) == 1
    os.kill(roles[victim][0], signal.SIGKILL)
    svc.proc.wait(30)  # the parent takes the others down and exits
    code, err = svc.stop()
    assert code == 1
    assert "worker_lost" in err and "a worker failed" in err
    for pid in roles["worker"] + roles["writer"]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    root = DataDir(data)
    keys, _ = resolve_keys(root)
    with Ledger.open(root, keys) as led:
        assert [led.log.get(p["seq"]).payload["blob_id"] for p in puts] == [
            p["blob_id"] for p in puts
        ]
        assert led.log.verify().count == led.log.head().seq + 1


@pytest.mark.parametrize("value", ["0", "65", "-1"])
def test_workers_out_of_range_is_bad_input(tmp_path, value):
    res = run_cli("--data", str(tmp_path / "w"), "serve", "--workers", value)
    assert res.code == 2 and "E-BAD-INPUT" in res.err and "--workers" in res.err
    assert not (tmp_path / "w").exists()  # refused before anything was initialized


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_a_clear_error(tmp_path, workers):
    svc = start_service(tmp_path / "first")
    try:
        port = svc.url.rsplit(":", 1)[1]
        res = run_cli(
            "--data", str(tmp_path / "second"), "serve", "--port", port, "--workers", workers
        )
        assert res.code == 2 and "E-BAD-INPUT" in res.err and "cannot listen" in res.err
        assert "Traceback" not in res.err
    finally:
        code, err = svc.stop()
    assert code == 0, err[-2000:]


def test_an_unknown_host_is_a_clear_error(tmp_path):
    res = run_cli("--data", str(tmp_path / "h"), "serve", "--host", "no-such-host.invalid")
    assert res.code == 2 and "cannot listen on no-such-host.invalid" in res.err


def test_a_second_multi_worker_service_cannot_share_the_port(tmp_path):
    """SO_REUSEPORT lets sockets with the option share a port; the parent refuses a port
    another service already answers on, so two ledgers never split one port's traffic."""
    svc = start_service(tmp_path / "first", "--workers", "2")
    try:
        port = svc.url.rsplit(":", 1)[1]
        res = run_cli("--data", str(tmp_path / "second"), "serve", "--port", port, "--workers", "2")
        assert res.code == 2 and "cannot listen" in res.err and "already in use" in res.err
    finally:
        code, err = svc.stop()
    assert code == 0, err[-2000:]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_signal_to_the_whole_process_group_drains_cleanly(tmp_path, workers):
    """Ctrl-C in a terminal (or `timeout`) signals every process of the group: a worker
    then gets that signal and its parent's forwarded SIGTERM. The second must not kill it
    halfway through its drain."""
    svc = start_service(tmp_path / "g", "--workers", workers, new_session=True)
    auth = {"Authorization": f"Bearer {svc.admin_token}"}
    puts = [_put(svc.url, auth, i) for i in range(10)]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGTERM):
        with contextlib.suppress(ProcessLookupError):  # all gone already
            os.killpg(svc.proc.pid, sig)
        time.sleep(0.02)  # the next one lands while the first drains
    code, err = svc.stop()
    assert code == 0, err[-2000:]
    assert "stopped: drained, committed, closed" in err
    assert "worker_exited" not in err
    root = DataDir(tmp_path / "g")
    keys, _ = resolve_keys(root)
    with Ledger.open(root, keys) as led:
        assert [led.log.get(p["seq"]).type for p in puts] == ["blob.put"] * 10
