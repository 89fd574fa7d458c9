"""Audit export in the Vault style: one JSON line per event, each with its own HMAC.

Every line carries the event, its chain values and its predecessor's, and ``xhmac``: an
HMAC-SHA256 under an export key over the line's own bytes (without ``xhmac``). One line can
be checked on its own (its HMAC, and that its ``b3`` commits to its content); a file is
also checked for continuity (seq, ``prev_b3``/``prev_mac``). Byte layout: docs/AUDIT.md.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ledger.canonical import canonical_json, loads_json_strict
from ledger.chain import ZERO, next_b3
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from ledger.events import encode_body
from ledger.keys import load_hmac_key_file, parse_hex_key
from ledger.log import EventLog

__all__ = [
    "ENV_EXPORT_KEY",
    "EXPORT_FORMAT",
    "ExportKey",
    "ExportReport",
    "check_line",
    "export_lines",
    "read_lines",
    "verify_lines",
]

ENV_EXPORT_KEY = "CAP_AUDIT_EXPORT_KEY"
EXPORT_FORMAT = "cap-audit-jsonl/1"
MAX_LINE_BYTES = 4 << 20
_SUFFIX = re.compile(rb',"xhmac":"([0-9a-f]{64})"\}$')
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = frozenset(
    [
        "actor",
        "b3",
        "export_kid",
        "id",
        "kid",
        "mac",
        "payload",
        "prev_b3",
        "prev_mac",
        "seq",
        "ts",
        "type",
        "xhmac",
    ]
)


@dataclass(slots=True, frozen=True)
class ExportKey:
    """The export key and its public id (``xk-`` + 16 hex digits; reveals nothing)."""

    key: bytes
    kid: str

    @classmethod
    def of(cls, key: bytes) -> ExportKey:
        return cls(key, "xk-" + hmac.digest(key, b"cap-ledger/export-kid/v1", "sha256")[:8].hex())

    @classmethod
    def resolve(cls, path: str | Path | None, fallback: Path | None = None) -> ExportKey:
        """``--export-key-file`` wins, then ``$CAP_AUDIT_EXPORT_KEY`` (hex, >= 32 bytes),
        then ``fallback`` (the data directory's development key) when that file exists."""
        if path is not None:
            return cls.of(load_hmac_key_file(Path(path)))
        env = os.environ.get(ENV_EXPORT_KEY)
        if env:
            return cls.of(parse_hex_key(env, source=ENV_EXPORT_KEY))
        if fallback is not None and fallback.exists():
            return cls.of(load_hmac_key_file(fallback))
        raise EnvironmentProblem(
            "E-KEY", f"no export key: pass --export-key-file or set {ENV_EXPORT_KEY}"
        )

    def tag(self, signed: bytes) -> str:
        return hmac.digest(self.key, signed, "sha256").hex()

    def __repr__(self) -> str:
        return f"ExportKey(kid={self.kid})"


def export_lines(
    log: EventLog, key: ExportKey, start: int = 0, stop: int | None = None
) -> Iterator[bytes]:
    """The export of events ``start..stop`` (inclusive), one line (with ``\\n``) each,
    read in short transactions (memory stays bounded whatever the range)."""
    if start > 0:
        prev = log.get(start - 1)
        prev_b3, prev_mac = prev.b3, prev.mac
    else:
        prev_b3, prev_mac = ZERO, ZERO
    for ev in log.events(after=start - 1):
        if stop is not None and ev.seq > stop:
            return
        doc: dict[str, Any] = {
            **ev.to_json(),
            "export_kid": key.kid,
            "prev_b3": prev_b3.hex(),
            "prev_mac": prev_mac.hex(),
        }
        signed = canonical_json(doc)
        yield signed[:-1] + b',"xhmac":"' + key.tag(signed).encode() + b'"}\n'
        prev_b3, prev_mac = ev.b3, ev.mac


@dataclass(slots=True, frozen=True)
class ExportReport:
    lines: int
    first: int | None
    last: int | None
    export_kid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "format": EXPORT_FORMAT,
            "lines": self.lines,
            "from": self.first,
            "to": self.last,
            "export_kid": self.export_kid,
        }


