"""Audit replay: verify both chains, rebuild every projection from scratch, compare.

One read snapshot of the live store gives the log and the live projections at the same
seq. Each event is applied to fresh projections in a temporary LMDB environment only after
its BLAKE3 and HMAC chain values checked, then every table is compared row by row with its
live counterpart: a row edited, added or deleted behind the log's back is named. Replaying
to an earlier seq (``to``) verifies and rebuilds up to it and reports each table's digest
there (live tables hold the head, so they are compared only when replaying to the head).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
from blake3 import blake3

from ledger.errors import BadInput
from ledger.events import Event
from ledger.ledger import Ledger
from ledger.log import Consumer
from ledger.store import Store
from projections import default_consumers

__all__ = [
    "REPLAY_FORMAT",
    "ReplayReport",
    "RowDiff",
    "TableReport",
    "audit_replay",
    "render_key",
]

REPLAY_FORMAT = "cap-audit-replay/1"
_BATCH = 50_000  # events per scratch transaction


@dataclass(slots=True, frozen=True)
class RowDiff:
    """One row that differs: ``changed`` (both have it), ``extra`` (only the live table has
    it) or ``missing`` (the live table lacks it)."""

    table: str
    key: bytes
    kind: str
    live_b3: str | None
    replayed_b3: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "kind": self.kind,
            "key_hex": self.key.hex(),
            "key": render_key(self.key),
            "live_b3": self.live_b3,
            "replayed_b3": self.replayed_b3,
        }


def render_key(key: bytes) -> str:
    """A row key for people: a short ASCII prefix up to ``/`` kept as text, then the rest as
    text when it is printable ASCII (names, ids) or else in hex (``b/8e4c...``)."""
    cut = key.find(b"/", 0, 9) + 1
    head, rest = key[:cut], key[cut:]
    if not _printable(head):
        head, rest = b"", key
    return head.decode() + (rest.decode() if _printable(rest) else rest.hex())


def _printable(raw: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in raw)


@dataclass(slots=True)
class TableReport:
    name: str
    projection: str
    replayed_rows: int = 0
    replayed_digest: str = ""
    live_rows: int | None = None
    live_digest: str | None = None
    differences: int = 0
    named: list[RowDiff] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.name,
            "projection": self.projection,
            "replayed_rows": self.replayed_rows,
            "replayed_digest": self.replayed_digest,
            "live_rows": self.live_rows,
            "live_digest": self.live_digest,
            "differences": self.differences,
            "rows": [d.to_json() for d in self.named],
        }


@dataclass(slots=True, frozen=True)
class ReplayReport:
    ledger_id: str
    head: int
    to: int
    events: int
    compared: bool
    kids: tuple[str, ...]
    tables: tuple[TableReport, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(t.differences == 0 for t in self.tables)

    @property
    def differences(self) -> int:
        return sum(t.differences for t in self.tables)

    def first_rows(self, n: int = 3) -> list[RowDiff]:
        return [d for t in self.tables for d in t.named][:n]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPLAY_FORMAT,
            "ok": self.ok,
            "ledger_id": self.ledger_id,
            "head": self.head,
            "to": self.to,
            "events": self.events,
            "chains": "ok",
            "kids": list(self.kids),
            "compared_with_live": self.compared,
            "differences": self.differences,
            "tables": [t.to_json() for t in self.tables],
            "seconds": round(self.seconds, 3),
            "events_per_second": int(self.events / self.seconds) if self.seconds > 0 else None,
        }


def _rebuildable(ledger: Ledger) -> list[Consumer]:
    return [c for c in default_consumers(ledger.data) if getattr(c, "dbs", ())]


def audit_replay(
    ledger: Ledger,
    *,
    to: int | None = None,
    progress: Callable[[int], None] | None = None,
    scratch_dir: Path | None = None,
    max_named: int = 100,
) -> ReplayReport:
    """Replay the log (to ``to``, default the head) into fresh projections and compare."""
    if to is not None and to < 0:
        raise BadInput("E-BAD-INPUT", "--to must be a seq >= 0")
    started = time.perf_counter()
    consumers = _rebuildable(ledger)
    map_size = ledger.store.env.info()["map_size"]
    with tempfile.TemporaryDirectory(prefix="cap-replay-", dir=scratch_dir) as tmp:
        scratch = Store(Path(tmp) / "lmdb", create=True, map_size=map_size)
        try:
            for c in consumers:
                bind = getattr(c, "bind", None)
                if bind is not None:
                    bind(scratch)
            with ledger.store.read() as live:
                head = ledger.log.head_in(live).seq
                last = head if to is None else min(to, head)
                compared = last == head
                count, kids = _replay(ledger, live, scratch, consumers, last, compared, progress)
                tables = _compare(
                    ledger.store, live, scratch, consumers, compared=compared, cap=max_named
                )
        finally:
            scratch.close()
    return ReplayReport(
        ledger.log.ledger_id,
        head,
        last,
        count,
        compared,
        kids,
        tuple(tables),
        time.perf_counter() - started,
    )


class _Applier:
    """Applies events to the scratch projections, committing every ``_BATCH`` events."""

    def __init__(self, scratch: Store, consumers: list[Consumer]) -> None:
        self.env = scratch.env
        self.applies = [c.apply for c in consumers]
        self.txn = self.env.begin(write=True)
        self.n = 0

    def __call__(self, ev: Event) -> None:
        txn = self.txn
        for apply in self.applies:
            apply(txn, ev)
        self.n += 1
        if not self.n % _BATCH:
            txn.commit()
            self.txn = self.env.begin(write=True)

    def finish(self) -> None:
        self.txn.commit()

    def abort(self) -> None:
        self.txn.abort()


def _replay(
    ledger: Ledger,
    live: lmdb.Transaction,
    scratch: Store,
    consumers: list[Consumer],
    last: int,
    to_head: bool,
    progress: Callable[[int], None] | None,
) -> tuple[int, tuple[str, ...]]:
    """One pass: each event is applied right after both its chain values checked."""
    apply = _Applier(scratch, consumers)
    try:
        report = ledger.log.verify(0, None if to_head else last, progress, txn=live, visit=apply)
    except BaseException:
        apply.abort()
        raise
    apply.finish()
    return report.count, report.kids


def _rows(txn: lmdb.Transaction, db: Any) -> Iterator[tuple[bytes, bytes]]:
    for k, v in txn.cursor(db=db):
        yield bytes(k), bytes(v)


def _short(value: bytes) -> str:
    return blake3(value).hexdigest()[:32]


def _compare(
    live_store: Store,
    live: lmdb.Transaction,
    scratch: Store,
    consumers: list[Consumer],
    *,
    compared: bool,
    cap: int,
) -> list[TableReport]:
    """Each table's replayed rows against its live rows (a sorted merge of both cursors)."""
    out = []
    with scratch.read() as fresh:
        for c in consumers:
            for name in c.dbs:  # type: ignore[attr-defined]
                t = TableReport(name, c.name)
                replayed = _Digest()
                if not compared:
                    for k, v in _rows(fresh, scratch.db(name)):
                        replayed.add(k, v)
                else:
                    livedigest = _Digest()
                    for diff in _merge(
                        name,
                        _rows(live, live_store.db(name)),
                        _rows(fresh, scratch.db(name)),
                        livedigest,
                        replayed,
                    ):
                        t.differences += 1
                        if len(t.named) < cap:
                            t.named.append(diff)
                    t.live_rows, t.live_digest = livedigest.count, livedigest.hexdigest()
                t.replayed_rows, t.replayed_digest = replayed.count, replayed.hexdigest()
                out.append(t)
    return out


