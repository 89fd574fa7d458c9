"""Verify a long log with several processes at once (docs/EVENTS.md, "Verification").

The seq range is split into one segment per CPU. Each segment starts from the stored
``b3``/``mac`` (and kid in effect) of the record just before it, and every record's stored
values are checked against the recomputed ones, so segment ``k`` passing proves the values
segment ``k+1`` started from; the first failing segment names the seq a single pass would.
Worker processes are spawned (never forked: LMDB environments must not cross a fork) and
open the store read-only; this process verifies the last segment, up to the head, itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from ledger.errors import CapError
from ledger.keys import HmacKeyProvider
from ledger.log import EventLog, VerifyReport
from ledger.store import Store

__all__ = ["PARALLEL_MIN_EVENTS", "verify_log"]

# Below this many events, starting worker processes (~0.2 s) costs more than it saves.
PARALLEL_MIN_EVENTS = 300_000


def verify_log(
    log: EventLog,
    start: int = 0,
    stop: int | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    workers: int | None = None,
    min_events: int = PARALLEL_MIN_EVENTS,
) -> VerifyReport:
    """:meth:`EventLog.verify`, split across ``workers`` processes (default: one per CPU)
    when the range holds at least ``min_events`` events; same result, same errors."""
    head = log.head()
    last = head.seq if stop is None else min(stop, head.seq)
    n = workers or len(os.sched_getaffinity(0))
    if n < 2 or not 0 <= start <= last or last - start + 1 < min_events:
        return log.verify(start, stop, progress)
    bounds = _segments(start, last, n)
    own_start = bounds[-1][0]
    pool = ProcessPoolExecutor(len(bounds) - 1, mp_context=get_context("spawn"))
    with pool:
        futures = [
            pool.submit(_verify_segment, str(log.store.path), log.keys, a, b)
            for a, b in bounds[:-1]
        ]
        own: VerifyReport | CapError
        try:
            scaled = None if progress is None else _scaled(progress, start, own_start, n)
            own = log.verify(own_start, stop, scaled)
        except CapError as exc:
            own = exc
        outcomes = [f.result() for f in futures]
    kids: set[str] = set()
    for outcome in outcomes:  # in seq order: the first failure is the first bad seq
        if isinstance(outcome, CapError):
            raise outcome
        kids.update(outcome)
    if isinstance(own, CapError):
        raise own
    kids.update(own.kids)
    return VerifyReport(start, own.last, own.last - start + 1, own.head, tuple(sorted(kids)))


def _segments(start: int, last: int, n: int) -> list[tuple[int, int]]:
    """``n`` contiguous inclusive ranges covering ``start..last``."""
    size = (last - start + 1) // n
    edges = [start + i * size for i in range(n)] + [last + 1]
    return [(edges[i], edges[i + 1] - 1) for i in range(n)]


def _scaled(
    progress: Callable[[int], None], start: int, own_start: int, n: int
) -> Callable[[int], None]:
    """Report this process's position as an estimate for all segments (they run in step)."""
    return lambda seq: progress(start + (seq - own_start) * n)


def _verify_segment(
    lmdb_path: str, keys: HmacKeyProvider, start: int, stop: int
) -> tuple[str, ...] | CapError:
    """Worker: verify ``start..stop`` of the store at ``lmdb_path``; the kids it used, or
    the error (returned, not raised, so it arrives whole)."""
    store = Store(Path(lmdb_path), readonly=True)
    try:
        return EventLog(store, keys).verify(start, stop).kids
    except CapError as exc:
        return exc
    finally:
        store.close()
