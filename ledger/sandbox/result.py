"""What one verifier run decided, and the ``selfverify.result`` payload that records it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ledger.errors import CheckFailed
from ledger.sandbox.limits import Limits

__all__ = ["SANDBOX_CODES", "VerifierResult"]

# Every code a run can end with (besides ok): the contract's sandbox and blob codes.
SANDBOX_CODES = (
    "E-BLOB-MISSING",
    "E-HASH-MISMATCH",
    "E-ABI-INVALID",
    "E-SANDBOX-FORBIDDEN-IMPORT",
    "E-SANDBOX-OUT-OF-FUEL",
    "E-SANDBOX-MEMORY",
    "E-SANDBOX-TIMEOUT",
    "E-SANDBOX-TRAP",
    "E-VERIFY-FAILED",
)


@dataclass(slots=True, frozen=True)
class VerifierResult:
    """The verdict of one run: ``ok``, or ``fail`` with one of :data:`SANDBOX_CODES`.

    ``fuel_used`` is exact and reproducible for every outcome but a timeout (``None``:
    wasmtime does not account fuel for an interrupted loop). ``duration_us`` is wall time
    of the whole run, checks and compilation included.
    """

    status: str
    code: str | None
    message: str
    verdict: int | None  # what cap_verify returned, when it returned
    fuel_used: int | None
    duration_us: int
    log: tuple[str, ...]
    log_dropped: int  # cap_log lines (or bytes past the budget) that were not kept
    limits: Limits  # the effective limits (host limits lowered by the ABI)
    engine: dict[str, Any]  # wasmtime version and engine settings
    at: str  # RFC 3339 time the run finished
    cache: str  # where the compiled module came from: memory, disk, compiled, none

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_payload(self, entry_id: str | None = None) -> dict[str, Any]:
        """The ``selfverify.result`` event payload (JSON-compatible: no floats, no bytes)."""
        doc: dict[str, Any] = {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "verdict": self.verdict,
            "fuel_used": self.fuel_used,
            "duration_us": self.duration_us,
            "log": list(self.log),
            "log_dropped": self.log_dropped,
            "limits": self.limits.to_json(),
            "engine": copy.deepcopy(self.engine),
            "at": self.at,
        }
        if entry_id is not None:
            doc = {"entry_id": entry_id, **doc}
        return doc

    def raise_for_status(self) -> None:
        """Raise the run's code as a :class:`CheckFailed` (exit 1) unless it said ok."""
        if not self.ok:
            raise CheckFailed(self.code, self.message)
