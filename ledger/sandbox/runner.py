"""Run a verifier: pins, ABI and import checks first, then one call in a fresh store.

Order matters: the pinned hashes are checked before the bytes are even parsed, and the
module is compiled and checked (imports, exports, declared memory) before any of its code
runs. Every outcome, refusals included, comes back as a :class:`VerifierResult`.
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import wasmtime

from ledger.errors import CheckFailed
from ledger.events import rfc3339_now
from ledger.sandbox.abi import check_header, parse_abi
from ledger.sandbox.cache import CompiledVerifier, artifact_store, module_cache
from ledger.sandbox.engine import SandboxEngine, deadline_ticks, engine_for, epochs_running
from ledger.sandbox.hostlog import LogSink, capture
from ledger.sandbox.limits import Limits
from ledger.sandbox.result import VerifierResult

__all__ = ["Pins", "check_pins", "refused", "run_verifier"]

_U32 = 0xFFFFFFFF
_MAX_MEMORY = 4 << 30  # all a wasm32 memory can address
_TABLE_ELEMENTS = 100_000
_TABLES = 4
_FUEL = wasmtime.TrapCode.OUT_OF_FUEL
_INTERRUPT = wasmtime.TrapCode.INTERRUPT


@dataclass(slots=True, frozen=True)
class Pins:
    """The hashes a registry entry pinned: BLAKE3 of the module, SHA3-256 of the ABI file."""

    blob_wasm: str
    blob_abi: str


def check_pins(wasm_b3: str, abi: bytes, pins: Pins) -> None:
    """``E-HASH-MISMATCH`` unless both blobs are exactly the pinned ones."""
    if wasm_b3 != pins.blob_wasm.lower():
        raise CheckFailed(
            "E-HASH-MISMATCH",
            f"verifier module has BLAKE3 {wasm_b3}, the entry pins {pins.blob_wasm}",
        )
    abi_sha3 = hashlib.sha3_256(abi).hexdigest()
    if abi_sha3 != pins.blob_abi.lower():
        raise CheckFailed(
            "E-HASH-MISMATCH",
            f"ABI file has SHA3-256 {abi_sha3}, the entry pins {pins.blob_abi}",
        )


@dataclass(slots=True)
class _Outcome:
    code: str | None
    message: str
    verdict: int | None = None
    fuel_used: int | None = 0
    log: tuple[str, ...] = ()
    log_dropped: int = 0


def run_verifier(
    wasm: bytes | None,
    abi: bytes | None,
    manifest: bytes | None,
    proof: bytes | None,
    *,
    limits: Limits | None = None,
    pins: Pins | None = None,
    cache_dir: Path | None = None,
) -> VerifierResult:
    """Check and run one verifier on one manifest and proof; never raises for a verdict.

    A ``None`` blob is ``E-BLOB-MISSING``. ``limits`` are the host's (an ABI may lower
    them); ``cache_dir`` enables the on-disk artifact cache (``DIR/cache/wasm``).
    """
    started = time.perf_counter_ns()
    effective = limits or Limits()
    se = engine_for(effective.stack_bytes)
    source = "none"
    try:
        blobs = {"verifier module": wasm, "ABI file": abi, "manifest": manifest, "proof": proof}
        missing = [name for name, blob in blobs.items() if blob is None]
        if missing:
            raise CheckFailed("E-BLOB-MISSING", f"blob missing: {', '.join(missing)}")
        assert wasm is not None and abi is not None and manifest is not None
        assert proof is not None
        wasm_b3 = blake3.blake3(wasm).hexdigest()
        if pins is not None:
            check_pins(wasm_b3, abi, pins)
        check_header(wasm)
        effective = effective.lowered(parse_abi(abi).limits)
        se = engine_for(effective.stack_bytes)
        disk = artifact_store(cache_dir) if cache_dir is not None else None
        compiled, source = module_cache().get(se, wasm, wasm_b3, disk)
        outcome = _execute(se, compiled, manifest, proof, effective)
    except CheckFailed as exc:
        outcome = _Outcome(exc.code, exc.message)
    return _result(outcome, started, effective, se, source)


def refused(code: str, message: str, limits: Limits | None = None) -> VerifierResult:
    """A failed result for a verifier that could not even be loaded (for example a blob
    of the entry is gone): nothing ran, no fuel was used."""
    lim = limits or Limits()
    se = engine_for(lim.stack_bytes)
    return _result(_Outcome(code, message), time.perf_counter_ns(), lim, se, "none")


def _result(
    outcome: _Outcome, started: int, limits: Limits, se: SandboxEngine, source: str
) -> VerifierResult:
    return VerifierResult(
        status="ok" if outcome.code is None else "fail",
        code=outcome.code,
        message=outcome.message,
        verdict=outcome.verdict,
        fuel_used=outcome.fuel_used,
        duration_us=(time.perf_counter_ns() - started) // 1000,
        log=outcome.log,
        log_dropped=outcome.log_dropped,
        limits=limits,
        engine=se.info,
        at=rfc3339_now(),
        cache=source,
    )


class _BadPointer(Exception):
    """``cap_alloc`` returned null or a range outside linear memory."""


def _execute(
    se: SandboxEngine, compiled: CompiledVerifier, manifest: bytes, proof: bytes, lim: Limits
) -> _Outcome:
    """One call, with memory exhaustion told apart from other traps (see :func:`_call`)."""
    if compiled.shape.memory_min_bytes > lim.memory_bytes:
        return _Outcome(
            "E-SANDBOX-MEMORY",
            f"module declares {compiled.shape.memory_min_bytes >> 10} KiB of memory, "
            f"over the {lim.memory_mb} MiB limit",
        )
    if len(manifest) + len(proof) > lim.memory_bytes:
        return _Outcome("E-SANDBOX-MEMORY", "manifest and proof exceed the memory limit")
    out = _call(se, compiled, manifest, proof, lim, lim.memory_bytes)
    if out.code == "E-SANDBOX-TRAP" and lim.memory_bytes < _MAX_MEMORY:
        # wasm's memory.grow returns -1 at the limit instead of trapping, and the guest's
        # allocator then fails in its own way (usually a trap). Runs are deterministic, so
        # the same call with twice the memory ends identically unless a refused grow
        # changed its course: then the memory limit is what stopped it.
        probe = _call(se, compiled, manifest, proof, lim, min(2 * lim.memory_bytes, _MAX_MEMORY))
        if (probe.code, probe.message, probe.fuel_used) != (out.code, out.message, out.fuel_used):
            out.code = "E-SANDBOX-MEMORY"
            out.message = f"over the {lim.memory_mb} MiB memory limit ({out.message})"
    return out


def _call(
    se: SandboxEngine,
    compiled: CompiledVerifier,
    manifest: bytes,
    proof: bytes,
    lim: Limits,
    memory_bytes: int,
) -> _Outcome:
    """Instantiate in a fresh store and call cap_alloc twice and cap_verify once."""
    store = wasmtime.Store(se.engine)
    store.set_limits(
        memory_size=memory_bytes,
        table_elements=_TABLE_ELEMENTS,
        instances=1,
        tables=_TABLES,
        memories=1,
    )
    store.set_fuel(lim.fuel)
    store.set_epoch_deadline(deadline_ticks(lim.call_ms))  # before anything runs
    memory: wasmtime.Memory | None = None
    out = _Outcome(None, "")
    sink = LogSink()
    with epochs_running(), capture(sink):
        try:
            instance = compiled.pre.instantiate(store)  # runs the start function, if any
            exports = instance.exports(store)
            memory = exports["memory"]  # type: ignore[assignment]
            alloc, verify = exports["cap_alloc"], exports["cap_verify"]
            assert isinstance(memory, wasmtime.Memory)
            m_ptr = _place(store, memory, alloc, manifest)
            p_ptr = _place(store, memory, alloc, proof)
            verdict = verify(store, m_ptr, len(manifest), p_ptr, len(proof))  # type: ignore[operator]
            out.verdict = int(verdict)
            if out.verdict == 0:
                out.message = "verifier accepted the proof"
            else:
                out.code = "E-VERIFY-FAILED"
                out.message = f"verifier rejected the proof (cap_verify returned {verdict})"
        except wasmtime.Trap as trap:
            out.code, out.message = _trap_outcome(trap, lim)
        except wasmtime.WasmtimeError as exc:
            why = " ".join(str(exc).split())[:200]
            if memory is None:  # instantiation refused by the store limits
                out.code, out.message = "E-SANDBOX-MEMORY", f"cannot instantiate: {why}"
            else:
                out.code, out.message = "E-SANDBOX-TRAP", f"call failed: {why}"
        except _BadPointer:
            out.code = "E-SANDBOX-TRAP"
            out.message = "cap_alloc returned null or a range outside linear memory"
    out.fuel_used = None if out.code == "E-SANDBOX-TIMEOUT" else lim.fuel - store.get_fuel()
    out.log, out.log_dropped = tuple(sink.lines), sink.dropped
    return out


def _place(store: wasmtime.Store, memory: wasmtime.Memory, alloc: Any, data: bytes) -> int:
    """Copy ``data`` into memory the guest allocated; returns the guest pointer (as i32)."""
    n = len(data)
    ptr = alloc(store, _i32(n)) & _U32
    if n and (ptr == 0 or ptr + n > memory.data_len(store)):
        raise _BadPointer
    if n:
        ctypes.memmove(ctypes.addressof(memory.data_ptr(store).contents) + ptr, data, n)
    return _i32(ptr)


def _i32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _trap_outcome(trap: wasmtime.Trap, lim: Limits) -> tuple[str, str]:
    """Map a trap by its trap code (never by its message text) to a contract code."""
    code = trap.trap_code
    if code == _FUEL:
        return "E-SANDBOX-OUT-OF-FUEL", f"out of fuel after {lim.fuel} units"
    if code == _INTERRUPT:
        return "E-SANDBOX-TIMEOUT", f"wall clock over the {lim.call_ms} ms limit"
    return "E-SANDBOX-TRAP", f"trap: {code.name.lower() if code is not None else 'unknown'}"
