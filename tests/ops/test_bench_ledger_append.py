"""The ledger append benchmark runs end to end in its quick mode, peer included."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.conftest import REPO


def test_ledger_append_bench_quick_reports_both_sides_and_targets() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "ops/bench/ledger_append.py"), "--quick", "--json"],
        capture_output=True,
        cwd=REPO,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "synchronous=FULL" in out and "journal_mode=wal" in out  # the peer is durable too
    for label, target in [
        ("(a) batched appends", ">= 200,000/s"),
        ("(b) 32 writers, 1 event each: threads", ">= 10x peer"),
        ("(b) 32 writers, 1 event each: asyncio", ">= 10x peer"),
        ("(c) verify", ">= 300,000/s"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(label))
        assert target in line
        assert re.search(r"[\d,]+/s \([\d,]+\.\.[\d,]+\)", line)  # median (min..max)
    raw = json.loads(out.splitlines()[-1])
    # Not a timing claim: both sides did every workload, and verify saw the whole log.
    assert set(raw["rates"]) == {
        "a_ours",
        "a_peer",
        "b_threads",
        "b_tasks",
        "b_peer",
        "c_par",
        "c_one",
        "c_peer",
    }
    assert all(rate > 0 for rates in raw["rates"].values() for rate in rates)
    assert raw["verified"] == 1 + 2 * 20_000
