"""The registry benchmark runs in its quick mode, reports every operation and is repeatable."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_registry_bench_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "ops/bench/registry.py"), "--quick"],
        capture_output=True,
        cwd=REPO,
        timeout=300,
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    for op in ("add (entries/s)", "show by id (us)", "rebuild (events/s)", "export sqlite"):
        assert op in out
    # Facts, not speeds: same input gives the same bytes, rebuild equals incremental.
    assert "PASS  byte-identical projections and export over 2 runs (n=100)" in out
    assert "PASS  rebuild equals incremental tables (n=100)" in out
