"""The webhook delivery worker: POSTs queued events, signed, in order, with backoff.

At least once: a row leaves the outbox only after a 2xx answer, so a crash between the
answer and the delete sends that event again (receivers deduplicate by ``X-Cap-Event-Id``).
Ordered per subscription: a subscription's next event goes out only after the previous
one was delivered, so a failing receiver holds its own queue back, nobody else's. Retries
wait ``base * 2**attempts`` seconds (capped, with jitter). One worker per data directory
(a lock file), so two processes cannot interleave one subscription's deliveries.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from ledger.canonical import canonical_json
from ledger.errors import CapError, Conflict
from ledger.ledger import Ledger
from ledger.logs import get_logger
from ledger.webhook_sig import SIGNATURE_HEADER, sign_header
from ledger.webhooks import (
    DeliveryState,
    Subscription,
    iter_pending,
    list_subscriptions,
    read_secret,
    settle,
)

__all__ = ["DeliveryPolicy", "DeliveryStats", "WebhookWorker"]

_log = get_logger(__name__)
USER_AGENT = "cap-ledger-webhooks/1"


@dataclass(slots=True, frozen=True)
class DeliveryPolicy:
    """Retry and timeout settings; delays in seconds."""

    base_delay: float = 1.0
    max_delay: float = 3600.0
    timeout: float = 10.0
    poll: float = 1.0  # how often to look for work written by other processes

    def delay(self, attempts: int) -> float:
        """Backoff before attempt ``attempts + 1``: exponential, capped, jittered to 50-100%."""
        full = min(self.base_delay * 2 ** min(attempts - 1, 62), self.max_delay)
        return full * (0.5 + random.random() / 2)


@dataclass(slots=True)
class DeliveryStats:
    delivered: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed": self.failed}


class WebhookWorker:
    """Delivers one ledger's outbox. Use as an async context manager (holds the lock and
    an HTTP session), then :meth:`run` until stopped or :meth:`drain` once."""

    def __init__(
        self,
        ledger: Ledger,
        policy: DeliveryPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.policy = policy or DeliveryPolicy()
        self.clock = clock
        self.stats = DeliveryStats()
        self._session: aiohttp.ClientSession | None = None
        self._lock_fd: int | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> WebhookWorker:
        self._lock_fd = _take_lock(self.ledger.data.root / "webhooks.lock")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.policy.timeout),
            headers={"User-Agent": USER_AGENT},
        )
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.ledger.log.add_listener(self._on_commit)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.ledger.log.remove_listener(self._on_commit)
        if self._session is not None:
            await self._session.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _on_commit(self, events: list[Any]) -> None:  # the writer thread, after a commit
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: after every commit in this process, when a retry
        is due, and every ``poll`` seconds (for events other processes appended)."""
        assert self._wake is not None, "use `async with WebhookWorker(...)`"
        while not stop.is_set():
            next_due = await self.drain()
            wait = self.policy.poll if next_due is None else max(0.0, next_due - self.clock())
            wait = min(wait, self.policy.poll)
            self._wake.clear()
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait(
                    {stopper, waker}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopper.cancel()
                waker.cancel()

    async def drain(self) -> float | None:
        """Deliver every due delivery (each subscription in order, concurrently across
        subscriptions) until each queue is empty or waiting; return when the earliest
        waiting retry is due (unix seconds), ``None`` when nothing waits."""
        subs = list_subscriptions(self.ledger.store)
        dues = await asyncio.gather(*(self._drain_one(s) for s in subs))
        waiting = [d for d in dues if d is not None]
        return min(waiting) if waiting else None

    # --- one subscription ----------------------------------------------------------------

    async def _drain_one(self, sub: Subscription) -> float | None:
        while True:
            head = next(iter_pending(self.ledger.store, sub.id, limit=1), None)
            if head is None:
                return None
            due = head.next_at_ms / 1000
            if due > self.clock():
                return due
            error = await self._post(sub, head)
            if error is None:
                await asyncio.to_thread(settle, self.ledger.store, head, delivered=True)
                self.stats.delivered += 1
                continue
            attempts = head.attempts + 1
            retry_at = self.clock() + self.policy.delay(attempts)
            failed = replace(
                head, attempts=attempts, next_at_ms=int(retry_at * 1000), last_error=error
            )
            await asyncio.to_thread(settle, self.ledger.store, failed, delivered=False)
            self.stats.failed += 1
            _log.info(
                "webhook_retry", subscription=sub.id, seq=head.seq, attempts=attempts, error=error
            )
            return retry_at

    async def _post(self, sub: Subscription, state: DeliveryState) -> str | None:
        """One attempt; ``None`` on a 2xx answer, else why it failed."""
        assert self._session is not None
        try:
            event = self.ledger.log.get(state.seq)
            secret = read_secret(sub.secret_ref)
        except CapError as exc:
            return exc.message
        body = canonical_json(event.to_json())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_header(secret, body, int(self.clock())),
            "X-Cap-Event-Id": event.id,
            "X-Cap-Event-Seq": str(event.seq),
            "X-Cap-Event-Type": event.type,
            "X-Cap-Subscription": sub.id,
            "X-Cap-Delivery-Attempt": str(state.attempts + 1),
        }
        try:
            async with self._session.post(
                sub.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{exc.__class__.__name__}: {exc}"[:200]


def _take_lock(path: Path) -> int:
    """An exclusive, non-blocking lock held for the worker's lifetime (released on exit,
    even by kill -9, since the kernel drops the process's locks)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(
            "E-CONFLICT", "another webhook delivery worker is running for this ledger"
        ) from None
    return fd
