"""What an insider holding the chain keys can do to a stored log, for tests that must catch it."""

from __future__ import annotations

from typing import Any

from ledger.chain import ZERO, link
from ledger.events import decode_record, encode_body
from ledger.log import seq_key
from ledger.store import Store

__all__ = ["rewrite_history", "truncate_history"]


def rewrite_history(
    store: Store, keys: dict[str, bytes], seq: int, payload: dict[str, Any]
) -> None:
    """Replace event ``seq``'s payload and recompute BOTH chains from there to the head with
    the right keys (``kid -> key``), so ``ledger verify`` alone finds nothing wrong."""
    events, meta = store.db("events"), store.db("meta")
    with store.write() as txn:
        if seq > 0:
            prev = bytes(txn.get(seq_key(seq - 1), db=events))
            b3, mac = prev[:32], prev[32:64]
        else:
            b3, mac = ZERO, ZERO
        cur = txn.cursor(db=events)
        cur.set_key(seq_key(seq))
        rows = [(bytes(k), decode_record(bytes(v))) for k, v in cur.iternext()]
        for k, ev in rows:
            body = encode_body(
                ev.seq,
                ev.id,
                ev.ts,
                ev.type,
                ev.actor,
                payload if ev.seq == seq else ev.payload,
                ev.kid,
            )
            b3, mac = link(b3, mac, body, keys[ev.kid])
            txn.put(k, b3 + mac + body, db=events)
        txn.put(b"head", rows[-1][0] + b3 + mac, db=meta)


def truncate_history(store: Store, last: int) -> None:
    """Drop every event after ``last`` and point the head at it (a consistent, shorter log)."""
    events, meta = store.db("events"), store.db("meta")
    with store.write() as txn:
        cur = txn.cursor(db=events)
        cur.set_key(seq_key(last + 1))
        while cur.key() and cur.delete():
            pass
        rec = bytes(txn.get(seq_key(last), db=events))
        txn.put(b"head", seq_key(last) + rec[:64], db=meta)
