"""``tcap pack``: stream events from the log into sealed capsules, one block per event.

Events are read in short LMDB transactions and written block by block to a scratch file
next to the output, keeping in memory only one small index row per block. Sealing writes
header, manifest and index to a temporary file, appends the blocks while hashing them
(``capsule_b3``), signs, and links the result into place only when complete. With
``split``, a capsule that would pass the limit is sealed and the next part begins, its
manifest naming its predecessor's ``capsule_b3``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger.chain import ZERO, next_b3
from ledger.errors import BadInput, CheckFailed
from ledger.events import decode_record
from ledger.keys import Ed25519Keypair
from ledger.log import EventLog, type_matcher
from ledger.merkle import MerkleBuilder
from projections.tcap.blocks import LEN, WIRE_CBOR, WIRE_JSONL, Block, PayloadCodec
from projections.tcap.crypto import CIPHER, BlockKey, BlockKeyProvider
from projections.tcap.format import CAPSULE_LIMIT, HEADER_SIZE, Header
from projections.tcap.index import IndexBuilder
from projections.tcap.manifest import ManifestFields

__all__ = ["PackOptions", "PackedCapsule", "pack", "part_path"]

_WIRES = {"jsonl": WIRE_JSONL, "cbor": WIRE_CBOR}
_COMPRESSIONS = {"none": 0, "zstd": 1}
_COPY_CHUNK = 1 << 20


@dataclass(slots=True, frozen=True)
class PackOptions:
    """What to pack and how; ``start``/``stop`` are inclusive seqs."""

    start: int | None = None
    stop: int | None = None
    types: tuple[str, ...] = ()
    wire: str = "jsonl"
    compression: str = "none"
    split: bool = False
    max_bytes: int = CAPSULE_LIMIT
    refs: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.wire not in _WIRES:
            raise BadInput("E-BAD-INPUT", f"--format must be jsonl or cbor, not {self.wire!r}")
        if self.compression not in _COMPRESSIONS:
            raise BadInput(
                "E-BAD-INPUT", f"--compression must be none or zstd, not {self.compression!r}"
            )
        if self.start is not None and self.start < 0:
            raise BadInput("E-BAD-INPUT", "--from must be >= 0")
        if self.start is not None and self.stop is not None and self.stop < self.start:
            raise BadInput("E-BAD-INPUT", "--to must be >= --from")
        if not HEADER_SIZE < self.max_bytes <= CAPSULE_LIMIT:
            raise BadInput(
                "E-BAD-INPUT", f"--max-bytes must be in ({HEADER_SIZE}, {CAPSULE_LIMIT}]"
            )


@dataclass(slots=True, frozen=True)
class PackedCapsule:
    """One sealed capsule file."""

    path: Path
    capsule_b3: bytes
    size: int
    blocks: int
    first_height: int | None
    last_height: int | None
    part: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "capsule_b3": self.capsule_b3.hex(),
            "size": self.size,
            "blocks": self.blocks,
            "first_height": self.first_height,
            "last_height": self.last_height,
            "part": self.part,
        }


def part_path(out: Path, number: int) -> Path:
    """``exp.tcap`` -> ``exp.0001.tcap``: the name of part ``number`` of a split series."""
    stem = out.name[: -len(".tcap")] if out.name.endswith(".tcap") else out.name
    return out.with_name(f"{stem}.{number:04d}.tcap")


def _too_large(opts: PackOptions, seq: int) -> BadInput:
    return BadInput(
        "E-CAPSULE-TOO-LARGE",
        f"the capsule would pass the {opts.max_bytes:,}-byte limit at seq {seq}; narrow the "
        "selection (--from/--to/--type), add --compression zstd, or pass --split to write a "
        "numbered series of sealed parts",
        seq=seq,
        limit=opts.max_bytes,
    )


class _Part:
    """One capsule being written: blocks go to a scratch file until it is sealed."""

    def __init__(self, final: Path, template: ManifestFields, opts: PackOptions) -> None:
        self.final = final
        self.template = template
        self.opts = opts
        self.scratch = final.with_name(f".{final.name}.{os.getpid()}.blocks")
        self.fh = open(self.scratch, "wb")  # noqa: SIM115 (closed in seal/abort)
        self.index = IndexBuilder()
        self.merkle = MerkleBuilder()
        self.blocks_len = 0
        self.body_bytes = 0
        self.first: Block | None = None
        self.last: Block | None = None
        self._types: set[str] = set()
        self._manifest_bound = template.size_bound({})

    def fits(self, block: Block, length: int) -> bool:
        if block.span_type not in self._types:
            bound = self.template.size_bound(dict.fromkeys([*self._types, block.span_type], 0))
        else:
            bound = self._manifest_bound
        total = (
            HEADER_SIZE
            + bound
            + self.index.size_with(block.span_type, 1)
            + self.blocks_len
            + LEN.size
            + length
        )
        return total <= self.opts.max_bytes

    def add(self, block: Block, encoded: bytes, body_len: int) -> None:
        if block.span_type not in self._types:
            self._types.add(block.span_type)
            self._manifest_bound = self.template.size_bound(dict.fromkeys(self._types, 0))
        self.index.add(block.span_id, block.span_type, block.height, self.blocks_len, len(encoded))
        self.fh.write(LEN.pack(len(encoded)))
        self.fh.write(encoded)
        self.blocks_len += LEN.size + len(encoded)
        self.body_bytes += body_len
        self.merkle.add(block.b3)
        if self.first is None:
            self.first = block
        self.last = block

    def abort(self) -> None:
        self.fh.close()
        self.scratch.unlink(missing_ok=True)

    def seal(self, signer: Ed25519Keypair, part: dict[str, Any] | None) -> PackedCapsule:
        self.fh.close()
        first, last = self.first, self.last
        fields = replace(
            self.template,
            first_height=first.height if first else None,
            last_height=last.height if last else None,
            first_prev_b3=first.prev_b3.hex() if first else None,
            last_b3=last.b3.hex() if last else None,
            blocks=len(self.index),
            body_bytes=self.body_bytes,
            span_types=self.index.type_counts(),
            merkle_root=self.merkle.root().hex(),
            part=part,
        )
        manifest = fields.encode()
        index = self.index.build()
        index_off = HEADER_SIZE + len(manifest)
        first_block_off = index_off + len(index)
        header = Header(
            manifest_off=HEADER_SIZE,
            manifest_len=len(manifest),
            index_off=index_off,
            index_len=len(index),
            first_block_off=first_block_off,
            blocks_len=self.blocks_len,
            block_count=len(self.index),
            capsule_len=first_block_off + self.blocks_len,
            wire=_WIRES[self.opts.wire],
            compression=_COMPRESSIONS[self.opts.compression],
            encryption=self.template.encryption is not None,
            cipher=1 if self.template.encryption is not None else 0,
            public_key=signer.public_key,
            merkle_root=self.merkle.root(),
        )
        assert header.capsule_len <= self.opts.max_bytes, "size bound was not an upper bound"
        tmp = self.final.with_name(f".{self.final.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out, open(self.scratch, "rb") as blocks:
                out.write(bytes(HEADER_SIZE))
                h = blake3(max_threads=blake3.AUTO)
                for chunk in (manifest, index):
                    out.write(chunk)
                    h.update(chunk)
                while chunk := blocks.read(_COPY_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                header = replace(header, capsule_b3=h.digest())
                header = replace(header, header_b3=header.compute_b3())
                header = replace(header, seal=signer.sign(header.seal_message()))
                out.seek(0)
                out.write(header.pack())
                out.flush()
                os.fsync(out.fileno())
            _link_into_place(tmp, self.final)
        finally:
            tmp.unlink(missing_ok=True)
            self.scratch.unlink(missing_ok=True)
        return PackedCapsule(
            self.final,
            header.capsule_b3,
            header.capsule_len,
            len(self.index),
            fields.first_height,
            fields.last_height,
            None if part is None else part["number"],
        )


def _link_into_place(tmp: Path, final: Path) -> None:
    """Publish a complete file atomically, never replacing an existing one."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise BadInput(
            "E-BAD-INPUT", f"{final} already exists; remove it or choose another --out"
        ) from None
    dfd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def pack(
    log: EventLog,
    out: Path,
    signer: Ed25519Keypair,
    opts: PackOptions,
    keys: BlockKeyProvider | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[PackedCapsule]:
    """Pack the selected events into ``out`` (or a numbered series with ``split``)."""
    opts.check()
    out = Path(out)
    if not out.parent.is_dir():
        raise BadInput("E-BAD-INPUT", f"output directory {out.parent} does not exist")
    tid = log.ledger_id
    key: BlockKey | None = keys.encryption_key(tid) if keys is not None else None
    template = ManifestFields(
        ledger_id=tid,
        wire=opts.wire,
        compression=opts.compression,
        encryption=None if key is None else {"cipher": CIPHER, "key_id": key.key_id, "tenant": tid},
        select_from=opts.start,
        select_to=opts.stop,
        select_types=tuple(opts.types),
        part={"number": 1, "prev_capsule_b3": None, "last": False} if opts.split else None,
        refs=opts.refs,
    )
    targets = [part_path(out, 1) if opts.split else out]
    for t in targets:
        if t.exists():
            raise BadInput("E-BAD-INPUT", f"{t} already exists; remove it or choose another --out")
    codec = PayloadCodec(opts.compression, key)
    wire = _WIRES[opts.wire]
    match = type_matcher(opts.types)
    start = opts.start or 0
    # Without --to, the capsule ends at the head as pack starts: a consistent snapshot even
    # while others append.
    stop = opts.stop if opts.stop is not None else log.head().seq
    sealed: list[PackedCapsule] = []
    current = _Part(targets[0], template, opts)
    prev = ZERO
    try:
        for seq, record in log.records(after=start - 2 if start > 0 else -1):
            if seq > stop:
                break
            b3, body = record[:32], record[64:]
            if seq < start:  # the event before the selection: only its b3 is needed
                prev = b3
                continue
            if next_b3(prev, body) != b3:
                raise CheckFailed(
                    "E-CHAIN-BROKEN", f"chain broken at seq {seq}: refusing to pack it", seq=seq
                )
            this_prev, prev = prev, b3
            event = decode_record(record)
            if not match(event.type):
                continue
            block = Block(
                tid,
                seq,
                event.id,
                event.type,
                this_prev,
                b3,
                blake3(body).digest(),
                record[32:64],
                codec.seal(body, tid, seq, event.id),
            )
            encoded = block.encode(wire)
            if not current.fits(block, len(encoded)):
                if not opts.split or current.first is None:
                    raise _too_large(opts, seq)
                number = len(sealed) + 1
                sealed.append(current.seal(signer, _part(current.template)))
                nxt = part_path(out, number + 1)
                if nxt.exists():
                    raise BadInput("E-BAD-INPUT", f"{nxt} already exists; remove it first")
                part = {
                    "number": number + 1,
                    "prev_capsule_b3": sealed[-1].capsule_b3.hex(),
                    "last": False,
                }
                current = _Part(nxt, replace(template, part=part), opts)
                if not current.fits(block, len(encoded)):
                    raise _too_large(opts, seq)
            current.add(block, encoded, len(body))
            if progress is not None and not seq & 0x3FF:
                progress(seq)
        last_part = None if not opts.split else {**_part(current.template), "last": True}
        sealed.append(current.seal(signer, last_part))
    except BaseException:
        current.abort()
        for done in sealed:  # an incomplete series is no series: take it back
            done.path.unlink(missing_ok=True)
        raise
    return sealed


def _part(template: ManifestFields) -> dict[str, Any]:
    assert template.part is not None
    return dict(template.part)
