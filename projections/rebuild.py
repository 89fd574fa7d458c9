"""Rebuild, status and dumps of the projections.

``rebuild`` drops every projection's tables and checkpoint in one transaction, then replays
the log from seq 0 in batches, each batch committed with the checkpoints it covers (so an
interrupted rebuild simply resumes by catching up). Replaying must give byte-identical
tables to the incremental ones: :func:`dump_tables` is what tests and audits compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import lmdb
from blake3 import blake3

from ledger.errors import NotFound
from ledger.ledger import Ledger
from ledger.log import Consumer

__all__ = [
    "DEFAULT_BATCH",
    "ProjectionStatus",
    "RebuildReport",
    "dump_tables",
    "rebuild",
    "rebuildable",
    "status",
    "tables_digest",
]

DEFAULT_BATCH = 20_000


@dataclass(slots=True, frozen=True)
class ProjectionStatus:
    name: str
    checkpoint: int
    head: int
    tables: tuple[str, ...]

    @property
    def lag(self) -> int:
        return self.head - self.checkpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "head": self.head,
            "lag": self.lag,
            "tables": list(self.tables),
        }


@dataclass(slots=True, frozen=True)
class RebuildReport:
    projections: tuple[str, ...]
    events: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        rate = self.events / self.seconds if self.seconds > 0 else None
        return {
            "projections": list(self.projections),
            "events": self.events,
            "seconds": round(self.seconds, 6),
            "events_per_second": None if rate is None else int(rate),
        }


def rebuildable(ledger: Ledger, names: Sequence[str] | None = None) -> list[Consumer]:
    """Consumers that declare their tables (``dbs``), optionally only those named."""
    found = [c for c in ledger.log.consumers if getattr(c, "dbs", ())]
    if names:
        known = {c.name for c in found}
        for n in names:
            if n not in known:
                raise NotFound("E-NOT-FOUND", f"no rebuildable projection named {n!r}")
        found = [c for c in found if c.name in names]
    return found


def status(ledger: Ledger) -> list[ProjectionStatus]:
    """Each consumer's checkpoint, the head and the lag between them."""
    with ledger.store.read() as txn:
        head = ledger.log.head_in(txn).seq
        return [
            ProjectionStatus(
                c.name, ledger.log.checkpoint(txn, c.name), head, tuple(getattr(c, "dbs", ()))
            )
            for c in ledger.log.consumers
        ]


def rebuild(
    ledger: Ledger,
    names: Sequence[str] | None = None,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Drop the projections' tables and replay every event into them."""
    consumers = rebuildable(ledger, names)
    store, log = ledger.store, ledger.log
    started = time.perf_counter()

    def reset(txn: lmdb.Transaction) -> None:
        for c in consumers:
            for name in c.dbs:  # type: ignore[attr-defined]
                txn.drop(store.db(name), delete=False)
            log.set_checkpoint(txn, c.name, None)

    store.run_write(reset)

    def step(txn: lmdb.Transaction) -> tuple[int, bool]:
        head = log.head_in(txn).seq
        marks = {c.name: log.checkpoint(txn, c.name) for c in consumers}
        start = min(marks.values(), default=head) + 1
        stop = min(start + batch - 1, head)
        n = 0
        if start <= stop:
            if len(set(marks.values())) == 1:  # the usual case: all at the same checkpoint
                applies = [c.apply for c in consumers]
                for ev in log.iter_events(txn, start, stop):
                    for apply in applies:
                        apply(txn, ev)
                    n += 1
            else:
                for ev in log.iter_events(txn, start, stop):
                    for c in consumers:
                        if ev.seq > marks[c.name]:
                            c.apply(txn, ev)
                    n += 1
            for c in consumers:
                if marks[c.name] < stop:
                    log.set_checkpoint(txn, c.name, stop)
        return n, stop >= head

    total = 0
    done = False
    while not done:
        n, done = store.run_write(step)
        total += n
        if progress is not None:
            progress(total)
    return RebuildReport(tuple(c.name for c in consumers), total, time.perf_counter() - started)


def dump_tables(
    ledger: Ledger, names: Sequence[str] | None = None
) -> Iterator[tuple[str, bytes, bytes]]:
    """Every ``(table, key, value)`` of the named projections (default: all), in order."""
    consumers = rebuildable(ledger, names)
    with ledger.store.read() as txn:
        for c in consumers:
            for name in c.dbs:  # type: ignore[attr-defined]
                for k, v in txn.cursor(db=ledger.store.db(name)):
                    yield name, bytes(k), bytes(v)


def tables_digest(ledger: Ledger, names: Sequence[str] | None = None) -> str:
    """BLAKE3 over :func:`dump_tables` (length-prefixed), to compare projections cheaply."""
    h = blake3()
    for table, k, v in dump_tables(ledger, names):
        for part in (table.encode(), k, v):
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()
