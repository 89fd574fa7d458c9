"""Events users append themselves: any type outside the reserved prefixes, a JSON object."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ledger.canonical import canonicalize, loads_json_strict
from ledger.errors import BadInput
from ledger.events import RESERVED_PREFIXES, Event
from ledger.infile import read_bounded
from ledger.log import EventLog

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "TYPE_PATTERN",
    "append_user_event",
    "read_payload_file",
    "validate_user_event",
]

MAX_PAYLOAD_BYTES = 1 << 20
# Also published as JSON Schema by the HTTP service (ECMA and Python regexes agree here).
TYPE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_TYPE = re.compile(TYPE_PATTERN)


def validate_user_event(type_: str, payload: Any) -> dict[str, Any]:
    if not _TYPE.match(type_):
        raise BadInput(
            "E-BAD-INPUT",
            f"event type {type_!r} must be 1-128 of letters, digits and . _ : - "
            "starting with a letter or digit",
        )
    if type_.startswith(RESERVED_PREFIXES):
        raise BadInput(
            "E-BAD-INPUT",
            f"event type {type_!r} uses a reserved prefix ({', '.join(RESERVED_PREFIXES)})",
        )
    if not isinstance(payload, dict):
        raise BadInput("E-BAD-INPUT", "payload must be a JSON object")
    canonicalize(payload, allow_bytes=False)
    return payload


def read_payload_file(path: Path) -> dict[str, Any]:
    data = read_bounded(path, MAX_PAYLOAD_BYTES, "payload file")
    doc = loads_json_strict(data, what=f"payload file {path}")
    if not isinstance(doc, dict):
        raise BadInput("E-BAD-INPUT", f"payload file {path} is not a JSON object")
    return doc


def append_user_event(log: EventLog, type_: str, payload: Any, actor: str) -> Event:
    return log.append(type_, validate_user_event(type_, payload), actor)
