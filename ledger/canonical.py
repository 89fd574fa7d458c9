"""Canonical encodings: msgpack for event bodies, JSON for manifests and signatures.

Canonical means one byte string per value: map keys sorted by their UTF-8 bytes, integers
in the shortest msgpack form, UTF-8 strings, no floats (they have no single encoding).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import msgpack

from ledger.errors import BadInput

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "canonical_json",
    "canonicalize",
    "integral_number",
    "loads_json_strict",
    "packb",
    "unpackb",
]

_JSON_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def canonicalize(value: Any, *, allow_bytes: bool = True) -> Any:
    """Return ``value`` with every map's keys sorted; refuse anything without one encoding.

    Keys sort by code point, which is the order of their UTF-8 bytes. Maps and lists are
    copied, so a caller changing its own object later cannot change what was encoded.
    """
    t = type(value)
    if t is dict:
        return _canonical_map(value, allow_bytes)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise BadInput("E-BAD-INPUT", "integer out of the 64-bit range")
        return value
    if t is list or t is tuple:
        return [canonicalize(v, allow_bytes=allow_bytes) for v in value]
    if allow_bytes and isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, float):
        raise BadInput("E-BAD-INPUT", "floats are not allowed (no canonical encoding)")
    raise BadInput("E-BAD-INPUT", f"unsupported value of type {t.__name__}")


def _canonical_map(value: dict[Any, Any], allow_bytes: bool) -> dict[str, Any]:
    """A map's canonical copy; scalar values are checked inline (the common, hot case)."""
    try:
        keys = sorted(value)
    except TypeError:  # keys of mixed types
        raise BadInput("E-BAD-INPUT", "map keys must be strings") from None
    out = {}
    for k in keys:
        if type(k) is not str:
            raise BadInput("E-BAD-INPUT", "map keys must be strings")
        v = value[k]
        tv = type(v)
        if tv is str or tv is bool or v is None or (tv is int and INT_MIN <= v <= INT_MAX):
            out[k] = v
        else:
            out[k] = canonicalize(v, allow_bytes=allow_bytes)
    return out


def packb(value: Any) -> bytes:
    """Canonical msgpack bytes of ``value``."""
    return msgpack.packb(canonicalize(value), use_bin_type=True)


def unpackb(data: bytes | memoryview) -> Any:
    """Decode msgpack written by :func:`packb` (strings as str, bin as bytes)."""
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8, integers only."""
    clean = canonicalize(value, allow_bytes=False)
    return json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _refuse_float(text: str) -> Any:
    raise BadInput("E-BAD-INPUT", f"floats are not allowed in payloads: {text[:40]}")


def integral_number(text: str) -> int | None:
    """The integer a JSON number like ``3.0`` or ``1e3`` denotes, or None when it has a
    fraction (or an exponent too large to be a 64-bit integer)."""
    if not _JSON_NUMBER.match(text):
        return None
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    if not d.is_finite() or d.adjusted() > 20 or d != d.to_integral_value():
        return None
    return int(d)


def _integral_or_refuse(text: str) -> int:
    value = integral_number(text)
    if value is None:
        raise BadInput("E-BAD-INPUT", f"floats are not allowed in payloads: {text[:40]}")
    return value


def loads_json_strict(
    data: bytes | str, *, what: str = "input", integral_floats: bool = False
) -> Any:
    """Parse JSON refusing floats, NaN and duplicate keys, with an ``E-BAD-INPUT`` on failure.

    With ``integral_floats``, numbers like ``3.0`` or ``1e3`` are read as the integers they
    denote (JSON and JSON Schema do not tell them apart); a fraction is still refused.
    """

    def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise BadInput("E-BAD-INPUT", f"{what}: duplicate key {k!r}")
            out[k] = v
        return out

    try:
        return json.loads(
            data,
            parse_float=_integral_or_refuse if integral_floats else _refuse_float,
            parse_constant=_refuse_float,
            object_pairs_hook=no_dupes,
        )
    except BadInput:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput("E-BAD-INPUT", f"{what} is not valid JSON: {exc}") from None
