"""The event envelope, its canonical body and its stored record.

A stored record is ``b3 (32 bytes) || mac (32 bytes) || body`` where ``body`` is the
canonical msgpack of the envelope without ``b3``/``mac`` (docs/EVENTS.md).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgpack

from ledger.canonical import canonicalize, unpackb
from ledger.errors import BadInput

__all__ = [
    "RESERVED_PREFIXES",
    "Event",
    "body_json",
    "decode_body",
    "decode_record",
    "encode_body",
    "event_id",
    "pack_body",
    "rfc3339_now",
]

RESERVED_PREFIXES = ("ledger.", "key.", "blob.", "registry.", "selfverify.", "token.")
_HASH_LEN = 32
_ENVELOPE_KEYS = frozenset(("actor", "id", "kid", "payload", "seq", "ts", "type"))
_local = threading.local()


def rfc3339_now() -> str:
    """Current UTC time as RFC 3339 with microseconds and a ``Z`` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_id(ledger_id: str, seq: int) -> str:
    """Unique, deterministic event id (a capsule's ``span_id``)."""
    return f"ev-{ledger_id[:16]}-{seq}"


def encode_body(
    seq: int, id_: str, ts: str, type_: str, actor: str, payload: Any, kid: str
) -> bytes:
    """Canonical msgpack of the envelope (docs/EVENTS.md): the payload is canonicalized."""
    return pack_body(seq, id_, ts, type_, actor, canonicalize(payload, allow_bytes=False), kid)


def pack_body(
    seq: int, id_: str, ts: str, type_: str, actor: str, payload: dict[str, Any], kid: str
) -> bytes:
    """:func:`encode_body` for a payload that is already canonical (the writer's hot path).

    ``E-BAD-INPUT`` for a string msgpack cannot encode (a lone surrogate from JSON).
    """
    packer = getattr(_local, "packer", None)
    if packer is None:  # one reusable Packer per thread (a Packer is not thread-safe)
        packer = _local.packer = msgpack.Packer(use_bin_type=True)
    try:
        # The envelope's keys, written in their sorted order (msgpack keeps dict order).
        return packer.pack(
            {
                "actor": actor,
                "id": id_,
                "kid": kid,
                "payload": payload,
                "seq": seq,
                "ts": ts,
                "type": type_,
            }
        )
    except UnicodeEncodeError:
        raise BadInput(
            "E-BAD-INPUT", "strings must be valid Unicode (no lone surrogates)"
        ) from None


class Event(NamedTuple):
    """One committed ledger event with its two chain values.

    Immutable like a frozen dataclass, but a NamedTuple: the writer builds one per event,
    and a tuple is built about four times faster (0.35 vs 1.4 us, measured).
    """

    seq: int
    id: str
    ts: str
    type: str
    actor: str
    payload: dict[str, Any]
    kid: str
    b3: bytes
    mac: bytes

    def body(self) -> bytes:
        return encode_body(
            self.seq, self.id, self.ts, self.type, self.actor, self.payload, self.kid
        )

    def record(self) -> bytes:
        return self.b3 + self.mac + self.body()

    def to_json(self) -> dict[str, Any]:
        """The contract's JSON view (what ``ledger log`` prints)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "ts": self.ts,
            "type": self.type,
            "actor": self.actor,
            "payload": self.payload,
            "kid": self.kid,
            "b3": self.b3.hex(),
            "mac": self.mac.hex(),
        }


def decode_body(body: bytes | memoryview) -> dict[str, Any]:
    """The envelope map of a canonical body; ``ValueError`` unless it is one."""
    env = unpackb(body)
    if type(env) is not dict or env.keys() != _ENVELOPE_KEYS:
        raise ValueError("record body is not an event envelope")
    return env


def body_json(body: bytes, b3: bytes, mac: bytes) -> dict[str, Any]:
    """The contract's JSON view straight from a body and its chain values, without an
    :class:`Event` (for exporters streaming many events)."""
    env = decode_body(body)
    return {
        "seq": env["seq"],
        "id": env["id"],
        "ts": env["ts"],
        "type": env["type"],
        "actor": env["actor"],
        "payload": env["payload"],
        "kid": env["kid"],
        "b3": b3.hex(),
        "mac": mac.hex(),
    }


def decode_record(record: bytes) -> Event:
    """Parse a stored record; raises ``ValueError`` on anything malformed.

    The hot loop of every replay: the body is unpacked from a view (no copy), the envelope
    checked by comparing key views, and the tuple built positionally.
    """
    if len(record) <= 2 * _HASH_LEN:
        raise ValueError("record too short")
    body = decode_body(memoryview(record)[2 * _HASH_LEN :])
    return Event(
        body["seq"],
        body["id"],
        body["ts"],
        body["type"],
        body["actor"],
        body["payload"],
        body["kid"],
        bytes(record[:_HASH_LEN]),
        bytes(record[_HASH_LEN : 2 * _HASH_LEN]),
    )
