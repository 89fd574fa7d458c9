"""Fan-out of committed events to event-stream clients, without ever slowing the writer.

The log's writer thread calls :meth:`Hub.on_commit` after each durable commit; the hub hands
the events to the event loop (``call_soon_threadsafe``, which never blocks) and the loop
offers them to every subscription. A subscription is a bounded buffer: a client that falls
further behind than that is marked dropped, and its handler closes the stream (the client
resumes from its Last-Event-ID, reading from the log).

Events another process commits (another worker of the same service, a CLI append) reach no
listener here: the hub also follows the log's head and, when it passes what the listener
delivered, wakes every subscription, whose handler reads the new events from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

from ledger.events import Event

__all__ = ["Hub", "Subscription"]


class Subscription:
    """One client's buffer of live events."""

    __slots__ = ("_buf", "_wake", "closed", "dropped", "limit", "on_drop")

    def __init__(self, limit: int, on_drop: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.on_drop = on_drop
        self._buf: deque[Event] = deque()
        self._wake = asyncio.Event()
        self.dropped = False
        self.closed = False

    def offer(self, events: list[Event]) -> None:
        if self.dropped or self.closed:
            return
        if len(self._buf) + len(events) > self.limit:
            self.dropped = True
            self._buf.clear()
            if self.on_drop is not None:  # e.g. abort the connection its handler waits on
                self.on_drop()
        else:
            self._buf.extend(events)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def nudge(self) -> None:
        """Wake the handler with nothing buffered: it reads what is new from the log."""
        self._wake.set()

    async def take(self, timeout: float) -> list[Event]:
        """Everything buffered, waiting up to ``timeout`` seconds for something to arrive."""
        if not self._buf and not self.dropped and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()
        out = list(self._buf)
        self._buf.clear()
        return out


class Hub:
    """Subscriptions of one event loop, fed by the log's commit listener."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        self._limit = limit
        self._subs: set[Subscription] = set()
        self._closed = False
        self._seen = -1  # the highest seq this hub has offered or nudged for
        self._follow: asyncio.Task[None] | None = None

    def on_commit(self, events: list[Event]) -> None:
        """Log listener (writer thread): schedule delivery on the loop; never blocks."""
        if self._closed or not events:
            return
        # The loop is gone only while the service shuts down; nobody is listening then.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._publish, events)

    def _publish(self, events: list[Event]) -> None:
        self._seen = max(self._seen, events[-1].seq)
        for sub in self._subs:
            sub.offer(events)

    def follow(self, head_seq: Callable[[], int], interval: float) -> None:
        """Poll ``head_seq()`` (a cheap LMDB read) every ``interval`` seconds while anyone
        listens, and nudge the subscriptions when another process has moved it."""

        async def run() -> None:
            while not self._closed:
                await asyncio.sleep(interval)
                if self._subs and (seq := head_seq()) > self._seen:
                    self._seen = seq
                    for sub in self._subs:
                        sub.nudge()

        self._follow = self._loop.create_task(run(), name="cap-stream-follow")

    def subscribe(self, on_drop: Callable[[], None] | None = None) -> Subscription:
        sub = Subscription(self._limit, on_drop)
        if self._closed:
            sub.close()
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close(self) -> None:
        """End every stream (service shutdown)."""
        self._closed = True
        if self._follow is not None:
            self._follow.cancel()
        for sub in self._subs:
            sub.close()

    @property
    def clients(self) -> int:
        return len(self._subs)
