"""API tokens: issue and revoke them as ``token.*`` events, and check a presented token.

A token is ``cap_<token_id>_<secret>``: the id (public, 16 hex digits) finds the record, the
whole token's SHA-256 is what the ledger keeps and what a presented token is compared
against, in constant time. The secret is shown once, when it is created, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import lmdb

from ledger.errors import BadInput, Conflict, NotFound, Unauthorized
from ledger.events import Event
from ledger.log import Append, EventLog
from ledger.store import Store
from projections.tokens import (
    TOKEN_CREATE,
    TOKEN_REVOKE,
    TokenRecord,
    active_token_id,
    token_by_id,
)

__all__ = [
    "ROLES",
    "IssuedToken",
    "Principal",
    "authenticate",
    "create_token",
    "create_token_append",
    "hash_token",
    "revoke_token",
    "revoke_token_append",
    "role_allows",
]

ROLES: tuple[str, ...] = ("reader", "auditor", "writer", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN = re.compile(r"^cap_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")
# Compared against when the token id is unknown, so both paths do the same work.
_NO_HASH = "0" * 64


@dataclass(slots=True, frozen=True)
class Principal:
    """Who a request acts as: a token's name and role."""

    name: str
    role: str
    token_id: str

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


@dataclass(slots=True, frozen=True)
class IssuedToken:
    """A freshly created token: the secret exists only in this object, shown once."""

    secret: str
    event: Event

    def to_json(self) -> dict[str, Any]:
        p = self.event.payload
        return {
            "name": p["name"],
            "role": p["role"],
            "token_id": p["token_id"],
            "token": self.secret,
            "seq": self.event.seq,
        }


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def role_allows(have: str, need: str) -> bool:
    """reader < auditor < writer < admin: a role may do what every lower role may."""
    return _RANK.get(have, -1) >= _RANK[need]


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise BadInput(
            "E-BAD-INPUT",
            "token name must be 1-64 of letters, digits and . _ - starting with a letter or digit",
        )


def create_token_append(store: Store, name: str, role: str, actor: str) -> tuple[Append, str]:
    """The ``token.create`` append for a new token and the token itself (show it once)."""
    _check_name(name)
    if role not in _RANK:
        raise BadInput("E-BAD-INPUT", f"role must be one of {', '.join(ROLES)}, not {role!r}")
    token_id = secrets.token_hex(8)
    secret = f"cap_{token_id}_{secrets.token_urlsafe(32)}"
    payload = {"name": name, "role": role, "token_id": token_id, "hash": hash_token(secret)}
    db = store.db("proj_tokens")

    def precheck(txn: lmdb.Transaction, p: dict[str, Any]) -> dict[str, Any]:
        if active_token_id(txn, db, name) is not None:
            raise Conflict("E-CONFLICT", f"an active token named {name!r} exists; revoke it first")
        return p

    return Append(TOKEN_CREATE, payload, actor, precheck=precheck), secret


def revoke_token_append(
    store: Store, name: str, actor: str, *, caller_token_id: str | None = None
) -> Append:
    """The ``token.revoke`` append for the active token called ``name``. A caller
    authenticated by a token (``caller_token_id``) may not revoke that very token: it would
    lock itself out halfway through a session (``E-CONFLICT``)."""
    _check_name(name)
    db = store.db("proj_tokens")

    def precheck(txn: lmdb.Transaction, p: dict[str, Any]) -> dict[str, Any]:
        tid = active_token_id(txn, db, name)
        if tid is None:
            raise NotFound("E-NOT-FOUND", f"no active token named {name!r}")
        if tid == caller_token_id:
            raise Conflict(
                "E-CONFLICT", "a token cannot revoke itself; use another admin token or the CLI"
            )
        return {"name": name, "token_id": tid}

    return Append(TOKEN_REVOKE, {"name": name}, actor, precheck=precheck)


def create_token(log: EventLog, name: str, role: str, actor: str) -> IssuedToken:
    append, secret = create_token_append(log.store, name, role, actor)
    return IssuedToken(secret, log.submit([append]).result()[0])


def revoke_token(log: EventLog, name: str, actor: str) -> Event:
    return log.submit([revoke_token_append(log.store, name, actor)]).result()[0]


def authenticate(store: Store, token: str | None) -> Principal:
    """The principal a bearer token stands for; ``E-UNAUTHORIZED`` for anything else."""
    if not token:
        raise Unauthorized("E-UNAUTHORIZED", "missing bearer token")
    m = _TOKEN.match(token)
    rec: TokenRecord | None = None
    if m is not None:
        with store.read() as txn:
            rec = token_by_id(txn, store.db("proj_tokens"), m.group(1))
    stored = rec.hash if rec is not None else _NO_HASH
    same = hmac.compare_digest(hash_token(token), stored)
    if rec is None or not same or not rec.active:
        raise Unauthorized("E-UNAUTHORIZED", "invalid or revoked token")
    return Principal(rec.name, rec.role, rec.token_id)
