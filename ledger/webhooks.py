"""Webhook subscriptions and their durable outbox, fed in the same transaction as the events.

Subscriptions are events (``ledger.webhook.add`` / ``ledger.webhook.remove``) that name the
secret by reference (the path of its file) and fingerprint, never by value. The
:class:`WebhookOutbox` consumer keeps them and, for every later event a subscription
matches, queues one delivery row, all inside the appending transaction: an event cannot be
committed without its deliveries. The worker (``ledger/webhook_delivery.py``) deletes a row
only after the receiver answered 2xx. Layout of the ``outbox`` database (docs/WEBHOOKS.md):

- ``s/`` + subscription id                 -> subscription (canonical msgpack)
- ``q/`` + subscription id + 0x00 + seq(8) -> delivery state (empty until a failed attempt)
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import yarl

from ledger.canonical import packb, unpackb
from ledger.datadir import DataDir
from ledger.errors import BadInput, Conflict, EnvironmentProblem, NotFound
from ledger.events import Event
from ledger.log import EventLog, seq_key, type_matcher
from ledger.store import Store, scan_prefix
from ledger.webhook_sig import secret_id

__all__ = [
    "DB",
    "WEBHOOK_ADD",
    "WEBHOOK_REMOVE",
    "DeliveryState",
    "Subscription",
    "WebhookOutbox",
    "add_subscription",
    "iter_pending",
    "list_subscriptions",
    "managed_secret",
    "new_secret_file",
    "pending_count",
    "read_secret",
    "remove_subscription",
    "secrets_dir",
]

DB = "outbox"
WEBHOOK_ADD = "ledger.webhook.add"
WEBHOOK_REMOVE = "ledger.webhook.remove"
MIN_SECRET_BYTES = 16
_MAX_SECRET_BYTES = 4096
_SUB, _QUEUE = b"s/", b"q/"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOST = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_TYPE = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\*?)$")


@dataclass(slots=True, frozen=True)
class Subscription:
    """Where matching events go and how they are signed (by reference to the secret)."""

    id: str
    url: str
    types: tuple[str, ...]
    secret_ref: str
    secret_id: str
    created_seq: int
    created_at: str

    def matches(self, event_type: str) -> bool:
        return "*" in self.types or type_matcher(self.types)(event_type)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "types": list(self.types),
            "secret_ref": self.secret_ref,
            "secret_id": self.secret_id,
            "created_seq": self.created_seq,
            "created_at": self.created_at,
        }


@dataclass(slots=True, frozen=True)
class DeliveryState:
    """A queued delivery: failed ``attempts`` so far and when to try next (unix ms)."""

    subscription: str
    seq: int
    attempts: int = 0
    next_at_ms: int = 0
    last_error: str | None = None

    def pack(self) -> bytes:
        return packb(
            {"attempts": self.attempts, "next_at_ms": self.next_at_ms, "error": self.last_error}
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription": self.subscription,
            "seq": self.seq,
            "attempts": self.attempts,
            "next_at_ms": self.next_at_ms,
            "last_error": self.last_error,
        }


def queue_key(sub_id: str, seq: int) -> bytes:
    return _QUEUE + sub_id.encode() + b"\x00" + seq_key(seq)


def _queue_prefix(sub_id: str) -> bytes:
    return _QUEUE + sub_id.encode() + b"\x00"


def _state(sub_id: str, key: bytes, raw: bytes) -> DeliveryState:
    seq = int.from_bytes(key[-8:], "big")
    if not raw:
        return DeliveryState(sub_id, seq)
    doc = unpackb(raw)
    return DeliveryState(sub_id, seq, doc["attempts"], doc["next_at_ms"], doc["error"])


def _subscription(raw: bytes) -> Subscription:
    doc = unpackb(raw)
    return Subscription(**{**doc, "types": tuple(doc["types"])})


class WebhookOutbox:
    """Consumer: subscriptions and the delivery queue. Deliberately not rebuildable (it
    declares no ``dbs``): replaying the log into it would send every event again."""

    name = "webhooks"

    def __init__(self) -> None:
        self.db: Any = None

    def bind(self, store: Store) -> None:
        self.db = store.db(DB)

    def apply(self, txn: lmdb.Transaction, event: Event) -> None:
        if event.type == WEBHOOK_ADD:
            p = event.payload
            sub = Subscription(
                p["id"],
                p["url"],
                tuple(p["types"]),
                p["secret_ref"],
                p["secret_id"],
                event.seq,
                event.ts,
            )
            txn.put(_SUB + sub.id.encode(), packb(sub.to_json()), db=self.db)
            return
        if event.type == WEBHOOK_REMOVE:
            sid = event.payload["id"]
            txn.delete(_SUB + sid.encode(), db=self.db)
            _delete_prefix(txn, self.db, _queue_prefix(sid))
            return
        for _, v in scan_prefix(txn, self.db, _SUB):
            sub = _subscription(v)
            if sub.matches(event.type):
                txn.put(queue_key(sub.id, event.seq), b"", db=self.db)


def _delete_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> None:
    cur = txn.cursor(db=db)
    if not cur.set_range(prefix):
        return
    while bytes(cur.key()).startswith(prefix):
        if not cur.delete():
            break


# --- reading ---------------------------------------------------------------------------


def get_subscription(txn: lmdb.Transaction, db: Any, sub_id: str) -> Subscription | None:
    raw = txn.get(_SUB + sub_id.encode(), db=db)
    return None if raw is None else _subscription(bytes(raw))


def list_subscriptions(store: Store) -> list[Subscription]:
    """Every active subscription, by id (a short list)."""
    db = store.db(DB)
    with store.read() as txn:
        return [_subscription(v) for _, v in scan_prefix(txn, db, _SUB)]


def iter_pending(store: Store, sub_id: str, limit: int | None = None) -> Iterator[DeliveryState]:
    """Queued deliveries of one subscription in seq order (the order they must go out)."""
    db = store.db(DB)
    prefix = _queue_prefix(sub_id)
    rows: list[DeliveryState] = []
    with store.read() as txn:
        for k, v in scan_prefix(txn, db, prefix):
            if limit is not None and len(rows) >= limit:
                break
            rows.append(_state(sub_id, k, v))
    yield from rows


def pending_count(store: Store, sub_id: str) -> int:
    db = store.db(DB)
    prefix = _queue_prefix(sub_id)
    with store.read() as txn:
        return sum(1 for _ in scan_prefix(txn, db, prefix))


def settle(store: Store, state: DeliveryState, *, delivered: bool) -> None:
    """Record a delivery's outcome: delete its row, or store the next attempt. A row that
    is gone (its subscription was removed meanwhile) stays gone."""
    db = store.db(DB)
    key = queue_key(state.subscription, state.seq)

    def write(txn: lmdb.Transaction) -> None:
        if txn.get(key, db=db) is None:
            return
        if delivered:
            txn.delete(key, db=db)
        else:
            txn.put(key, state.pack(), db=db)

    store.run_write(write)


# --- commands ----------------------------------------------------------------------------


def read_secret(ref: str) -> bytes:
    """The secret a subscription refers to (``file:<absolute path>``): the file's content
    without surrounding whitespace, at least 16 bytes. ``E-KEY`` when unreadable."""
    if not ref.startswith("file:"):
        raise EnvironmentProblem("E-KEY", f"unknown webhook secret reference {ref!r}")
    path = Path(ref[5:])
    try:
        with path.open("rb") as f:
            secret = f.read(_MAX_SECRET_BYTES + 1).strip()
    except OSError as exc:
        raise EnvironmentProblem(
            "E-KEY", f"webhook secret file unreadable: {path} ({exc.strerror})"
        ) from None
    if not MIN_SECRET_BYTES <= len(secret) <= _MAX_SECRET_BYTES:
        raise EnvironmentProblem(
            "E-KEY", f"webhook secret in {path} must be {MIN_SECRET_BYTES}..4096 bytes"
        )
    return secret


def secrets_dir(data: DataDir) -> Path:
    """Where the service keeps the webhook secrets it generates (mode 0700)."""
    return data.keys / "webhooks"


def new_secret_file(data: DataDir, name: str | None) -> tuple[str, Path, str]:
    """A fresh secret (``whsec_`` + 32 random bytes, base64url) in a new 0600 file of
    :func:`secrets_dir`; returns the secret, its file and the subscription id it is for."""
    sub_id = name or f"wh-{secrets.token_hex(4)}"
    if not _ID.match(sub_id):
        raise BadInput("E-BAD-INPUT", f"webhook name {sub_id!r}: 1-64 of letters, digits . _ -")
    folder = secrets_dir(data)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = "whsec_" + secrets.token_urlsafe(32)
    path = folder / f"{sub_id}.{secrets.token_hex(4)}.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret, path, sub_id


def managed_secret(data: DataDir, ref: str) -> Path | None:
    """The file behind ``ref`` when the service generated it (else ``None``: not ours)."""
    if not ref.startswith("file:"):
        return None
    path = Path(ref[5:])
    return path if path.parent == secrets_dir(data).resolve() else None


def _check_url(url: str) -> str:
    """``url`` when the delivery worker can post to it: http(s), a real host name or IP
    address, no credentials. Parsed by yarl, the parser aiohttp delivers with."""
    bad = BadInput("E-BAD-INPUT", f"webhook URL must be http(s)://host/...: {url!r}")
    try:
        parts = yarl.URL(url)
        host = parts.raw_host  # IDNA-encoded: ASCII for a valid international name
    except (ValueError, UnicodeError):
        raise bad from None
    if parts.scheme not in ("http", "https") or not host or not _valid_host(host):
        raise bad
    if parts.user or parts.password:
        raise BadInput("E-BAD-INPUT", "webhook URL must not carry credentials")
    return url


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _HOST.fullmatch(host) is not None


def add_subscription(
    log: EventLog,
    *,
    url: str,
    secret_file: Path,
    types: Sequence[str],
    name: str | None = None,
    actor: str = "system",
) -> Event:
    """Append ``ledger.webhook.add``; the secret stays in its file (only its path and
    fingerprint are recorded). ``E-CONFLICT`` when the name is taken."""
    sub_id = name or f"wh-{secrets.token_hex(4)}"
    if not _ID.match(sub_id):
        raise BadInput("E-BAD-INPUT", f"webhook name {sub_id!r}: 1-64 of letters, digits . _ -")
    clean = sorted({t.strip() for t in types if t.strip()})
    if not clean or not all(_TYPE.match(t) for t in clean):
        raise BadInput(
            "E-BAD-INPUT", "--types: event types, a trailing * for a prefix, or * for all"
        )
    ref = f"file:{secret_file.resolve()}"
    payload = {
        "id": sub_id,
        "url": _check_url(url),
        "types": clean,
        "secret_ref": ref,
        "secret_id": secret_id(read_secret(ref)),
    }
    db = log.store.db(DB)

    def unique(txn: lmdb.Transaction, p: dict[str, Any]) -> dict[str, Any]:
        if get_subscription(txn, db, sub_id) is not None:
            raise Conflict("E-CONFLICT", f"a webhook named {sub_id!r} exists")
        return p

    return log.append(WEBHOOK_ADD, payload, actor, precheck=unique)


def remove_subscription(log: EventLog, name: str, actor: str = "system") -> Event:
    """Append ``ledger.webhook.remove``; its queued deliveries are dropped with it."""
    db = log.store.db(DB)

    def exists(txn: lmdb.Transaction, p: dict[str, Any]) -> dict[str, Any]:
        if get_subscription(txn, db, name) is None:
            raise NotFound("E-NOT-FOUND", f"no webhook named {name!r}")
        return p

    return log.append(WEBHOOK_REMOVE, {"id": name}, actor, precheck=exists)
