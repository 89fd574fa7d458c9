"""The deterministic WASM verifier sandbox (ABI ``cap-verifier/1``) on wasmtime.

``run_verifier`` checks pinned hashes, the ABI file and the module's imports, then runs
``cap_verify`` in a fresh store under fuel, memory, stack and wall-clock limits, and
returns a :class:`VerifierResult` with a contract code. ``VerifierPool`` runs calls off an
asyncio event loop on a bounded set of threads.

Names are imported on first use: every ``cap-agent`` command imports the registry, which
reads ABI files through this package, and only the commands that run a verifier should pay
for loading wasmtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ledger.sandbox.abi import ABI_ID, VerifierAbi, parse_abi
    from ledger.sandbox.engine import WASMTIME_VERSION
    from ledger.sandbox.limits import LIMIT_NAMES, Limits
    from ledger.sandbox.pool import VerifierPool
    from ledger.sandbox.result import SANDBOX_CODES, VerifierResult
    from ledger.sandbox.runner import Pins, check_pins, refused, run_verifier

__all__ = [
    "ABI_ID",
    "LIMIT_NAMES",
    "SANDBOX_CODES",
    "WASMTIME_VERSION",
    "Limits",
    "Pins",
    "VerifierAbi",
    "VerifierPool",
    "VerifierResult",
    "check_pins",
    "parse_abi",
    "refused",
    "run_verifier",
]

_HOME = {
    "ABI_ID": "abi",
    "VerifierAbi": "abi",
    "parse_abi": "abi",
    "WASMTIME_VERSION": "engine",
    "LIMIT_NAMES": "limits",
    "Limits": "limits",
    "VerifierPool": "pool",
    "SANDBOX_CODES": "result",
    "VerifierResult": "result",
    "Pins": "runner",
    "check_pins": "runner",
    "refused": "runner",
    "run_verifier": "runner",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'ledger.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ledger.sandbox.{home}"), name)
    globals()[name] = value
    return value
