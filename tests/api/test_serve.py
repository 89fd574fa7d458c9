"""``cap-agent serve`` as a process: first start, one-time admin token, SIGTERM drain."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from blake3 import blake3

from ledger.datadir import DataDir, resolve_keys
from ledger.ledger import Ledger
from tests.api.service import start_service


def test_first_start_initializes_and_prints_admin_token_once(tmp_path):
    data = tmp_path / "fresh"
    svc = start_service(data)
    try:
        assert svc.admin_token is not None
        assert any("initialized" in d for d in svc.lines)
        auth = {"Authorization": f"Bearer {svc.admin_token}"}
        assert httpx.get(f"{svc.url}/healthz").json() == {"status": "ok"}
        head = httpx.get(f"{svc.url}/v1/ledger/head", headers=auth)
        assert head.status_code == 200
        assert head.json()["seq"] == 1  # genesis + the admin token's token.create
        assert httpx.get(f"{svc.url}/v1/ledger/head").status_code == 401
    finally:
        code, err = svc.stop()
    assert code == 0, err
    assert svc.admin_token not in err
    access = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert {a["status"] for a in access if a["event"] == "http.request"} == {200, 401}
    assert all("request_id" in a for a in access if a["event"] == "http.request")

    again = start_service(data)
    try:
        assert again.admin_token is None  # shown once, on the first start only
        auth = {"Authorization": f"Bearer {svc.admin_token}"}
        assert httpx.get(f"{again.url}/v1/ledger/head", headers=auth).status_code == 200
    finally:
        code, err = again.stop()
    assert code == 0, err


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_under_load_loses_no_acknowledged_write(tmp_path, workers):
    """Also with two worker processes: the parent forwards SIGTERM, each drains."""
    data = tmp_path / "load"
    svc = start_service(data, "--workers", str(workers))
    auth = {"Authorization": f"Bearer {svc.admin_token}"}
    acked: list[tuple[int, dict]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=svc.url, headers=auth, timeout=30) as http:
            i = 0
            while not stop.is_set():
                payload = {"client": n, "i": i}
                i += 1
                try:
                    resp = http.post("/v1/events", json={"type": "load.ev", "payload": payload})
                except httpx.HTTPError:
                    return  # the service has stopped listening
                if 200 <= resp.status_code < 300:
                    with lock:
                        acked.append((resp.json()["seq"], payload))
                elif resp.status_code != 503:
                    raise AssertionError(resp.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    code, err = svc.stop()
    stop.set()
    for t in threads:
        t.join(30)
    assert code == 0, err[-2000:]
    assert "stopped: drained, committed, closed" in err
    assert len(acked) >= 200
    access = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    served_by = {a.get("worker") for a in access if a["event"] == "http.request"}
    assert served_by == ({None} if workers == 1 else {0, 1})  # 16 connections, both busy

    root = DataDir(data)
    keys, _ = resolve_keys(root)
    with Ledger.open(root, keys) as led:
        for seq, payload in acked:
            ev = led.log.get(seq)
            assert ev.type == "load.ev" and ev.payload == payload
        assert led.log.verify().count == led.log.head().seq + 1


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_big_blob_streams_up_and_down_in_constant_memory(tmp_path):
    """256 MiB up and down through the live service: its peak RSS grows by far less than
    the blob (both directions stream in 1 MiB chunks)."""
    size = 256 << 20
    chunk = bytes(range(256)) * 4096  # 1 MiB
    svc = start_service(tmp_path / "big")
    auth = {"Authorization": f"Bearer {svc.admin_token}"}
    try:
        with httpx.Client(base_url=svc.url, headers=auth, timeout=120) as http:
            http.get("/v1/ledger/head")
            before = _peak_rss_kib(svc.proc.pid)

            def body():
                for _ in range(size // len(chunk)):
                    yield chunk

            resp = http.put(
                "/v1/blobs", content=body(), headers={"Content-Type": "application/x-big"}
            )
            assert resp.status_code == 201, resp.text
            doc = resp.json()
            want = blake3()
            for _ in range(size // len(chunk)):
                want.update(chunk)
            assert doc["blob_id"] == want.hexdigest() and doc["size"] == size
            got, n = blake3(), 0
            with http.stream("GET", f"/v1/blobs/{doc['blob_id']}") as down:
                assert down.status_code == 200
                for part in down.iter_bytes():
                    got.update(part)
                    n += len(part)
            assert (n, got.hexdigest()) == (size, doc["blob_id"])
            grew_mib = (_peak_rss_kib(svc.proc.pid) - before) / 1024
    finally:
        code, err = svc.stop()
    assert code == 0, err[-2000:]
    assert grew_mib < 48, f"peak RSS grew by {grew_mib:.0f} MiB for a 256 MiB blob"
