"""The verifier ABI ``cap-verifier/1``: the ABI JSON file and the module's binary header.

Free of wasmtime, so the registry can read an ABI file without loading the engine; the
module's imports and exports are checked in :mod:`ledger.sandbox.interface`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from ledger.canonical import loads_json_strict
from ledger.errors import BadInput, CheckFailed
from ledger.sandbox.limits import parse_requested

__all__ = [
    "ABI_ID",
    "MAX_ABI_BYTES",
    "MAX_WASM_BYTES",
    "WASM_HEADER",
    "VerifierAbi",
    "check_header",
    "parse_abi",
]

ABI_ID = "cap-verifier/1"
MAX_ABI_BYTES = 64 << 10
MAX_WASM_BYTES = 64 << 20
# Magic and version 1 of the binary format. wasmtime.Module would read anything else as
# WAT text (or a component), so nothing without this prefix reaches it.
WASM_HEADER = b"\0asm\x01\0\0\0"
_TEXT = re.compile(r"[\x20-\x7e]{1,128}")


def _abi_invalid(message: str) -> CheckFailed:
    return CheckFailed("E-ABI-INVALID", message)


@dataclass(slots=True, frozen=True)
class VerifierAbi:
    """A parsed ``verifier.abi.json``: the verifier's name, version and requested limits."""

    name: str
    version: str
    limits: tuple[tuple[str, int], ...]  # requested lower limits, sorted by name


@functools.lru_cache(maxsize=64)
def parse_abi(data: bytes) -> VerifierAbi:
    """Parse and check an ABI file: ``{"abi": "cap-verifier/1", "name", "version"}`` plus
    an optional ``limits`` object (fuel, memory_mb, stack_kb, call_ms); more keys allowed.

    Results are cached by content (a warm run parses nothing); refusals are not cached."""
    if len(data) > MAX_ABI_BYTES:
        raise _abi_invalid(f"ABI file is larger than {MAX_ABI_BYTES} bytes")
    try:
        doc: Any = loads_json_strict(data, what="ABI file")
    except BadInput as exc:
        raise _abi_invalid(exc.message) from None
    if not isinstance(doc, dict):
        raise _abi_invalid("ABI file is not a JSON object")
    if doc.get("abi") != ABI_ID:
        raise _abi_invalid(f'ABI file must say "abi": "{ABI_ID}"')
    for key in ("name", "version"):
        value = doc.get(key)
        if not isinstance(value, str) or not _TEXT.fullmatch(value):
            raise _abi_invalid(f"ABI {key} must be 1-128 printable ASCII characters")
    try:
        limits = parse_requested(doc.get("limits", {}))
    except ValueError as exc:
        raise _abi_invalid(f"ABI {exc}") from None
    return VerifierAbi(doc["name"], doc["version"], tuple(sorted(limits.items())))


def check_header(wasm: bytes) -> None:
    """Refuse anything but a WebAssembly 1.0 binary module of a sane size."""
    if len(wasm) > MAX_WASM_BYTES:
        raise _abi_invalid(f"module is larger than {MAX_WASM_BYTES} bytes")
    if not wasm.startswith(WASM_HEADER):
        raise _abi_invalid("not a WebAssembly binary module (bad magic or version)")
