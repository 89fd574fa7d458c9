"""Reading small input files users name (payloads, checkpoints, proofs) with a size cap."""

from __future__ import annotations

from pathlib import Path

from ledger.errors import BadInput

__all__ = ["read_bounded"]


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, never reading past ``limit`` + 1; ``E-BAD-INPUT`` when it is
    missing, unreadable or larger than ``limit``."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise BadInput("E-BAD-INPUT", f"{what} not found: {path}") from None
    except OSError as exc:
        raise BadInput("E-BAD-INPUT", f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError:  # a NUL in the path (only HTTP bodies can carry one)
        raise BadInput("E-BAD-INPUT", f"{what} path contains a NUL byte: {path!r}") from None
    if len(data) > limit:
        raise BadInput("E-BAD-INPUT", f"{what} {path} is larger than {limit} bytes")
    return data
