"""The manifest (``manifest.lot``): canonical JSON describing a capsule's contents.

Canonical means sorted keys, no insignificant whitespace, UTF-8, integers only
(``ledger.canonical.canonical_json``); verify re-encodes the parsed manifest and requires
the same bytes. The fields are listed in docs/TCAP.md, "Manifest".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from ledger.canonical import canonical_json, loads_json_strict
from ledger.errors import BadInput
from ledger.log import FORMAT as LEDGER_FORMAT
from projections.tcap.format import corrupt

__all__ = ["MANIFEST_VERSION", "ManifestFields", "parse_manifest"]

MANIFEST_VERSION = "1.0.0"
_WIRE_VERSIONS = {"jsonl": "1.0.0", "cbor": "1.1.0"}
_MAX_INT = 2**64 - 1
_MAX_HEX = "f" * 64


def _producer() -> str:
    try:
        return f"cap-ledger/{metadata.version('cap-ledger')}"
    except metadata.PackageNotFoundError:
        return "cap-ledger/unknown"


@dataclass(slots=True, frozen=True)
class ManifestFields:
    """Everything a manifest says; :meth:`encode` gives its canonical bytes."""

    ledger_id: str
    wire: str
    compression: str
    encryption: dict[str, str] | None
    select_from: int | None
    select_to: int | None
    select_types: tuple[str, ...]
    first_height: int | None = None
    last_height: int | None = None
    first_prev_b3: str | None = None
    last_b3: str | None = None
    blocks: int = 0
    body_bytes: int = 0
    span_types: dict[str, int] = field(default_factory=dict)
    merkle_root: str = ""
    part: dict[str, Any] | None = None
    refs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "capsule": "tcap",
            "versions": {
                "tcap": "1.0.0",
                "manifest": MANIFEST_VERSION,
                "wire": _WIRE_VERSIONS[self.wire],
                "ledger": LEDGER_FORMAT,
                "producer": _producer(),
            },
            "mode": "embedded",
            "ledger_id": self.ledger_id,
            "wire": {
                "format": self.wire,
                "compression": self.compression,
                "encryption": self.encryption,
            },
            "selection": {
                "from": self.select_from,
                "to": self.select_to,
                "types": list(self.select_types),
            },
            "range": {"first_height": self.first_height, "last_height": self.last_height},
            "chain": {"first_prev_b3": self.first_prev_b3, "last_b3": self.last_b3},
            "counts": {
                "blocks": self.blocks,
                "body_bytes": self.body_bytes,
                "span_types": dict(self.span_types),
            },
            "merkle": {
                "algorithm": "rfc6962-blake3",
                "leaf_data": "block b3",
                "leaves": self.blocks,
                "root": self.merkle_root,
            },
            "index": {
                "layout": "tcap-index/1",
                "key": "blake3-128(span_id)",
                "entries": self.blocks,
            },
            "sidecars": [{"kind": "kv", "name": "index_kv", "section": "index"}],
            "part": self.part,
            "refs": self.refs,
        }

    def encode(self) -> bytes:
        return canonical_json(self.to_json())

    def size_bound(self, span_types: dict[str, int]) -> int:
        """An upper bound of the encoded size whatever the numbers and hashes become,
        for the given set of span types (used to keep a capsule under its limit)."""
        widest = replace(
            self,
            first_height=_MAX_INT,
            last_height=_MAX_INT,
            first_prev_b3=_MAX_HEX,
            last_b3=_MAX_HEX,
            blocks=_MAX_INT,
            body_bytes=_MAX_INT,
            span_types=dict.fromkeys(span_types, _MAX_INT),
            merkle_root=_MAX_HEX,
            part=None
            if self.part is None
            else {**self.part, "prev_capsule_b3": _MAX_HEX, "number": _MAX_INT, "last": False},
        )
        return len(widest.encode())


def parse_manifest(raw: bytes) -> dict[str, Any]:
    """Parse a stored manifest and require it to be in canonical form."""
    try:
        doc = loads_json_strict(raw, what="manifest")
    except BadInput as exc:
        raise corrupt("manifest", exc.message) from None
    if not isinstance(doc, dict):
        raise corrupt("manifest", "not a JSON object")
    try:
        again = canonical_json(doc)
    except BadInput as exc:
        raise corrupt("manifest", exc.message) from None
    if again != raw:
        raise corrupt("manifest", "not in canonical form (sorted keys, no whitespace)")
    return doc
