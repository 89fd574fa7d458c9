"""The checkpoints projection: every signed checkpoint the ledger recorded, by covered seq.

Layout of ``proj_checkpoints``: 8-byte big-endian covered seq -> canonical msgpack of
``{"checkpoint": <the signed statement>, "event_seq": <seq of its ledger.checkpoint>}``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import lmdb

from ledger.canonical import packb, unpackb
from ledger.checkpoint import CHECKPOINT_TYPE
from ledger.events import Event
from ledger.store import Store

__all__ = ["CheckpointsProjection", "list_checkpoints"]

_SEQ = struct.Struct(">Q")


class CheckpointsProjection:
    """Consumer of ``ledger.checkpoint``; all state lives in LMDB."""

    name = "checkpoints"
    dbs = ("proj_checkpoints",)

    def __init__(self) -> None:
        self._db: Any = None

    def bind(self, store: Store) -> None:
        self._db = store.db("proj_checkpoints")

    def apply(self, txn: lmdb.Transaction, event: Event) -> None:
        if event.type != CHECKPOINT_TYPE:
            return
        cp = event.payload
        txn.put(
            _SEQ.pack(cp["seq"]), packb({"checkpoint": cp, "event_seq": event.seq}), db=self._db
        )


def list_checkpoints(
    store: Store, after: int = -1, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Recorded checkpoints covering seq > ``after``, oldest first (``{checkpoint, event_seq}``)."""
    db = store.db("proj_checkpoints")
    with store.read() as txn:
        cur = txn.cursor(db=db)
        found = cur.set_range(_SEQ.pack(after + 1))
        rows = []
        for n, (_, v) in enumerate(cur.iternext() if found else ()):
            if limit is not None and n >= limit:
                break
            rows.append(unpackb(bytes(v)))
    yield from rows
