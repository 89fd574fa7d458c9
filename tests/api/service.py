"""Start the real ``cap-agent serve`` in a subprocess on a free port (for live-service tests)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, cli_env

__all__ = ["Service", "start_service"]


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    admin_token: str | None
    log: Path
    lines: list[dict] = field(default_factory=list)

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        """SIGTERM, wait, and return the exit code and stderr (the JSON access log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=timeout)
        return self.proc.returncode, self.log.read_text()


def start_service(
    data: Path, *extra: str, timeout: float = 30, new_session: bool = False
) -> Service:
    """Run ``cap-agent --json serve --port 0``; returns once it prints where it listens.

    stderr (the access log) goes to a file: a pipe nobody reads would fill and stall it."""
    log = data.parent / f"{data.name}.serve.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api",
            "--data",
            str(data),
            "--json",
            "serve",
            "--port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        env=cli_env(),
        cwd=REPO,
        start_new_session=new_session,  # its own process group, to signal it whole
    )
    assert proc.stdout is not None
    lines: list[dict] = []
    token = None
    while True:
        raw = proc.stdout.readline()
        if not raw:
            proc.communicate(timeout=timeout)
            raise AssertionError(f"serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        doc = json.loads(raw)
        lines.append(doc)
        token = doc.get("admin_token", token)
        if "listening" in doc:
            return Service(proc, doc["listening"][0], token, log, lines)
