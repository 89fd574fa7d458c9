"""JSON Schemas shared by several route groups (the contract's JSON views)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from api.http.declare import Named, Param
from ledger.canonical import INT_MAX, INT_MIN
from ledger.errors import BadInput

__all__ = [
    "ED25519_PUBKEY",
    "ERROR",
    "EVENT",
    "HEAD",
    "HEX32",
    "JSON_OBJECT",
    "JSON_VALUE",
    "LIMIT",
    "MAX_JSON_DEPTH",
    "SEQ",
    "SEQ_MAX",
    "json_object",
    "nullable",
    "pubkey_param",
]

SEQ_MAX = 2**63 - 1  # seqs are 8-byte keys; anything past this is no seq at all
HEX32: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SEQ: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}


ED25519_PUBKEY: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$"}


def pubkey_param(text: str) -> bytes:
    """An Ed25519 public key given as base64 (``E-BAD-INPUT`` when it is not)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("E-BAD-INPUT", "pubkey must be base64") from None


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null (OpenAPI 3.1 spells it as a type list)."""
    out = dict(schema)
    t = out.get("type")
    out["type"] = [*(t if isinstance(t, list) else [t]), "null"]
    return out


def json_object(
    props: dict[str, Any], required: list[str] | None = None, *, extra: bool = True
) -> dict[str, Any]:
    """An object schema; ``required`` defaults to every listed property."""
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


ERROR = Named(
    "Error",
    json_object(
        {
            "error": json_object(
                {
                    "code": {"type": "string", "pattern": "^E-[A-Z-]+$"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
                ["code", "message"],
            )
        }
    ),
)

EVENT = Named(
    "Event",
    json_object(
        {
            "seq": SEQ,
            "id": {"type": "string"},
            "ts": {"type": "string"},
            "type": {"type": "string"},
            "actor": {"type": "string"},
            "payload": {"type": "object"},
            "kid": {"type": "string"},
            "b3": HEX32,
            "mac": HEX32,
        }
    ),
)

HEAD = Named(
    "Head",
    json_object({"ledger_id": {"type": "string"}, "seq": SEQ, "b3": HEX32, "mac": HEX32}),
)

# Any JSON value the ledger can hold: no floats (no canonical encoding), 64-bit integers.
# Nesting is bounded (MAX_JSON_DEPTH arrays/objects inside a payload) so the schema is a
# finite chain rather than a recursive one, which property-based clients handle poorly.
MAX_JSON_DEPTH = 6
_SCALARS: list[dict[str, Any]] = [
    {"type": "string"},
    {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX},
    {"type": "boolean"},
    {"type": "null"},
]


def _json_value(depth: int) -> Named:
    if depth == 0:
        return Named("JsonScalar", {"anyOf": _SCALARS})
    inner = _json_value(depth - 1)
    return Named(
        f"JsonValue{depth}",
        {
            "anyOf": [
                *_SCALARS,
                {"type": "array", "items": inner},
                {"type": "object", "additionalProperties": inner},
            ]
        },
    )


JSON_VALUE = _json_value(MAX_JSON_DEPTH - 1)
JSON_OBJECT = Named(
    "JsonObject",
    {
        "type": "object",
        "additionalProperties": JSON_VALUE,
        "description": f"a JSON object, no floats, arrays/objects nested at most "
        f"{MAX_JSON_DEPTH} deep",
    },
)

LIMIT = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    "page size (1-1000, default 100)",
)