class _Digest:
    """BLAKE3 over length-prefixed keys and values in key order, and a row count."""

    __slots__ = ("count", "h")

    def __init__(self) -> None:
        self.h = blake3()
        self.count = 0

    def add(self, k: bytes, v: bytes) -> None:
        self.h.update(len(k).to_bytes(8, "big") + k + len(v).to_bytes(8, "big") + v)
        self.count += 1

    def hexdigest(self) -> str:
        return self.h.hexdigest()


def _merge(
    table: str,
    live: Iterator[tuple[bytes, bytes]],
    fresh: Iterator[tuple[bytes, bytes]],
    live_digest: _Digest,
    fresh_digest: _Digest,
) -> Iterator[RowDiff]:
    """Walk two key-sorted row streams together, yielding every row that differs."""
    a = next(live, None)
    b = next(fresh, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None
            live_digest.add(*a)
            yield RowDiff(table, a[0], "extra", _short(a[1]), None)
            a = next(live, None)
        elif a is None or b[0] < a[0]:
            fresh_digest.add(*b)
            yield RowDiff(table, b[0], "missing", None, _short(b[1]))
            b = next(fresh, None)
        else:
            live_digest.add(*a)
            fresh_digest.add(*b)
            if a[1] != b[1]:
                yield RowDiff(table, a[0], "changed", _short(a[1]), _short(b[1]))
            a, b = next(live, None), next(fresh, None)
