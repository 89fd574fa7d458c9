"""The append-only event log: group-committed, synced, chained twice.

Appenders (threads or asyncio tasks) hand their events to one writer thread, which commits
whatever has queued up in a single synced LMDB write transaction (group commit) and hands
each appender its own committed event. The head is read inside the write transaction, and
LMDB admits one writer at a time across processes, so two processes never fork the chain.
Consumers (projections) are applied in the same transaction as the events they consume.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import lmdb
from blake3 import blake3

from ledger.canonical import canonicalize
from ledger.canonical import unpackb as _unpack
from ledger.chain import ZERO, MacKey, link, next_b3
from ledger.errors import BadInput, CheckFailed, Conflict, EnvironmentProblem, NotFound
from ledger.events import Event, decode_record, encode_body, event_id, pack_body, rfc3339_now
from ledger.keys import HmacKeyProvider
from ledger.logs import get_logger
from ledger.store import Store

__all__ = [
    "ALGORITHMS",
    "FORMAT",
    "GENESIS_TYPE",
    "ROTATE_TYPE",
    "Append",
    "Consumer",
    "EventLog",
    "Head",
    "VerifyReport",
    "genesis_payload",
    "seq_key",
    "type_matcher",
]

FORMAT = "cap-ledger/1"
GENESIS_TYPE = "ledger.genesis"
ALGORITHMS = {
    "encoding": "msgpack-canonical/1",
    "hash_chain": "blake3",
    "mac_chain": "hmac-sha256",
    "signature": "ed25519",
}
ROTATE_TYPE = "key.rotate"  # MAC'd under the old key; switches the ledger's kid (docs/KEYS.md)
_SEQ = struct.Struct(">Q")
_MAX_SEQ = 2**64 - 1
_MAX_BATCH = 4096
_HEAD = b"head"
_log = get_logger("ledger.log")
_KID = b"kid"  # the kid new events must carry (genesis key, or the last key.rotate's)


def genesis_payload(ledger_id: str) -> dict[str, Any]:
    """The payload of event 0, naming the ledger and its algorithms (docs/EVENTS.md)."""
    payload: dict[str, Any] = canonicalize(
        {"ledger_id": ledger_id, "format": FORMAT, "algorithms": ALGORITHMS}, allow_bytes=False
    )
    return payload


def seq_key(seq: int) -> bytes:
    return _SEQ.pack(seq)


Precheck = Callable[[lmdb.Transaction, dict[str, Any]], dict[str, Any]]
SideEffect = Callable[[lmdb.Transaction, Event], None]


class Consumer(Protocol):
    """Something that materializes state from events inside the appending transaction.

    Consumers keep all their state in the store (so an aborted transaction leaves nothing
    behind); the log records each one's checkpoint in the same transaction. A consumer may
    also define ``bind(store)``: the log calls it once, before any ``apply``, so the consumer
    can take its named-database handles from the store it will be applied to.
    """

    name: str

    def apply(self, txn: lmdb.Transaction, event: Event) -> None: ...


@dataclass(slots=True)
class Append:
    """One event to append. ``precheck`` may validate against current state (inside the
    write transaction) and return the final payload; ``side`` writes what the event
    carries (blob bytes) in the same transaction."""

    type: str
    payload: dict[str, Any]
    actor: str = "system"
    precheck: Precheck | None = None
    side: SideEffect | None = None


@dataclass(slots=True, frozen=True)
class Head:
    seq: int
    b3: bytes
    mac: bytes

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "b3": self.b3.hex(), "mac": self.mac.hex()}


@dataclass(slots=True, frozen=True)
class VerifyReport:
    first: int
    last: int
    count: int
    head: Head
    kids: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "from": self.first,
            "to": self.last,
            "count": self.count,
            "head": self.head.to_json(),
            "kids": list(self.kids),
        }


@dataclass(slots=True, frozen=True)
class _At:
    """Where the writer is within a commit: the head so far and the key new events use
    (``None`` right after a ``key.rotate``: the next event looks the new key up)."""

    head: Head
    kid: str
    key: MacKey | None


@dataclass(slots=True)
class _Group:
    """Events that commit together (all or none), and how to wake whoever waits for them.

    The writer sets ``events`` or ``error``, then calls ``wake(group)``: in its own thread
    (releasing a lock, settling a future), or, for a group with a ``loop``, in that event
    loop's thread, one callback per loop for all of a commit's groups.
    """

    items: Sequence[Append]
    payloads: list[dict[str, Any]]  # canonical copies, made by the appender's own thread
    wake: Callable[[_Group], None]
    loop: asyncio.AbstractEventLoop | None = None
    events: list[Event] | None = None
    error: BaseException | None = None

    @property
    def plain(self) -> bool:
        """No precheck and no side: nothing but chaining (and consumers) can happen."""
        return all(item.precheck is None and item.side is None for item in self.items)

    def outcome(self) -> list[Event]:
        if self.error is not None:
            raise self.error
        assert self.events is not None
        return self.events


class EventLog:
    """The event log of one store. Use :meth:`create` once, then :meth:`open`."""

    def __init__(
        self, store: Store, keys: HmacKeyProvider, consumers: Sequence[Consumer] = ()
    ) -> None:
        self.store = store
        self.keys = keys
        self.consumers = list(consumers)
        for c in self.consumers:
            bind = getattr(c, "bind", None)
            if bind is not None:
                bind(store)
        self._events = store.db("events")
        self._meta = store.db("meta")
        self._checkpoints = store.db("checkpoints")
        with store.read() as txn:
            ledger_id = txn.get(b"ledger_id", db=self._meta)
        if ledger_id is None:
            raise EnvironmentProblem(
                "E-NOT-INITIALIZED", "store has no ledger (run cap-agent init)"
            )
        self.ledger_id = bytes(ledger_id).decode()
        self._mac_keys: dict[str, MacKey] = {}
        with store.read() as txn:
            self._writer_key(txn)
        self._queue: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._listeners: list[Callable[[list[Event]], None]] = []

    # --- lifecycle ---------------------------------------------------------------------

    @classmethod
    def create(cls, store: Store, keys: HmacKeyProvider, ledger_id: str, actor: str) -> Event:
        """Write the genesis event (seq 0) of a new ledger."""
        kid, key = keys.current()

        def txn_fn(txn: lmdb.Transaction) -> Event:
            if txn.get(b"ledger_id", db=store.db("meta")) is not None:
                raise Conflict("E-CONFLICT", "this store already holds a ledger")
            payload = genesis_payload(ledger_id)
            ts = rfc3339_now()
            eid = event_id(ledger_id, 0)
            body = encode_body(0, eid, ts, GENESIS_TYPE, actor, payload, kid)
            b3, mac = link(ZERO, ZERO, body, key)
            txn.put(seq_key(0), b3 + mac + body, db=store.db("events"), append=True)
            txn.put(b"ledger_id", ledger_id.encode(), db=store.db("meta"))
            txn.put(b"format", FORMAT.encode(), db=store.db("meta"))
            txn.put(_KID, kid.encode(), db=store.db("meta"))
            txn.put(_HEAD, seq_key(0) + b3 + mac, db=store.db("meta"))
            return Event(0, eid, ts, GENESIS_TYPE, actor, payload, kid, b3, mac)

        event: Event = store.run_write(txn_fn)
        return event

    def start(self) -> None:
        """Catch consumers up with the log; called by openers before serving reads."""
        self.store.run_write(self._catch_up)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def add_listener(self, fn: Callable[[list[Event]], None]) -> None:
        """Call ``fn(events)`` from the writer thread after each durable commit."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[list[Event]], None]) -> None:
        """Stop calling ``fn`` (a no-op when it is not registered)."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    # --- appending ---------------------------------------------------------------------

    def _enqueue(
        self,
        items: Sequence[Append],
        wake: Callable[[_Group], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> _Group:
        """Hand ``items`` to the writer as one group.

        Payloads are checked and canonicalized here, in the caller's thread, so bad input
        fails at once and the single writer thread does less.
        """
        group = _Group(items, [_canonical_payload(item) for item in items], wake, loop)
        with self._lock:
            if self._closed:
                raise EnvironmentProblem("E-STORAGE", "ledger is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="cap-ledger-writer", daemon=True
                )
                self._writer.start()
            self._queue.put(group)
        return group

    def submit(self, items: Sequence[Append]) -> Future[list[Event]]:
        """Queue ``items`` to commit together, atomically; the future resolves once durable."""
        future: Future[list[Event]] = Future()
        self._enqueue(items, lambda g: _settle(future, g))
        return future

    def append(
        self, type_: str, payload: dict[str, Any], actor: str = "system", **kw: Any
    ) -> Event:
        """Append one event and return it once it is on disk."""
        return self.append_many([Append(type_, payload, actor, **kw)])[0]

    def append_many(self, items: Sequence[Append]) -> list[Event]:
        """Append several events in one transaction (all or none), once they are on disk."""
        # A bare lock is the cheapest way to park a thread until the writer is done with
        # its group; with many appenders that handoff is what limits throughput.
        done = threading.Lock()
        done.acquire()
        group = self._enqueue(items, lambda _: done.release())
        done.acquire()
        return group.outcome()

    async def aappend(
        self, type_: str, payload: dict[str, Any], actor: str = "system", **kw: Any
    ) -> Event:
        """:meth:`append` for asyncio tasks. Cancelling the task does not withdraw the event."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self._enqueue([Append(type_, payload, actor, **kw)], lambda g: _settle(future, g), loop)
        return (await future)[0]

    async def aappend_many(self, items: Sequence[Append]) -> list[Event]:
        """:meth:`append_many` for asyncio tasks (all or none, shares the group commit)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self._enqueue(items, lambda g: _settle(future, g), loop)
        return await future

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            if self._commit([first]):
                return

    def _take(self, groups: list[_Group]) -> bool:
        """Move what is queued into ``groups`` (up to ``_MAX_BATCH`` events); True once
        the stop sentinel is met."""
        n = sum(len(g.items) for g in groups)
        while n < _MAX_BATCH:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            groups.append(nxt)
            n += len(nxt.items)
        return False

    def _commit(self, groups: list[_Group]) -> bool:
        """Commit ``groups`` and whatever queued until the write lock was ours; True when
        the stop sentinel was among them (the writer ends after this commit)."""
        stop = False

        def apply(txn: lmdb.Transaction) -> list[list[Event] | BaseException]:
            # Taken once LMDB's write lock is held, not before: appends that queued while
            # another process committed join this commit instead of waiting for the next
            # one (two serving processes would otherwise halve each other's batches).
            nonlocal stop
            stop = self._take(groups) or stop
            return self._apply_groups(txn, groups)

        try:
            outcomes = self.store.run_write(apply)
        except BaseException as exc:  # the whole transaction failed: nothing was written
            outcomes = [exc] * len(groups)
        committed: list[Event] = []
        # Waking an event loop from another thread costs a syscall and a GIL handoff, so
        # each loop gets one callback per commit, however many of its tasks were in it.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Group]] = {}
        for g, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                g.error = outcome
            else:
                g.events = outcome
                committed.extend(outcome)
            if g.loop is None:
                g.wake(g)
            else:
                by_loop.setdefault(g.loop, []).append(g)
        for loop, loop_groups in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop was closed meanwhile
                loop.call_soon_threadsafe(_wake_all, loop_groups)
        for fn in self._listeners:
            try:
                fn(committed)
            except Exception:  # a listener must never stop the writer
                _log.exception("ledger_listener_failed", listener=repr(fn))
        return stop

    def _writer_key(self, txn: lmdb.Transaction) -> tuple[str, MacKey]:
        """The kid new events must carry (the genesis key's, or the last ``key.rotate``'s) and
        its key. ``E-KEY`` when this writer does not hold it: a wrong key must fail loudly,
        never start a second chain key silently."""
        kid = self.current_kid_in(txn)
        key = self._mac_keys.get(kid)
        if key is None:
            try:
                raw_key = self.keys.get(kid)
            except EnvironmentProblem:
                raise EnvironmentProblem(
                    "E-KEY",
                    f"wrong HMAC key: the ledger's current key is {kid}, "
                    f"the key given is {self.keys.current()[0]}",
                ) from None
            key = self._mac_keys[kid] = MacKey(raw_key)
        return kid, key

    def current_kid_in(self, txn: lmdb.Transaction) -> str:
        """The kid the next event will carry, as of ``txn``."""
        raw = txn.get(_KID, db=self._meta)
        return self.keys.current()[0] if raw is None else bytes(raw).decode()

    def current_kid(self) -> str:
        with self.store.read() as txn:
            return self.current_kid_in(txn)

    def _apply_groups(
        self, txn: lmdb.Transaction, groups: list[_Group]
    ) -> list[list[Event] | BaseException]:
        """Chain every group after the head, each all or none; a failing group fails alone."""
        at = _At(self._catch_up(txn), *self._writer_key(txn))
        ts = rfc3339_now()
        outcomes: list[list[Event] | BaseException] = []
        for run in _runs(groups):
            try:
                at, results = self._apply_run(txn, run, at, ts)
                outcomes.extend(results)
                continue
            except lmdb.MapFullError:
                raise
            except Exception as exc:
                if len(run) == 1:
                    outcomes.append(exc)
                    continue
            for g in run:  # the shared child failed: find the failing group, one at a time
                try:
                    at, results = self._apply_run(txn, [g], at, ts)
                    outcomes.extend(results)
                except lmdb.MapFullError:
                    raise
                except Exception as exc:
                    outcomes.append(exc)
        head = at.head
        txn.put(_HEAD, seq_key(head.seq) + head.b3 + head.mac, db=self._meta)
        for c in self.consumers:
            txn.put(c.name.encode(), seq_key(head.seq), db=self._checkpoints)
        return outcomes

    def _apply_run(
        self, txn: lmdb.Transaction, run: list[_Group], at: _At, ts: str
    ) -> tuple[_At, list[list[Event]]]:
        """Chain the groups of ``run`` after ``at`` in one child transaction (all or none)."""
        child = self.store.env.begin(write=True, parent=txn)
        try:
            results = []
            seq, b3, mac = at.head.seq, at.head.b3, at.head.mac
            kid: str = at.kid
            key: MacKey | None = at.key
            for g in run:
                events = []
                for item, payload in zip(g.items, g.payloads, strict=True):
                    if key is None:  # a key.rotate came before: this needs the new key
                        kid, key = self._writer_key(child)
                    if item.precheck is not None:
                        payload = canonicalize(item.precheck(child, payload), allow_bytes=False)
                    seq += 1
                    eid = event_id(self.ledger_id, seq)
                    body = pack_body(seq, eid, ts, item.type, item.actor, payload, kid)
                    b3 = next_b3(b3, body)
                    mac = key.mac(mac, b3)
                    child.put(_SEQ.pack(seq), b3 + mac + body, db=self._events, append=True)
                    ev = Event(seq, eid, ts, item.type, item.actor, payload, kid, b3, mac)
                    if item.type == ROTATE_TYPE:  # later events carry the new kid
                        child.put(_KID, _rotation_target(payload, kid).encode(), db=self._meta)
                        key = None
                    if item.side is not None:
                        item.side(child, ev)
                    for c in self.consumers:
                        c.apply(child, ev)
                    events.append(ev)
                results.append(events)
        except BaseException:
            child.abort()
            raise
        child.commit()
        return _At(Head(seq, b3, mac), kid, key), results

    # --- consumers ---------------------------------------------------------------------

    def checkpoint(self, txn: lmdb.Transaction, name: str) -> int:
        """Last seq applied by consumer ``name`` (-1 when none)."""
        raw = txn.get(name.encode(), db=self._checkpoints)
        return -1 if raw is None else _SEQ.unpack(raw)[0]

    def set_checkpoint(self, txn: lmdb.Transaction, name: str, seq: int | None) -> None:
        """Record that consumer ``name`` applied every event up to ``seq`` (``None``: none)."""
        if seq is None:
            txn.delete(name.encode(), db=self._checkpoints)
        else:
            txn.put(name.encode(), seq_key(seq), db=self._checkpoints)

    def _catch_up(self, txn: lmdb.Transaction) -> Head:
        """Apply to each consumer the events it has not seen (written by another process,
        or before it existed), advancing its checkpoint in this transaction."""
        head = self._head(txn)
        for c in self.consumers:
            done = self.checkpoint(txn, c.name)
            if done >= head.seq:
                continue
            for ev in self._iter(txn, done + 1, head.seq):
                c.apply(txn, ev)
            txn.put(c.name.encode(), seq_key(head.seq), db=self._checkpoints)
        return head

    # --- reading -----------------------------------------------------------------------

    def _head(self, txn: lmdb.Transaction) -> Head:
        raw = txn.get(_HEAD, db=self._meta)
        if raw is None or len(raw) != 72:
            raise CheckFailed("E-CHAIN-BROKEN", "head record is missing or malformed")
        return Head(_SEQ.unpack(raw[:8])[0], bytes(raw[8:40]), bytes(raw[40:72]))

    def head(self) -> Head:
        with self.store.read() as txn:
            return self._head(txn)

    def get(self, seq: int) -> Event:
        with self.store.read() as txn:
            raw = txn.get(seq_key(seq), db=self._events)
        if raw is None:
            raise NotFound("E-NOT-FOUND", f"no event with seq {seq}")
        return _decode(seq, raw)

    def head_in(self, txn: lmdb.Transaction) -> Head:
        """The head as seen by ``txn`` (for readers that need it in their own snapshot)."""
        return self._head(txn)

    def iter_events(self, txn: lmdb.Transaction, start: int, stop: int | None) -> Iterator[Event]:
        """Events ``start..stop`` (inclusive; ``None``: to the end) as seen by ``txn``."""
        return self._iter(txn, start, stop)

    def _iter(self, txn: lmdb.Transaction, start: int, stop: int | None) -> Iterator[Event]:
        cur = txn.cursor(db=self._events)
        if not cur.set_range(seq_key(start)):
            return
        for k, v in cur:
            seq = _SEQ.unpack(k)[0]
            if stop is not None and seq > stop:
                return
            yield _decode(seq, v)

    def records(self, after: int = -1, *, chunk: int = 1024) -> Iterator[tuple[int, bytes]]:
        """Stored records (``b3 || mac || body``) with seq > ``after`` in order, read in short
        transactions; for exporters that need the exact chained bytes (TCAP capsules)."""
        if after < -1:
            raise BadInput("E-BAD-INPUT", f"after must be -1 or more, not {after}")
        pos = after + 1
        while pos <= _MAX_SEQ:
            batch: list[tuple[int, bytes]] = []
            with self.store.read() as txn:
                cur = txn.cursor(db=self._events)
                if cur.set_range(seq_key(pos)):
                    for k, v in cur:
                        batch.append((_SEQ.unpack(k)[0], bytes(v)))
                        if len(batch) >= chunk:
                            break
            if not batch:
                return
            yield from batch
            pos = batch[-1][0] + 1

    def events(
        self,
        after: int = -1,
        limit: int | None = None,
        types: Sequence[str] = (),
        *,
        chunk: int = 1024,
    ) -> Iterator[Event]:
        """Events with seq > ``after`` in order, filtered by type (a trailing ``*`` is a
        prefix match), read in short transactions so a slow reader holds nothing open."""
        if limit is not None and limit < 0:
            raise BadInput("E-BAD-INPUT", f"limit must be 0 or more, not {limit}")
        if limit == 0:
            return
        wanted = 0
        match = type_matcher(types)
        for seq, record in self.records(after, chunk=chunk):
            ev = _decode(seq, record)
            if not match(ev.type):
                continue
            yield ev
            wanted += 1
            if limit is not None and wanted >= limit:
                return

    # --- verification ------------------------------------------------------------------

    def verify(
        self,
        start: int = 0,
        stop: int | None = None,
        progress: Callable[[int], None] | None = None,
        *,
        txn: lmdb.Transaction | None = None,
        visit: Callable[[Event], None] | None = None,
    ) -> VerifyReport:
        """Recompute both chains from ``start`` to ``stop`` (default: the head).

        Raises ``E-CHAIN-BROKEN`` naming the first bad seq (an event whose kid is not the
        one in effect, set by genesis and each ``key.rotate``, is one), or ``E-KEY`` when no
        key is held for an event's kid. docs/EVENTS.md, "Verification", lists every check.
        With ``txn`` it reads that snapshot; ``visit`` is called with each event once both
        its chain values checked (audit replay).
        """
        if txn is None:
            with self.store.read() as own:
                return self.verify(start, stop, progress, txn=own, visit=visit)
        head = self._head(txn)
        last = head.seq if stop is None else min(stop, head.seq)
        if not 0 <= start <= last:
            raise BadInput(
                "E-BAD-INPUT", f"nothing to verify from seq {start} (the head is {head.seq})"
            )
        if start > 0:
            prev_raw = txn.get(seq_key(start - 1), db=self._events)
            if prev_raw is None:
                raise _broken(start - 1, "event is missing")
            b3, mac = bytes(prev_raw[:32]), bytes(prev_raw[32:64])
            want = _kid_after(start - 1, _unpack_fields(start - 1, bytes(prev_raw[64:])))
        else:
            b3, mac, want = ZERO, ZERO, None
        keys: dict[str, MacKey] = {}
        expected = start
        cur = txn.cursor(db=self._events)
        positioned = cur.set_range(seq_key(start))
        for k, v in cur.iternext() if positioned else ():
            seq = _SEQ.unpack(k)[0]
            if seq > last:
                break
            if seq != expected:
                raise _broken(expected, "event is missing (gap in the log)")
            record = bytes(v)  # no copy: LMDB hands out bytes
            b3, mac, want, fields = _check_record(seq, record, b3, mac, want, keys, self.keys)
            if seq == 0:
                self._check_genesis(record)
            if visit is not None:
                visit(_event_of(fields, b3, mac))
            expected += 1
            if progress is not None and not expected & 0xFFFF:
                progress(expected)
        if expected <= last:
            raise _broken(expected, f"log ends at seq {expected - 1} but the head says {head.seq}")
        if stop is None and (b3 != head.b3 or mac != head.mac):
            raise _broken(last, "head record does not match the last event")
        if stop is None and txn.get(seq_key(last + 1), db=self._events) is not None:
            raise _broken(last + 1, "an event follows the head record")
        return VerifyReport(start, last, last - start + 1, head, tuple(sorted(keys)))

    def _check_genesis(self, record: bytes) -> None:
        fields = _unpack_fields(0, record[64:])
        payload = fields.get("payload")
        if fields.get("type") != GENESIS_TYPE or not isinstance(payload, dict):
            raise _broken(0, f"event 0 is not {GENESIS_TYPE}")
        if payload.get("ledger_id") != self.ledger_id:
            raise _broken(0, "genesis names another ledger id than this store's")


def type_matcher(types: Sequence[str]) -> Callable[[str], bool]:
    """``types`` as a predicate: exact names, or prefixes written with a trailing ``*``;
    no types matches everything."""
    if not types:
        return lambda _t: True
    exact = frozenset(t for t in types if not t.endswith("*"))
    prefixes = tuple(t[:-1] for t in types if t.endswith("*"))
    if not prefixes:
        return exact.__contains__
    return lambda t: t in exact or t.startswith(prefixes)


def _runs(groups: list[_Group]) -> Iterator[list[_Group]]:
    """Split a commit's groups into runs sharing one child transaction: consecutive plain
    groups together (a nested transaction costs more than the event it holds), any group
    with a precheck or a side alone (those must never run twice)."""
    run: list[_Group] = []
    for g in groups:
        if g.plain:
            run.append(g)
            continue
        if run:
            yield run
            run = []
        yield [g]
    if run:
        yield run


def _wake_all(groups: list[_Group]) -> None:
    for g in groups:
        g.wake(g)


def _settle(future: Future[list[Event]] | asyncio.Future[list[Event]], group: _Group) -> None:
    if future.done():  # an asyncio waiter that was cancelled
        return
    if group.error is not None:
        future.set_exception(group.error)
    else:
        future.set_result(group.outcome())


def _canonical_payload(item: Append) -> dict[str, Any]:
    if type(item.type) is not str or type(item.actor) is not str:
        raise BadInput("E-BAD-INPUT", "event type and actor must be strings")
    if type(item.payload) is not dict:
        raise BadInput("E-BAD-INPUT", "payload must be a JSON object")
    payload: dict[str, Any] = canonicalize(item.payload, allow_bytes=False)
    return payload


def _broken(seq: int, why: str) -> CheckFailed:
    return CheckFailed("E-CHAIN-BROKEN", f"chain broken at seq {seq}: {why}", seq=seq)


def _decode(seq: int, raw: Any) -> Event:
    try:
        return decode_record(bytes(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise _broken(seq, f"stored event is unreadable ({exc})") from None


def _unpack_fields(seq: int, body: bytes) -> dict[str, Any]:
    try:
        fields = _unpack(body)
    except Exception:
        raise _broken(seq, "stored event is unreadable") from None
    if not isinstance(fields, dict):
        raise _broken(seq, "stored event is unreadable")
    return fields


def _rotation_target(payload: dict[str, Any], kid: str) -> str:
    """The ``new_kid`` of a ``key.rotate`` payload, which must name the kid it is MAC'd under
    as ``old_kid`` and a different key as ``new_kid``."""
    new_kid = payload.get("new_kid")
    if payload.get("old_kid") != kid:
        raise BadInput("E-BAD-INPUT", f"key.rotate must name the current kid {kid} as old_kid")
    if not isinstance(new_kid, str) or not new_kid or new_kid == kid:
        raise BadInput("E-BAD-INPUT", "key.rotate needs a new_kid other than the current kid")
    return new_kid


def _kid_after(seq: int, fields: dict[str, Any]) -> str:
    """The kid in effect for the event after this one."""
    kid = fields.get("kid")
    if not isinstance(kid, str):
        raise _broken(seq, "stored event is unreadable")
    if fields.get("type") != ROTATE_TYPE:
        return kid
    payload = fields.get("payload")
    try:
        return _rotation_target(payload if isinstance(payload, dict) else {}, kid)
    except BadInput:
        raise _broken(seq, "key.rotate does not name a new kid") from None


def _check_record(
    seq: int,
    record: bytes,
    prev_b3: bytes,
    prev_mac: bytes,
    want_kid: str | None,
    keys: dict[str, MacKey],
    provider: HmacKeyProvider,
) -> tuple[bytes, bytes, str, dict[str, Any]]:
    """Verify one stored record against its predecessor's chain values and the kid in
    effect. Returns its chain values, the kid in effect for the next event and the body's
    fields (so a replay decodes each body once).

    The hot loop of ``ledger verify``: one function, no helper calls on the good path.
    """
    body = record[64:]
    b3 = blake3(prev_b3 + body).digest()
    if b3 != record[:32]:
        raise _broken(seq, "BLAKE3 chain value does not match")
    try:
        fields = _unpack(body)
        claimed, kid, type_ = fields["seq"], fields["kid"], fields["type"]
    except Exception:
        raise _broken(seq, "stored event is unreadable") from None
    if claimed != seq:
        raise _broken(seq, f"event at this position claims seq {claimed}")
    if type(kid) is not str:
        raise _broken(seq, "stored event has no kid")
    if want_kid is not None and kid != want_kid:
        raise _broken(seq, f"event carries kid {kid} but the key in effect is {want_kid}")
    key = keys.get(kid)
    if key is None:
        key = keys[kid] = MacKey(provider.get(kid))
    mac = key.mac(prev_mac, b3)
    if mac != record[32:64]:
        raise _broken(seq, "HMAC chain value does not match")
    return b3, mac, (kid if type_ != ROTATE_TYPE else _kid_after(seq, fields)), fields


def _event_of(fields: dict[str, Any], b3: bytes, mac: bytes) -> Event:
    """The event of a verified record's body fields (no second decode)."""
    try:
        return Event(
            fields["seq"],
            fields["id"],
            fields["ts"],
            fields["type"],
            fields["actor"],
            fields["payload"],
            fields["kid"],
            b3,
            mac,
        )
    except KeyError as exc:
        raise _broken(fields["seq"], f"stored event has no {exc}") from None
