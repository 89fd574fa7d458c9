"""Writing an output file all or nothing: a temporary file next to it, fsynced, renamed."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fsync_dir", "output_file"]


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def output_file(out: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``out``; when the block ends cleanly it is fsynced and
    renamed over ``out``, on any failure removed, so ``out`` is never left half-written."""
    temp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.part")
    try:
        yield temp
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temp, out)
        fsync_dir(out.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
