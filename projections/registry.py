"""The registry projection: registry entries v0.9, now and as of any event.

Consumes ``registry.add``, ``registry.import``, ``registry.revoke`` and
``selfverify.result``. Tables (rows are canonical msgpack, so tables compare byte for byte):

- ``proj_registry``:      entry id (UTF-8) -> current row
- ``proj_registry_hist``: entry id (UTF-8) || 0x00 || seq (8 bytes, big-endian) -> the row
  as it became at that seq. ``--as-of SEQ`` is a seek to the last version at or before
  SEQ, not a replay.

A row holds the v0.9 fields, ``selfverify_code``, ``fuel_used``, ``revoked``,
``revoked_at``, ``revoke_reason``, ``source`` (add|import), ``seq`` (created),
``updated_seq``, and ``signed``: the ``selfverify_*`` values the signature covers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import lmdb

from ledger.canonical import unpackb
from ledger.errors import BadInput
from ledger.events import Event
from ledger.registry import REGISTRY_ADD, REGISTRY_IMPORT, REGISTRY_REVOKE, SELFVERIFY_RESULT
from ledger.registry_entry import SELFVERIFY_STATUSES, V09_FIELDS
from ledger.store import Store
from projections.rows import pack_ordered

__all__ = ["DB", "HIST_DB", "RegistryProjection", "RegistryView", "entry_view"]

DB = "proj_registry"
HIST_DB = "proj_registry_hist"
_SEQ = struct.Struct(">Q")
_SEP = b"\x00"


def entry_view(row: dict[str, Any]) -> dict[str, Any]:
    """The contract's JSON view of a row: v0.9 fields in the seed's order, then the extras
    (without ``signed``)."""
    view = {name: row.get(name) for name in V09_FIELDS}
    view.update((k, v) for k, v in row.items() if k not in view and k != "signed")
    return view


class RegistryProjection:
    """Consumer that materializes the registry tables (deterministic, all state in LMDB)."""

    name = "registry"
    dbs = (DB, HIST_DB)

    def __init__(self) -> None:
        self.db: Any = None
        self.hist: Any = None

    def bind(self, store: Store) -> None:
        self.db = store.db(DB)
        self.hist = store.db(HIST_DB)

    def apply(self, txn: lmdb.Transaction, event: Event) -> None:
        t = event.type
        if t in (REGISTRY_ADD, REGISTRY_IMPORT):
            entry = event.payload["entry"]
            sv = event.payload.get("selfverify") or {}
            extras = {
                "selfverify_code": sv.get("code"),
                "fuel_used": sv.get("fuel_used"),
                "revoked": False,
                "revoked_at": None,
                "revoke_reason": None,
                "source": "add" if t == REGISTRY_ADD else "import",
                "seq": event.seq,
                "updated_seq": event.seq,
                "signed": {  # keys in canonical order
                    "selfverify_at": entry.get("selfverify_at"),
                    "selfverify_status": entry.get("selfverify_status"),
                },
            }
            new = dict(sorted({**entry, **extras}.items()))
            self._write(txn, entry["id"], new, event.seq)
        elif t == REGISTRY_REVOKE:
            row = self._row(txn, event.payload["id"])
            if row is not None:
                row.update(
                    revoked=True,
                    revoked_at=event.ts,
                    revoke_reason=event.payload.get("reason"),
                    updated_seq=event.seq,
                )
                self._write(txn, row["id"], row, event.seq)
        elif t == SELFVERIFY_RESULT:
            p = event.payload
            row = self._row(txn, p["entry_id"])
            if row is not None:
                row.update(
                    selfverify_status=p["status"],
                    selfverify_at=p["at"],
                    selfverify_code=p.get("code"),
                    fuel_used=p.get("fuel_used"),
                    updated_seq=event.seq,
                )
                self._write(txn, row["id"], row, event.seq)

    def _row(self, txn: lmdb.Transaction, entry_id: str) -> dict[str, Any] | None:
        raw = txn.get(entry_id.encode(), db=self.db)
        return None if raw is None else unpackb(bytes(raw))

    def _write(self, txn: lmdb.Transaction, entry_id: str, row: dict[str, Any], seq: int) -> None:
        key = entry_id.encode()
        value = pack_ordered(row)  # new rows are sorted, updates keep the order
        txn.put(key, value, db=self.db)
        txn.put(key + _SEP + _SEQ.pack(seq), value, db=self.hist)


class RegistryView:
    """Read API over the registry tables (also the write side's ``EntryIndex``)."""

    consumer_name = RegistryProjection.name

    def __init__(self, store: Store) -> None:
        self.db = store.db(DB)
        self.hist = store.db(HIST_DB)

    def row(self, txn: lmdb.Transaction, entry_id: str) -> dict[str, Any] | None:
        """The current stored row (with ``signed``), or ``None``."""
        raw = txn.get(entry_id.encode(), db=self.db)
        return None if raw is None else unpackb(bytes(raw))

    def row_as_of(self, txn: lmdb.Transaction, entry_id: str, as_of: int) -> dict[str, Any] | None:
        """The row as it was after event ``as_of`` (``None`` if it did not exist yet)."""
        key = entry_id.encode()
        cur = txn.cursor(db=self.hist)
        target = key + _SEP + _SEQ.pack(as_of)
        if cur.set_range(target):
            if bytes(cur.key()) == target:
                return unpackb(bytes(cur.value()))
            if not cur.prev():
                return None
        elif not cur.last():
            return None
        k = bytes(cur.key())
        if k[: len(key) + 1] != key + _SEP or len(k) != len(key) + 9:
            return None
        return unpackb(bytes(cur.value()))

    def get_entry(
        self, txn: lmdb.Transaction, entry_id: str, as_of: int | None = None
    ) -> dict[str, Any] | None:
        """The entry's JSON view, now or as of event ``as_of``."""
        _check_as_of(as_of)
        row = self.row(txn, entry_id) if as_of is None else self.row_as_of(txn, entry_id, as_of)
        return None if row is None else entry_view(row)

    def _rows_as_of(self, txn: lmdb.Transaction, as_of: int, after: bytes) -> Iterator[Any]:
        cur = txn.cursor(db=self.hist)
        if not cur.set_range(after + b"\x01" if after else b""):
            return
        last_id: bytes | None = None
        best: Any = None
        for k, v in cur:
            entry_key, seq = bytes(k[:-9]), _SEQ.unpack(k[-8:])[0]
            if entry_key != last_id:
                if best is not None:
                    yield unpackb(bytes(best))
                last_id, best = entry_key, None
            if seq <= as_of:
                best = v
        if best is not None:
            yield unpackb(bytes(best))

    def iter_rows(self, txn: lmdb.Transaction) -> Iterator[dict[str, Any]]:
        """Every current stored row in id order (with ``signed``)."""
        return self._rows_now(txn, b"")

    def _rows_now(self, txn: lmdb.Transaction, after: bytes) -> Iterator[Any]:
        cur = txn.cursor(db=self.db)
        if not cur.set_range(after + b"\x00" if after else b""):
            return
        for _k, v in cur:
            yield unpackb(bytes(v))

    def list_entries(
        self,
        txn: lmdb.Transaction,
        *,
        status: str | None = None,
        verifier_name: str | None = None,
        as_of: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of entries in id order and the cursor of the next (``None`` at the end)."""
        _check_as_of(as_of)
        if status is not None and status not in SELFVERIFY_STATUSES:
            raise BadInput("E-BAD-INPUT", f"status must be one of {', '.join(SELFVERIFY_STATUSES)}")
        if limit is not None and limit < 1:
            raise BadInput("E-BAD-INPUT", "limit must be at least 1")
        after = cursor.encode() if cursor else b""
        rows = self._rows_now(txn, after) if as_of is None else self._rows_as_of(txn, as_of, after)
        page: list[dict[str, Any]] = []
        for row in rows:
            if status is not None and row.get("selfverify_status") != status:
                continue
            if verifier_name is not None and row.get("verifier_name") != verifier_name:
                continue
            if limit is not None and len(page) >= limit:
                return page, page[-1]["id"]
            page.append(entry_view(row))
        return page, None


def _check_as_of(as_of: int | None) -> None:
    if as_of is not None and (type(as_of) is not int or as_of < 0):
        raise BadInput("E-BAD-INPUT", "as-of must be a seq (a non-negative integer)")
