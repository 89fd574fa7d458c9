"""The blobs projection: one record per stored blob, and refcounts from registry entries.

Consumes ``blob.put``, ``blob.gc``, ``registry.add``, ``registry.import`` and
``registry.revoke``. Everything lives in the ``proj_blobs`` database under key prefixes:

- ``b/`` + blob id (32 bytes)   -> record (canonical msgpack)
- ``h/`` + SHA3-256 (32 bytes)  -> blob id (the ABI is pinned by SHA3-256)
- ``r/`` + blob id (32 bytes)   -> number of live entries referencing it
- ``e/`` + entry id (UTF-8)     -> the 32-byte ids that entry pinned, concatenated

A refcount is kept for a blob id even before the blob is put, so an entry imported ahead of
its blobs still pins them once they arrive.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from typing import Any

import lmdb

from ledger.blobs import BLOB_GC, BLOB_PUT, BlobInfo
from ledger.canonical import unpackb
from ledger.errors import BadInput
from ledger.events import Event
from ledger.registry_entry import blob_refs
from ledger.store import Store, scan_prefix
from projections.rows import pack_ordered

__all__ = ["DB", "BlobsProjection", "BlobsView"]

DB = "proj_blobs"
_ROW, _SHA3, _REFS, _ENTRY = b"b/", b"h/", b"r/", b"e/"
_COUNT = struct.Struct(">Q")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_REGISTRY_ADD = ("registry.add", "registry.import")
_REGISTRY_REVOKE = "registry.revoke"


def _unpack(raw: Any, refcount: int) -> BlobInfo:
    row = unpackb(bytes(raw))
    return BlobInfo(refcount=refcount, **row)


class BlobsProjection:
    """Consumer that materializes ``proj_blobs`` (deterministic, all state in LMDB)."""

    name = "blobs"
    dbs = (DB,)

    def __init__(self) -> None:
        self.db: Any = None

    def bind(self, store: Store) -> None:
        self.db = store.db(DB)

    def apply(self, txn: lmdb.Transaction, event: Event) -> None:
        t = event.type
        if t == BLOB_PUT:
            self._put(txn, event)
        elif t == BLOB_GC:
            self._gc(txn, event.payload)
        elif t in _REGISTRY_ADD:
            self._pin(txn, event.payload["entry"])
        elif t == _REGISTRY_REVOKE:
            self._unpin(txn, event.payload["id"])

    def _put(self, txn: lmdb.Transaction, event: Event) -> None:
        p = event.payload
        key = _ROW + bytes.fromhex(p["blob_id"])
        raw = txn.get(key, db=self.db)
        if raw is None:
            row = {  # keys in canonical (sorted) order
                "blob_id": p["blob_id"],
                "created_at": event.ts,
                "last_put_at": event.ts,
                "media_type": p["media_type"],
                "puts": 1,
                "sha3_256": p["sha3_256"],
                "size": p["size"],
                "tier": p["tier"],
            }
            txn.put(_SHA3 + bytes.fromhex(p["sha3_256"]), key[2:], db=self.db)
        else:
            row = unpackb(bytes(raw))
            row["last_put_at"] = event.ts
            row["tier"] = p["tier"]
            row["puts"] += 1
        txn.put(key, pack_ordered(row), db=self.db)

    def _gc(self, txn: lmdb.Transaction, payload: dict[str, Any]) -> None:
        for item in payload["removed"]:
            key = _ROW + bytes.fromhex(item["blob_id"])
            raw = txn.get(key, db=self.db)
            if raw is None:
                continue
            row = unpackb(bytes(raw))
            txn.delete(key, db=self.db)
            txn.delete(_SHA3 + bytes.fromhex(row["sha3_256"]), db=self.db)

    def _resolve(self, txn: lmdb.Transaction, kind: str, value: str) -> bytes | None:
        if not _HEX64.match(value):
            return None
        if kind == "b3":
            return bytes.fromhex(value)
        raw = txn.get(_SHA3 + bytes.fromhex(value), db=self.db)
        return None if raw is None else bytes(raw)

    def _pin(self, txn: lmdb.Transaction, entry: dict[str, Any]) -> None:
        ids = sorted(
            {b for kind, v in blob_refs(entry) if (b := self._resolve(txn, kind, v)) is not None}
        )
        if not ids:
            return
        txn.put(_ENTRY + entry["id"].encode(), b"".join(ids), db=self.db)
        for b in ids:
            raw = txn.get(_REFS + b, db=self.db)
            n = 0 if raw is None else _COUNT.unpack(raw)[0]
            txn.put(_REFS + b, _COUNT.pack(n + 1), db=self.db)

    def _unpin(self, txn: lmdb.Transaction, entry_id: str) -> None:
        key = _ENTRY + entry_id.encode()
        raw = txn.get(key, db=self.db)
        if raw is None:
            return
        txn.delete(key, db=self.db)
        raw = bytes(raw)
        for b in (raw[i : i + 32] for i in range(0, len(raw), 32)):
            n = _COUNT.unpack(txn.get(_REFS + b, _COUNT.pack(1), db=self.db))[0] - 1
            if n:
                txn.put(_REFS + b, _COUNT.pack(n), db=self.db)
            else:
                txn.delete(_REFS + b, db=self.db)


class BlobsView:
    """Read API over ``proj_blobs`` (also the write side's :class:`ledger.blobs.BlobIndex`)."""

    consumer_name = BlobsProjection.name

    def __init__(self, store: Store) -> None:
        self.db = store.db(DB)

    def refcount(self, txn: lmdb.Transaction, raw_id: bytes) -> int:
        raw = txn.get(_REFS + raw_id, db=self.db)
        return 0 if raw is None else _COUNT.unpack(raw)[0]

    def blob(self, txn: lmdb.Transaction, blob_id: str) -> BlobInfo | None:
        if not _HEX64.match(blob_id):
            return None
        raw_id = bytes.fromhex(blob_id)
        raw = txn.get(_ROW + raw_id, db=self.db)
        return None if raw is None else _unpack(raw, self.refcount(txn, raw_id))

    def by_sha3(self, txn: lmdb.Transaction, sha3_256: str) -> BlobInfo | None:
        if not _HEX64.match(sha3_256):
            return None
        raw = txn.get(_SHA3 + bytes.fromhex(sha3_256), db=self.db)
        return None if raw is None else self.blob(txn, bytes(raw).hex())

    def iter_blobs(self, txn: lmdb.Transaction, after: str | None = None) -> Iterator[BlobInfo]:
        """Every blob in id order, starting after ``after``."""
        start = _ROW + (bytes.fromhex(after) + b"\0" if after else b"")
        for k, v in scan_prefix(txn, self.db, _ROW, start):
            yield _unpack(v, self.refcount(txn, k[2:]))

    def collectable(self, txn: lmdb.Transaction, cutoff: str) -> Iterator[BlobInfo]:
        """Blobs no live entry references, last put at or before ``cutoff`` (RFC 3339)."""
        for info in self.iter_blobs(txn):
            if info.refcount == 0 and info.last_put_at <= cutoff:
                yield info

    def list_blobs(
        self,
        txn: lmdb.Transaction,
        *,
        unreferenced: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[BlobInfo], str | None]:
        """A page of blobs in id order and the cursor of the next page (``None`` at the end)."""
        if cursor is not None and not _HEX64.match(cursor):
            raise BadInput("E-BAD-INPUT", "cursor must be a blob id")
        rows: list[BlobInfo] = []
        for info in self.iter_blobs(txn, cursor):
            if unreferenced and info.refcount:
                continue
            if limit is not None and len(rows) >= limit:
                return rows, rows[-1].blob_id
            rows.append(info)
        return rows, None
