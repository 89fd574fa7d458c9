"""A bounded worker pool that runs verifiers off the asyncio event loop.

wasmtime-py calls into the engine through ctypes, which releases the GIL, so verifier calls
on the pool's threads run in parallel with each other and with the event loop. At most
``workers`` calls run and at most ``queue`` more wait; further callers wait their turn.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ledger.sandbox.result import VerifierResult
from ledger.sandbox.runner import run_verifier

__all__ = ["VerifierPool"]

T = TypeVar("T")


class VerifierPool:
    """``await pool.run(wasm, abi, manifest, proof, limits=..., pins=..., cache_dir=...)``."""

    def __init__(self, workers: int | None = None, queue: int = 32) -> None:
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="cap-verifier")
        self.capacity = self.workers + queue
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, *args: Any, **kwargs: Any) -> VerifierResult:
        """Run :func:`run_verifier` on a worker thread; waits (without blocking the loop)
        while the pool and its queue are full."""
        result: VerifierResult = await self.call(run_verifier, *args, **kwargs)
        return result

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run any blocking verifier job (for example ``SelfVerifier.exec_entry``, which
        also reads blobs and appends the result) on the pool, bounded like :meth:`run`."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:  # one semaphore per event loop
            self._slots, self._loop = asyncio.Semaphore(self.capacity), loop
        async with self._slots:
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )

    def close(self) -> None:
        self._executor.shutdown(wait=True)
