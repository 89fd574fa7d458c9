"""Opening the files users name on the command line, with ``E-BAD-INPUT`` on failure."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ledger.errors import BadInput

__all__ = ["open_input"]


@contextlib.contextmanager
def open_input(name: str, *, what: str = "input file") -> Iterator[BinaryIO]:
    """``name`` opened for binary reading (``-`` is stdin); a bad path is ``E-BAD-INPUT``."""
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        f = Path(name).open("rb")  # noqa: SIM115 (closed below, errors mapped first)
    except OSError as exc:
        raise BadInput("E-BAD-INPUT", f"cannot read {what} {name}: {exc.strerror}") from None
    with f:
        yield f
