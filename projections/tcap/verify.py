"""``tcap verify``: every check the seed lists, failing with the place that is wrong.

Order: header structure and ``header_b3``; the seal (against a pinned key, else the
embedded one with a warning); ``capsule_b3`` over everything after the header; the
manifest's canonical form and its agreement with the header; every block (chain links,
payload hashes when readable, body vs. block fields); the index rebuilt from the blocks
and compared byte for byte; the Merkle root. A split series is then checked as a chain.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger.errors import CheckFailed
from ledger.keys import HmacKeyProvider, verify_signature
from ledger.merkle import root_of_leaf_hashes
from projections.tcap.crypto import BlockKeyProvider
from projections.tcap.format import HEADER_SIZE, corrupt
from projections.tcap.index import IndexBuilder
from projections.tcap.reader import Capsule
from projections.tcap.walk import check_link, walk_blocks

__all__ = ["SeriesReport", "VerifyReport", "verify_capsule", "verify_series"]


@dataclass(slots=True, frozen=True)
class VerifyReport:
    """What a successful verify established about one capsule."""

    path: Path
    size: int
    capsule_b3: str
    header_b3: str
    signer: str
    pinned: bool
    wire: str
    compression: str
    encrypted: bool
    payloads_checked: bool
    blocks: int
    first_height: int | None
    last_height: int | None
    first_prev_b3: str | None
    last_b3: str | None
    merkle_root: str
    ledger_id: str
    part: dict[str, Any] | None
    contiguous: bool = True
    sigs_checked: int | None = None
    warnings: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "path": str(self.path),
            "size": self.size,
            "capsule_b3": self.capsule_b3,
            "header_b3": self.header_b3,
            "signer": self.signer,
            "pinned": self.pinned,
            "wire": self.wire,
            "compression": self.compression,
            "encrypted": self.encrypted,
            "payloads_checked": self.payloads_checked,
            "blocks": self.blocks,
            "first_height": self.first_height,
            "last_height": self.last_height,
            "merkle_root": self.merkle_root,
            "ledger_id": self.ledger_id,
            "part": self.part,
            "sigs_checked": self.sigs_checked,
            "warnings": list(self.warnings),
        }


@dataclass(slots=True, frozen=True)
class SeriesReport:
    parts: tuple[VerifyReport, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "series": True,
            "parts": [p.to_json() for p in self.parts],
            "blocks": sum(p.blocks for p in self.parts),
            "first_height": self.parts[0].first_height,
            "last_height": self.parts[-1].last_height,
            "warnings": sorted({w for p in self.parts for w in p.warnings}),
        }


def _check_seal(cap: Capsule, pubkey: bytes | None) -> list[str]:
    h = cap.header
    if pubkey is not None and pubkey != h.public_key:
        raise CheckFailed(
            "E-SIGNATURE-INVALID",
            f"{cap.path}: sealed by key {base64.b64encode(h.public_key).decode()}, not by the "
            f"pinned key {base64.b64encode(pubkey).decode()}",
        )
    try:
        verify_signature(h.public_key, h.seal_message(), h.seal)
    except CheckFailed:
        raise CheckFailed(
            "E-SIGNATURE-INVALID",
            f"{cap.path}: the seal (header bytes 184..248) does not verify over "
            "sig_context || capsule_b3 || header_b3",
        ) from None
    if pubkey is None:
        return [
            "seal checked against the key embedded in the capsule only; pin the signer "
            "with --pubkey"
        ]
    return []


def _check_manifest(cap: Capsule) -> dict[str, Any]:
    h = cap.header
    m = cap.manifest()
    try:
        wire, counts, merkle = m["wire"], m["counts"], m["merkle"]
        agree = (
            m["capsule"] == "tcap"
            and m["versions"]["tcap"] == "1.0.0"
            and wire["format"] == h.wire_name
            and wire["compression"] == h.compression_name
            and (wire["encryption"] is not None) == h.encryption
            and counts["blocks"] == h.block_count
            and merkle["leaves"] == h.block_count
            and m["index"]["entries"] == h.block_count
            and isinstance(m["ledger_id"], str)
        )
    except (KeyError, TypeError):
        raise corrupt("manifest", "required fields are missing or of the wrong type") from None
    if not agree:
        raise corrupt("manifest", "manifest and header disagree (format, caps or counts)")
    return m


def verify_capsule(
    path: Path | str,
    pubkey: bytes | None = None,
    keys: BlockKeyProvider | None = None,
    *,
    workers: int | None = None,
    macs: HmacKeyProvider | None = None,
) -> VerifyReport:
    """Check one capsule completely; raise ``E-CAPSULE-CORRUPT`` or ``E-SIGNATURE-INVALID``.
    ``workers`` forces 1 or 2 processes for the block walk (default: chosen by size);
    ``macs`` (the ledger's chain keys) also checks every block's ``sig`` whose predecessor
    is in the capsule."""
    with Capsule(path) as cap:
        h = cap.header
        warnings = _check_seal(cap, pubkey)
        hasher = blake3(max_threads=blake3.AUTO)
        body = memoryview(cap.mm)[HEADER_SIZE:]
        try:
            hasher.update(body)
        finally:
            body.release()
        if hasher.digest() != h.capsule_b3:
            raise corrupt("body", "capsule_b3 does not match the bytes after the header")
        m = _check_manifest(cap)
        codec = cap.codec(keys)
        if codec is None:
            warnings.append(
                "blocks are encrypted: payload hashes and chain hashes were not "
                "recomputed (pass --decrypt-key)"
            )
        walk = walk_blocks(
            cap.blocks_region(),
            h.wire,
            h.block_count,
            m["ledger_id"],
            not m["selection"]["types"],  # no type filter: every height is present
            codec,
            workers,
            macs if codec is not None else None,
        )
        if walk.count != h.block_count:
            raise corrupt("blocks", f"{walk.count} blocks, the header says {h.block_count}")
        try:
            index = IndexBuilder(walk.rows).build()
        except ValueError as exc:
            raise corrupt("index", str(exc)) from None
        if index != cap.index_bytes():
            cap.index()  # a structural error names itself first
            raise corrupt("index", "index does not match the blocks (offsets, types or heights)")
        root = root_of_leaf_hashes(walk.leaves).hex()
        if root != m["merkle"]["root"]:
            raise corrupt("manifest", "merkle.root does not match the blocks")
        if h.merkle_root.hex() != root:
            raise corrupt("header", "merkle_root does not match the blocks", offset=280)
        first_h, first_prev = walk.first if walk.first is not None else (None, None)
        last_h, last_b3 = walk.last if walk.last is not None else (None, None)
        found = (
            first_h,
            last_h,
            first_prev.hex() if first_prev is not None else None,
            last_b3.hex() if last_b3 is not None else None,
            walk.types,
        )
        expect = (
            m["range"]["first_height"],
            m["range"]["last_height"],
            m["chain"]["first_prev_b3"],
            m["chain"]["last_b3"],
            m["counts"]["span_types"],
        )
        if found != expect:
            raise corrupt(
                "manifest", "range, chain ends or span type counts differ from the blocks"
            )
        if codec is not None and walk.body_bytes != m["counts"]["body_bytes"]:
            raise corrupt("manifest", "counts.body_bytes differs from the payloads")
        return VerifyReport(
            path=cap.path,
            size=cap.size,
            capsule_b3=h.capsule_b3.hex(),
            header_b3=h.header_b3.hex(),
            signer=base64.b64encode(h.public_key).decode(),
            pinned=pubkey is not None,
            wire=h.wire_name,
            compression=h.compression_name,
            encrypted=h.encryption,
            payloads_checked=codec is not None,
            blocks=h.block_count,
            first_height=first_h,
            last_height=last_h,
            first_prev_b3=found[2],
            last_b3=found[3],
            merkle_root=root,
            ledger_id=m["ledger_id"],
            part=m["part"],
            contiguous=not m["selection"]["types"],
            sigs_checked=walk.sigs_checked if macs is not None and codec is not None else None,
            warnings=tuple(warnings),
        )


def verify_series(reports: Sequence[VerifyReport]) -> SeriesReport:
    """Check that verified parts form one complete series: numbered 1..k, each naming its
    predecessor's capsule_b3, one signer and ledger, chain continuous, the last marked."""
    parts = sorted(reports, key=lambda r: (r.part or {}).get("number", 0))
    for r in parts:
        if r.part is None:
            raise corrupt("series", f"{r.path} is not part of a split series")
    prev: VerifyReport | None = None
    for i, r in enumerate(parts, start=1):
        assert r.part is not None
        where = f"series part {i} ({r.path})"
        if r.part.get("number") != i:
            raise corrupt("series", f"part {i} is missing (found part {r.part.get('number')})")
        want = prev.capsule_b3 if prev is not None else None
        if r.part.get("prev_capsule_b3") != want:
            raise corrupt(where, "prev_capsule_b3 does not name the previous part")
        if r.part.get("last") is not (i == len(parts)):
            what = (
                "is marked last but more parts follow"
                if r.part.get("last")
                else ("is not the last part: the series is incomplete")
            )
            raise corrupt(where, what)
        if prev is not None:
            if (r.signer, r.ledger_id) != (prev.signer, prev.ledger_id):
                raise corrupt(where, "signer or ledger differ from the previous part")
            if prev.last_b3 is not None and r.first_prev_b3 is not None:
                check_link(
                    (prev.last_height or 0, bytes.fromhex(prev.last_b3)),
                    (r.first_height or 0, bytes.fromhex(r.first_prev_b3)),
                    r.contiguous,
                    f"{where}: first block",
                )
        prev = r
    return SeriesReport(tuple(parts))
