"""The LMDB tier: small blobs stored in the ``blob_data`` database, in the event's txn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import lmdb

from ledger.blobtiers.base import CHUNK, BlobTier, Staged
from ledger.errors import CheckFailed
from ledger.store import Store

__all__ = ["LmdbTier"]


class LmdbTier(BlobTier):
    """Bytes keyed by the raw 32-byte blob id; written and deleted with their events."""

    name: ClassVar[str] = "lmdb"

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db("blob_data")

    def persist(self, staged: Staged) -> None:
        """Nothing to do before the event: the bytes travel in its transaction."""

    def write(self, txn: lmdb.Transaction, staged: Staged) -> None:
        if staged.data is None:
            raise ValueError("LMDB tier needs the staged bytes in memory")
        key = bytes.fromhex(staged.blob_id)
        # Same bytes put again: leave the page alone; different bytes (a corrupted copy)
        # under the same id are replaced by the good ones.
        if txn.get(key, db=self.db) != staged.data:
            txn.put(key, staged.data, db=self.db)

    def chunks(self, blob_id: str) -> Iterator[bytes]:
        with self.store.read() as txn:
            raw = txn.get(bytes.fromhex(blob_id), db=self.db)
            data = None if raw is None else bytes(raw)
        if data is None:
            raise CheckFailed("E-BLOB-MISSING", f"blob {blob_id} has a record but no data")
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]
        if not data:
            yield b""

    def delete(self, txn: lmdb.Transaction, blob_id: str) -> None:
        txn.delete(bytes.fromhex(blob_id), db=self.db)

    def release(self, blob_id: str) -> int:
        """Nothing outside the store to free."""
        return 0

    def stored(self) -> Iterator[tuple[str, int]]:
        with self.store.read() as txn:
            found = [
                (bytes(k).hex(), len(v))
                for k, v in txn.cursor(db=self.db).iternext(keys=True, values=True)
            ]
        yield from found

    def discard(self, staged: Staged) -> None:
        """Staged bytes are only in memory."""
