"""Webhook signatures in Stripe's scheme, for senders and for receivers.

``X-Cap-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." || body)>``. A
receiver checks the HMAC in constant time and refuses timestamps outside a replay window,
so a captured delivery cannot be replayed later. Several ``v1=`` values may appear (one
per secret while a secret is being rotated); any match is enough. docs/WEBHOOKS.md.
"""

from __future__ import annotations

import hmac
import time

from ledger.errors import CheckFailed

__all__ = [
    "DEFAULT_TOLERANCE",
    "SIGNATURE_HEADER",
    "compute_signature",
    "secret_id",
    "sign_header",
    "verify_header",
]

SIGNATURE_HEADER = "X-Cap-Signature"
DEFAULT_TOLERANCE = 300  # seconds either side of the receiver's clock
_MAX_HEADER = 4096


def compute_signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." || body`` under ``secret``."""
    return hmac.digest(secret, str(timestamp).encode() + b"." + body, "sha256").hex()


def sign_header(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Cap-Signature`` value for ``body`` sent at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={compute_signature(secret, t, body)}"


def secret_id(secret: bytes) -> str:
    """A public fingerprint of a webhook secret (``ws-`` + 16 hex digits; reveals nothing)."""
    return "ws-" + hmac.digest(secret, b"cap-ledger/webhook-secret-id/v1", "sha256")[:8].hex()


def _bad(why: str) -> CheckFailed:
    return CheckFailed("E-SIGNATURE-INVALID", f"webhook signature: {why}")


def verify_header(
    secret: bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a received ``X-Cap-Signature`` against the raw request body; return its
    timestamp. ``E-SIGNATURE-INVALID`` when it is missing, malformed, outside the replay
    window of ``tolerance`` seconds, or no ``v1`` matches."""
    if not header:
        raise _bad(f"no {SIGNATURE_HEADER} header")
    if len(header) > _MAX_HEADER:
        raise _bad("header too long")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise _bad("malformed header (expected t=...,v1=...)")
        if name == "t":
            if not value.isdigit() or timestamp is not None:
                raise _bad("malformed timestamp")
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise _bad("header needs t= and at least one v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise _bad(f"timestamp {timestamp} is outside the {tolerance} s replay window")
    expected = compute_signature(secret, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in candidates):
        raise _bad("no v1 signature matches (wrong secret or altered body)")
    return timestamp
