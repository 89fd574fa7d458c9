"""The tokens projection: who may call the HTTP service, materialized from ``token.*`` events.

Only the SHA-256 of each token is kept (the events carry nothing more), so neither the
projection nor the log can give a token back. Layout of ``proj_tokens``:
``t/<token_id>`` -> record, ``n/<name>`` -> token_id of the active token with that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lmdb

from ledger.canonical import packb, unpackb
from ledger.events import Event
from ledger.store import Store, scan_prefix

__all__ = [
    "TOKEN_CREATE",
    "TOKEN_REVOKE",
    "TokenRecord",
    "TokensProjection",
    "active_token_id",
    "list_tokens",
    "token_by_id",
]

TOKEN_CREATE = "token.create"
TOKEN_REVOKE = "token.revoke"
_BY_ID = b"t/"
_BY_NAME = b"n/"


@dataclass(slots=True, frozen=True)
class TokenRecord:
    """One issued token: its public id, name, role and the hash of its secret."""

    token_id: str
    name: str
    role: str
    hash: str
    created_at: str
    created_seq: int
    revoked_seq: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_seq is None

    def to_json(self) -> dict[str, Any]:
        """The public view (no hash: nothing about the secret leaves the projection)."""
        return {
            "name": self.name,
            "role": self.role,
            "token_id": self.token_id,
            "created_at": self.created_at,
            "created_seq": self.created_seq,
            "revoked": not self.active,
            "revoked_seq": self.revoked_seq,
        }

    def _pack(self) -> bytes:
        return packb(
            {
                "token_id": self.token_id,
                "name": self.name,
                "role": self.role,
                "hash": self.hash,
                "created_at": self.created_at,
                "created_seq": self.created_seq,
                "revoked_seq": self.revoked_seq,
            }
        )


def _unpack(raw: Any) -> TokenRecord:
    return TokenRecord(**unpackb(bytes(raw)))


class TokensProjection:
    """Consumer of ``token.create`` / ``token.revoke``; all state lives in LMDB."""

    name = "tokens"
    dbs = ("proj_tokens",)  # what `projections rebuild` drops and replays

    def __init__(self) -> None:
        self._db: Any = None

    def bind(self, store: Store) -> None:
        self._db = store.db("proj_tokens")

    def apply(self, txn: lmdb.Transaction, event: Event) -> None:
        if event.type == TOKEN_CREATE:
            p = event.payload
            rec = TokenRecord(
                token_id=p["token_id"],
                name=p["name"],
                role=p["role"],
                hash=p["hash"],
                created_at=event.ts,
                created_seq=event.seq,
            )
            txn.put(_BY_ID + rec.token_id.encode(), rec._pack(), db=self._db)
            txn.put(_BY_NAME + rec.name.encode(), rec.token_id.encode(), db=self._db)
        elif event.type == TOKEN_REVOKE:
            tid = event.payload["token_id"]
            old = token_by_id(txn, self._db, tid)
            if old is None:
                return
            rec = TokenRecord(
                old.token_id,
                old.name,
                old.role,
                old.hash,
                old.created_at,
                old.created_seq,
                event.seq,
            )
            txn.put(_BY_ID + tid.encode(), rec._pack(), db=self._db)
            if active_token_id(txn, self._db, old.name) == tid:
                txn.delete(_BY_NAME + old.name.encode(), db=self._db)


def token_by_id(txn: lmdb.Transaction, db: Any, token_id: str) -> TokenRecord | None:
    raw = txn.get(_BY_ID + token_id.encode(), db=db)
    return None if raw is None else _unpack(raw)


def active_token_id(txn: lmdb.Transaction, db: Any, name: str) -> str | None:
    raw = txn.get(_BY_NAME + name.encode(), db=db)
    return None if raw is None else bytes(raw).decode()


def list_tokens(store: Store) -> list[TokenRecord]:
    """Every token ever issued, by token id (revoked ones included; a short list)."""
    db = store.db("proj_tokens")
    with store.read() as txn:
        return [_unpack(v) for _, v in scan_prefix(txn, db, _BY_ID)]
