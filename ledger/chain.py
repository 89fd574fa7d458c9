"""The two chains: a public BLAKE3 hash chain and a keyed HMAC-SHA256 chain.

``b3[n] = BLAKE3(b3[n-1] || body[n])`` and ``mac[n] = HMAC-SHA256(key[kid], mac[n-1] || b3[n])``,
both starting from 32 zero bytes.
"""

from __future__ import annotations

import hmac

from blake3 import blake3

__all__ = ["ZERO", "MacKey", "kid_for_key", "link", "next_b3", "next_mac"]

ZERO = bytes(32)


def next_b3(prev_b3: bytes, body: bytes) -> bytes:
    return blake3(prev_b3 + body).digest()


class MacKey:
    """An HMAC-SHA256 key with its keyed state computed once and copied per message
    (the stdlib's ``HMAC.copy``), which halves the cost of a chain step."""

    __slots__ = ("_copy",)

    def __init__(self, key: bytes) -> None:
        base = hmac.new(key, digestmod="sha256")
        # CPython keeps the OpenSSL HMAC state in ``_hmac``; copying it directly skips the
        # pure-Python wrapper (a third of a chain step). Same object protocol either way.
        self._copy = getattr(base, "_hmac", base).copy

    def mac(self, prev_mac: bytes, b3: bytes) -> bytes:
        h = self._copy()
        h.update(prev_mac + b3)
        return h.digest()

    def __repr__(self) -> str:  # never show the key
        return "MacKey(...)"


def next_mac(key: bytes | MacKey, prev_mac: bytes, b3: bytes) -> bytes:
    if isinstance(key, MacKey):
        return key.mac(prev_mac, b3)
    return hmac.digest(key, prev_mac + b3, "sha256")


def link(prev_b3: bytes, prev_mac: bytes, body: bytes, key: bytes | MacKey) -> tuple[bytes, bytes]:
    """Chain values of the event whose canonical body is ``body``."""
    b3 = blake3(prev_b3 + body).digest()
    return b3, next_mac(key, prev_mac, b3)


def kid_for_key(key: bytes) -> str:
    """Key id: a public fingerprint of an HMAC key (reveals nothing about the key)."""
    return "hk-" + hmac.digest(key, b"cap-ledger/kid/v1", "sha256")[:8].hex()