def _bad(n: int, why: str, code: str = "E-SIGNATURE-INVALID") -> CheckFailed:
    return CheckFailed(code, f"line {n}: {why}", line=n)


def check_line(line: bytes, key: ExportKey, n: int = 1) -> dict[str, Any]:
    """Check one export line on its own and return its fields: the HMAC over its bytes,
    its canonical form, and that ``b3`` commits to its content given ``prev_b3``."""
    if len(line) > MAX_LINE_BYTES:
        raise _bad(n, "is longer than any export line")
    raw = line[:-1] if line.endswith(b"\n") else line
    m = _SUFFIX.search(raw)
    if m is None:
        raise _bad(n, "does not end with an xhmac member (not an export line, or edited)")
    signed = raw[: m.start()] + b"}"
    if not hmac.compare_digest(key.tag(signed), m.group(1).decode()):
        doc = _loads(raw, n)
        kid = doc.get("export_kid") if isinstance(doc, dict) else None
        if isinstance(kid, str) and kid != key.kid:
            raise EnvironmentProblem(
                "E-KEY", f"line {n}: exported under key {kid}, this export key is {key.kid}"
            )
        raise _bad(n, "HMAC does not match (the line was edited)")
    doc = _loads(raw, n)
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise _bad(n, "does not have the export line fields")
    if canonical_json(doc) != raw:
        raise _bad(n, "is not in canonical form (the line was edited)")
    for name in ("b3", "mac", "prev_b3", "prev_mac"):
        if not isinstance(doc[name], str) or not _HEX32.match(doc[name]):
            raise _bad(n, f"{name} is not 64 hex digits")
    try:
        body = encode_body(
            doc["seq"], doc["id"], doc["ts"], doc["type"], doc["actor"], doc["payload"], doc["kid"]
        )
    except (BadInput, TypeError, ValueError):
        raise _bad(n, "event fields cannot be encoded") from None
    if next_b3(bytes.fromhex(doc["prev_b3"]), body).hex() != doc["b3"]:
        raise _bad(n, f"seq {doc['seq']}: b3 does not match the event", "E-CHAIN-BROKEN")
    return doc


def _loads(raw: bytes, n: int) -> Any:
    try:
        return loads_json_strict(raw, what=f"line {n}")
    except BadInput:
        raise _bad(n, "is not valid JSON") from None


def read_lines(f: IO[bytes]) -> Iterator[bytes]:
    """Lines of ``f``, none read past :data:`MAX_LINE_BYTES` (memory stays bounded)."""
    while line := f.readline(MAX_LINE_BYTES + 1):
        yield line


def verify_lines(
    lines: Iterable[bytes], key: ExportKey, progress: Callable[[int], None] | None = None
) -> ExportReport:
    """Check every line (:func:`check_line`) and that consecutive lines are consecutive
    events (seq + 1, ``prev_b3``/``prev_mac`` = the previous line's ``b3``/``mac``)."""
    n = 0
    first: int | None = None
    prev: dict[str, Any] | None = None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise _bad(n, "is empty")
        doc = check_line(line, key, n)
        if prev is None:
            first = doc["seq"]
        elif (doc["seq"], doc["prev_b3"], doc["prev_mac"]) != (
            prev["seq"] + 1,
            prev["b3"],
            prev["mac"],
        ):
            raise _bad(
                n,
                f"seq {doc['seq']} does not follow seq {prev['seq']} "
                "(a line is missing, repeated or out of order)",
                "E-CHAIN-BROKEN",
            )
        prev = doc
        if progress is not None and not n & 0xFFF:
            progress(n)
    if prev is None:
        raise BadInput("E-BAD-INPUT", "the export is empty")
    return ExportReport(n, first, prev["seq"], key.kid)
