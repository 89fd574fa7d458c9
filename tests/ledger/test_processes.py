"""Real OS processes: two writers never fork the chain; kill -9 loses nothing acknowledged."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.keys import StaticKeyProvider
from ledger.ledger import Ledger
from ledger.log import Append
from ledger.store import DEFAULT_MAP_SIZE
from tests.conftest import REPO, TEST_KEY, cli_env

KEYS = StaticKeyProvider(TEST_KEY)


def appender(root: Path, name: str, count: int, threads: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ledger.appender_proc",
            str(root),
            name,
            str(count),
            str(threads),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
        text=True,
    )


def acknowledged(lines: list[str]) -> dict[int, int]:
    """``seq -> i`` for every acknowledgement printed."""
    return {int(s): int(i) for s, i in (line.split() for line in lines if line.strip())}


@pytest.mark.slow
def test_two_processes_appending_at_once_never_fork(tmp_path):
    root = tmp_path / "led"
    Ledger.init(root, KEYS)
    go = tmp_path / "go"
    procs = {name: appender(root, name, 1000, 4, str(go)) for name in ("a", "b")}
    time.sleep(0.5)  # both are open and waiting
    go.touch()
    acks = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        acks[name] = acknowledged(out.splitlines())
        assert sorted(acks[name].values()) == list(range(1000))
    assert not set(acks["a"]) & set(acks["b"])  # no seq was handed out twice
    owners = [name for _, name in sorted((s, n) for n in acks for s in acks[n])]
    assert sum(x != y for x, y in itertools.pairwise(owners)) > 1  # truly interleaved
    with Ledger.open(root, KEYS) as led:
        report = led.log.verify()
        assert (report.count, report.last) == (2001, 2000)
        events = list(led.log.events(after=0))
    assert [e.seq for e in events] == list(range(1, 2001))
    for ev in events:  # every event is the one its writer was told it got
        who = ev.payload["who"]
        assert acks[who][ev.seq] == ev.payload["i"]
        assert ev.actor == f"proc:{who}"


@pytest.mark.slow
def test_sigkill_mid_stream_keeps_every_acknowledged_event(tmp_path):
    root = tmp_path / "led"
    Ledger.init(root, KEYS)
    proc = appender(root, "k", 100_000, 8)
    assert proc.stdout is not None
    lines = []
    while len(lines) < 300:  # kill it in the middle of a busy stream of group commits
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "appender exited"
        lines.append(line)
    os.kill(proc.pid, signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    acks = acknowledged(lines + rest.splitlines())
    assert len(acks) >= 300
    with Ledger.open(root, KEYS) as led:
        report = led.log.verify()  # the log a killed writer leaves is whole
        assert report.last >= max(acks)
        for seq, i in acks.items():
            ev = led.log.get(seq)
            assert (ev.type, ev.payload) == ("test.proc", {"i": i, "who": "k"})
        # the dead writer held LMDB's write lock at some point; a new writer is not blocked
        after = led.log.append("test.after", {"ok": True})
        assert after.seq == report.last + 1
        assert led.log.verify().count == report.last + 2


_HOLD_WRITE_LOCK = """
import sys, lmdb
env = lmdb.open(sys.argv[1], map_size=int(sys.argv[2]), max_dbs=64, subdir=True)
txn = env.begin(write=True)
print("locked", flush=True)
sys.stdin.readline()
txn.abort()
"""


def test_appends_queued_while_another_process_commits_join_the_next_commit(tmp_path):
    """LMDB's write lock is held elsewhere (another serving process committing): what
    queues meanwhile goes out in one commit, not one commit per arrival."""
    root = tmp_path / "led"
    Ledger.init(root, KEYS)
    with Ledger.open(root, KEYS) as ledger:
        commits: list[list[int]] = []
        ledger.log.add_listener(lambda events: commits.append([e.seq for e in events]))
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_WRITE_LOCK, str(ledger.data.lmdb), str(DEFAULT_MAP_SIZE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            first = ledger.log.submit([Append("t.first", {})])
            time.sleep(0.3)  # the writer has taken it and waits for the lock
            rest = [ledger.log.submit([Append("t.rest", {"i": i})]) for i in range(5)]
            time.sleep(0.1)
            assert not first.done()  # nothing commits while the other process holds it
            holder.stdin.write("\n")
            holder.stdin.flush()
            events = [e for f in [first, *rest] for e in f.result(timeout=30)]
        finally:
            holder.kill()
            holder.wait()
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
        assert commits == [[1, 2, 3, 4, 5, 6]]  # one commit, not [1] then [2..6]
