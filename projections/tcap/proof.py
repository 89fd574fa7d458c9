"""Inclusion proofs: one event of a capsule, provable against the capsule's sealed header alone.

A proof carries the sealed 8 KiB header, the event's block fields and canonical body, its
leaf position and the RFC 6962 audit path to ``merkle_root`` (header bytes 280..312, which
the seal covers). A broker can hand over one event with its proof instead of a capsule.
Format: docs/PROOFS.md.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger.canonical import loads_json_strict
from ledger.chain import next_b3
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from ledger.events import decode_record
from ledger.infile import read_bounded
from ledger.keys import verify_signature
from ledger.merkle import audit_path, merkle_root, root_from_path
from projections.tcap.blocks import astuple_block, iter_blocks
from projections.tcap.crypto import BlockKeyProvider
from projections.tcap.format import HEADER_SIZE, Header, corrupt
from projections.tcap.reader import Capsule

__all__ = ["PROOF_FORMAT", "InclusionProof", "ProofReport", "check_proof", "load_proof", "prove"]

PROOF_FORMAT = "cap-inclusion/1"
MAX_PROOF_BYTES = 16 << 20
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_BLOCK_FIELDS = ("b3", "height", "payload_b3", "prev_b3", "sig", "span_id", "span_type", "tid")
_FIELDS = ("block", "body", "format", "header", "leaf_index", "path", "tree_size")


@dataclass(slots=True, frozen=True)
class InclusionProof:
    header: bytes
    leaf_index: int
    tree_size: int
    path: tuple[bytes, ...]
    block: dict[str, Any]
    body: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT,
            "header": base64.b64encode(self.header).decode(),
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "path": [h.hex() for h in self.path],
            "block": self.block,
            "body": base64.b64encode(self.body).decode(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> InclusionProof:
        """Parse a proof document; anything malformed is ``E-BAD-INPUT``."""
        if not isinstance(doc, dict) or set(doc) != set(_FIELDS):
            raise BadInput("E-BAD-INPUT", f"a proof has exactly the fields {', '.join(_FIELDS)}")
        if doc["format"] != PROOF_FORMAT:
            raise BadInput("E-BAD-INPUT", f"proof format must be {PROOF_FORMAT}")
        block = doc["block"]
        if not isinstance(block, dict) or set(block) != set(_BLOCK_FIELDS):
            raise BadInput("E-BAD-INPUT", f"proof block has exactly {', '.join(_BLOCK_FIELDS)}")
        for name in ("b3", "payload_b3", "prev_b3", "sig"):
            if not isinstance(block[name], str) or not _HEX32.match(block[name]):
                raise BadInput("E-BAD-INPUT", f"block.{name} must be 64 lowercase hex digits")
        ints = (doc["leaf_index"], doc["tree_size"], block["height"])
        if any(type(i) is not int or i < 0 for i in ints):
            raise BadInput("E-BAD-INPUT", "leaf_index, tree_size and height must be integers")
        path = doc["path"]
        if not isinstance(path, list) or not all(
            isinstance(h, str) and _HEX32.match(h) for h in path
        ):
            raise BadInput("E-BAD-INPUT", "path must be a list of 64-hex-digit hashes")
        try:
            header = base64.b64decode(doc["header"], validate=True)
            body = base64.b64decode(doc["body"], validate=True)
        except (ValueError, TypeError):
            raise BadInput("E-BAD-INPUT", "header and body must be base64") from None
        if len(header) != HEADER_SIZE:
            raise BadInput("E-BAD-INPUT", f"header must be {HEADER_SIZE} bytes")
        return cls(
            header,
            doc["leaf_index"],
            doc["tree_size"],
            tuple(bytes.fromhex(h) for h in path),
            block,
            body,
        )


def load_proof(path: Path) -> InclusionProof:
    data = read_bounded(path, MAX_PROOF_BYTES, "proof file")
    return InclusionProof.from_json(loads_json_strict(data, what=str(path)))


def prove(
    capsule: Path | str, span_id: str, keys: BlockKeyProvider | None = None
) -> InclusionProof:
    """The inclusion proof of ``span_id``: its block through the index, the block hashes
    of the whole capsule (one pass, 32 bytes each) and the audit path among them."""
    with Capsule(capsule) as cap:
        found = cap.seek(span_id, keys)
        if found.event is None:
            raise EnvironmentProblem(
                "E-KEY", f"{cap.path}: the blocks are encrypted; pass --decrypt-key"
            )
        codec = cap.codec(keys)
        assert codec is not None
        where = f"block at offset {found.entry.block_off}"
        body = cap.open_payload(codec, astuple_block(found.block), where)
        leaves: list[bytes] = []
        index = -1
        for off, _, fields in iter_blocks(cap.blocks_region(), cap.header.wire):
            if off == found.entry.block_off:
                index = len(leaves)
            leaves.append(fields[5])  # the block's b3
        if index < 0 or len(leaves) != cap.header.block_count:
            raise corrupt("blocks", "the index names a block the blocks section does not hold")
        if merkle_root(leaves) != cap.header.merkle_root:
            raise corrupt("header", "merkle_root does not match the blocks", offset=280)
        dna = found.block.dna()
        return InclusionProof(
            header=bytes(cap.mm[:HEADER_SIZE]),
            leaf_index=index,
            tree_size=len(leaves),
            path=tuple(audit_path(leaves, index)),
            block={k: dna[k] for k in _BLOCK_FIELDS},
            body=body,
        )


@dataclass(slots=True, frozen=True)
class ProofReport:
    span_id: str
    event: dict[str, Any]
    leaf_index: int
    tree_size: int
    merkle_root: str
    capsule_b3: str
    signer: str
    pinned: bool
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "span_id": self.span_id,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "merkle_root": self.merkle_root,
            "capsule_b3": self.capsule_b3,
            "signer": self.signer,
            "pinned": self.pinned,
            "event": self.event,
            "warnings": list(self.warnings),
        }


def _mismatch(why: str) -> CheckFailed:
    return CheckFailed("E-HASH-MISMATCH", f"inclusion proof does not hold: {why}")


def check_proof(
    proof: InclusionProof, span_id: str | None = None, pubkey: bytes | None = None
) -> ProofReport:
    """Check ``proof`` with nothing but itself: the sealed header (structure, ``header_b3``,
    the seal, pinned to ``pubkey`` when given), the body against the block's hashes, the
    event against the block's identity, and the audit path up to the header's root."""
    header = Header.parse(proof.header, None)
    signer = base64.b64encode(header.public_key).decode()
    if pubkey is not None and pubkey != header.public_key:
        raise CheckFailed(
            "E-SIGNATURE-INVALID", f"the capsule was sealed by {signer}, not by the pinned key"
        )
    verify_signature(header.public_key, header.seal_message(), header.seal)
    warnings = [] if pubkey is not None else ["seal checked against the embedded key only"]
    block = proof.block
    b3, prev_b3 = bytes.fromhex(block["b3"]), bytes.fromhex(block["prev_b3"])
    if blake3(proof.body).digest().hex() != block["payload_b3"]:
        raise _mismatch("payload_b3 is not BLAKE3 of the body")
    if next_b3(prev_b3, proof.body) != b3:
        raise _mismatch("b3 is not BLAKE3(prev_b3 || body)")
    try:
        event = decode_record(b3 + bytes.fromhex(block["sig"]) + proof.body)
    except (ValueError, TypeError, KeyError):
        raise _mismatch("the body is not a ledger event") from None
    if (event.seq, event.id, event.type) != (block["height"], block["span_id"], block["span_type"]):
        raise _mismatch("the event's seq, id or type differ from the block's")
    if span_id is not None and event.id != span_id:
        raise CheckFailed("E-VERIFY-FAILED", f"the proof is for span {event.id}, not {span_id}")
    if proof.tree_size != header.block_count:
        raise _mismatch(f"tree size {proof.tree_size}, the capsule has {header.block_count}")
    try:
        root = root_from_path(b3, proof.leaf_index, proof.tree_size, proof.path)
    except ValueError as exc:
        raise _mismatch(str(exc)) from None
    if root != header.merkle_root:
        raise _mismatch("the audit path does not lead to the sealed merkle root")
    return ProofReport(
        event.id,
        event.to_json(),
        proof.leaf_index,
        proof.tree_size,
        header.merkle_root.hex(),
        header.capsule_b3.hex(),
        signer,
        pubkey is not None,
        tuple(warnings),
    )
