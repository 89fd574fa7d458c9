"""Shared fixtures: a fresh ledger directory, its key, and a way to run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.datadir import DataDir
from ledger.keys import StaticKeyProvider
from ledger.ledger import Ledger
from projections import default_consumers

REPO = Path(__file__).resolve().parent.parent
TEST_KEY = bytes(range(32))


@pytest.fixture
def keys() -> StaticKeyProvider:
    return StaticKeyProvider(TEST_KEY)


@pytest.fixture
def data_dir(tmp_path: Path, keys: StaticKeyProvider) -> DataDir:
    data = DataDir(tmp_path / "ledger")
    Ledger.init(data, keys, actor="test")
    return data


@pytest.fixture
def ledger(data_dir: DataDir, keys: StaticKeyProvider) -> Iterator[Ledger]:
    with Ledger.open(data_dir, keys, default_consumers(data_dir)) as led:
        yield led


@dataclass(slots=True, frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)

    def lines(self) -> list[object]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def cli_env(data: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAP_")}
    env["PYTHONPATH"] = str(REPO)
    if data is not None:
        env["CAP_DATA"] = str(data)
    env.update(extra)
    return env


def run_cli(
    *args: str,
    data: Path | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> CliResult:
    """Run ``cap-agent`` as a user would: a separate process, real argv, real exit code."""
    proc = subprocess.run(
        [sys.executable, "-m", "api", *args],
        input=stdin,
        capture_output=True,
        env=env or cli_env(data),
        timeout=timeout,
        cwd=REPO,
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture
def cli(tmp_path: Path):
    """``cli("ledger", "log")`` against an initialized data dir at ``tmp_path/cli``."""
    root = tmp_path / "cli"
    res = run_cli("init", data=root)
    assert res.code == 0, res.err

    def call(*args: str, **kw: object) -> CliResult:
        return run_cli(*args, data=root, **kw)  # type: ignore[arg-type]

    call.root = root  # type: ignore[attr-defined]
    return call
