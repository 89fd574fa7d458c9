"""Every benchmark in ops/bench runs end to end with --quick (a smoke run, no timing asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env

BENCHES = sorted((REPO / "ops" / "bench").glob("*.py"))


@pytest.mark.parametrize("bench", BENCHES, ids=[b.stem for b in BENCHES])
def test_bench_quick(bench):
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick"],
        capture_output=True,
        env=cli_env(),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.strip(), "a benchmark prints what it measured"
