"""The process-wide wasmtime engine: deterministic settings, fuel, epochs and the one import.

One engine (and one linker holding ``env.cap_log``) exists per wasm stack size, since the
stack bound is an engine setting; :class:`~ledger.sandbox.limits.Limits` rounds the stack to
a power of two so there are only a few. A single daemon thread advances every engine's
epoch while any call runs: that is the wall-clock limit's clock.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import blake3
import wasmtime

from ledger.canonical import canonical_json
from ledger.sandbox.hostlog import cap_log

__all__ = [
    "TICK_MS",
    "WASMTIME_VERSION",
    "SandboxEngine",
    "deadline_ticks",
    "engine_for",
    "epochs_running",
]

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
TICK_MS = 10

# Engine flags. Fuel and epochs give the limits; NaN canonicalization makes float results
# bit-identical across hosts; threads, shared memory and relaxed SIMD (whose results may
# differ between CPUs) are off, as is every proposal a verifier does not need.
_FLAGS: dict[str, bool] = {
    "consume_fuel": True,
    "epoch_interruption": True,
    "cranelift_nan_canonicalization": True,
    "wasm_threads": False,
    "shared_memory": False,
    "wasm_relaxed_simd": False,
    "wasm_relaxed_simd_deterministic": True,
    "wasm_memory64": False,
    "wasm_multi_memory": False,
    "wasm_custom_page_sizes": False,
    "wasm_gc": False,
    "wasm_function_references": False,
    "wasm_exceptions": False,
    "wasm_stack_switching": False,
    "wasm_component_model": False,
    "gc_support": False,
    "wasm_simd": True,
    "wasm_bulk_memory": True,
    "wasm_multi_value": True,
    "wasm_reference_types": True,
    "wasm_tail_call": True,
}
_OPT_LEVEL = "speed"


@dataclass(slots=True, frozen=True)
class SandboxEngine:
    """An engine, its linker (``env.cap_log`` only) and what identifies its configuration."""

    engine: wasmtime.Engine
    linker: wasmtime.Linker
    stack_bytes: int
    info: dict[str, Any]  # wasmtime version, settings and fingerprint, in every result
    fingerprint: str  # BLAKE3 of the canonical version and settings: in every cache key


def _build(stack_bytes: int) -> SandboxEngine:
    config = wasmtime.Config()
    for name, value in _FLAGS.items():
        setattr(config, name, value)
    config.cranelift_opt_level = _OPT_LEVEL
    config.max_wasm_stack = stack_bytes
    engine = wasmtime.Engine(config)
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    linker.define_func(
        "env", "cap_log", wasmtime.FuncType([i32, i32, i32], []), cap_log, access_caller=True
    )
    settings: dict[str, Any] = dict(sorted(_FLAGS.items()))
    settings.update(cranelift_opt_level=_OPT_LEVEL, max_wasm_stack=stack_bytes)
    info: dict[str, Any] = {"wasmtime": WASMTIME_VERSION, "settings": settings}
    fingerprint = blake3.blake3(canonical_json(info)).hexdigest()
    info["fingerprint"] = fingerprint
    return SandboxEngine(engine, linker, stack_bytes, info, fingerprint)


_engines: dict[int, SandboxEngine] = {}
_engines_lock = threading.Lock()


def engine_for(stack_bytes: int) -> SandboxEngine:
    """The process-wide engine for this wasm stack size, built on first use."""
    found = _engines.get(stack_bytes)
    if found is not None:
        return found
    with _engines_lock:
        found = _engines.get(stack_bytes)
        if found is None:
            found = _engines[stack_bytes] = _build(stack_bytes)
            _ticker.engines = (*_ticker.engines, found.engine)
        return found


def deadline_ticks(call_ms: int) -> int:
    """Epoch ticks for a wall-clock limit: at least ``call_ms`` whatever the tick phase."""
    return -(-call_ms // TICK_MS) + 1


class _Ticker:
    """Increments every engine's epoch each :data:`TICK_MS` while a call is running."""

    def __init__(self) -> None:
        self.engines: tuple[wasmtime.Engine, ...] = ()
        self._cond = threading.Condition()
        self._active = 0
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="cap-sandbox-epoch", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._active:
                    self._cond.wait()
            time.sleep(TICK_MS / 1000)
            for engine in self.engines:
                engine.increment_epoch()


_ticker = _Ticker()


def epochs_running() -> contextlib.AbstractContextManager[None]:
    """Keep the epoch clock ticking for the duration of a call."""
    return _ticker.running()
