"""Open a capsule (mmap), seek one span through the index, stream its payloads.

Opening reads and checks only the header's structure; ``seek`` reads the index and
exactly one block; ``extract`` walks the blocks in order (or, filtered by span type, only
the blocks the index names). Full checking is :mod:`projections.tcap.verify`'s job.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blake3 import blake3

from ledger.errors import BadInput, CheckFailed, EnvironmentProblem, NotFound
from ledger.events import body_json
from ledger.log import type_matcher
from projections.tcap.blocks import (
    LEN,
    Block,
    Fields,
    PayloadCodec,
    astuple_block,
    decode_block,
    iter_blocks,
)
from projections.tcap.crypto import BlockKeyProvider
from projections.tcap.format import CAPSULE_LIMIT, HEADER_SIZE, Header, corrupt
from projections.tcap.index import IndexEntry, IndexView
from projections.tcap.manifest import parse_manifest

__all__ = ["Capsule", "SeekResult", "event_json"]


@dataclass(slots=True, frozen=True)
class SeekResult:
    """A span found through the index: its block and, when readable, its event."""

    entry: IndexEntry
    block: Block
    event: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "span_id": self.block.span_id,
            "offset": self.entry.block_off,
            "length": self.entry.block_len,
            "block": self.block.dna(),
            "event": self.event,
        }


def event_json(
    b3: bytes, sig: bytes, height: int, span_id: str, span_type: str, body: bytes, where: str
) -> dict[str, Any]:
    """The event's JSON view (as ``ledger log`` prints it) from a block's fields and body."""
    try:
        doc = body_json(body, b3, sig)
    except (ValueError, TypeError) as exc:
        raise corrupt(where, f"payload is not a ledger event body ({exc})") from None
    if doc["seq"] != height or doc["id"] != span_id or doc["type"] != span_type:
        raise corrupt(where, "payload's seq, id or type differ from the block's")
    return doc


class Capsule:
    """A capsule file mapped read-only; use as a context manager."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound("E-NOT-FOUND", f"no capsule at {self.path}") from None
        except IsADirectoryError:
            raise BadInput("E-BAD-INPUT", f"{self.path} is a directory, not a capsule") from None
        except OSError as exc:
            raise EnvironmentProblem(
                "E-BAD-INPUT", f"cannot open {self.path}: {exc.strerror}"
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size > CAPSULE_LIMIT:
                raise CheckFailed(
                    "E-CAPSULE-TOO-LARGE",
                    f"{self.path} is {size:,} bytes; a TCAP v1 capsule is at most "
                    f"{CAPSULE_LIMIT:,}",
                )
            if size < HEADER_SIZE:
                raise corrupt("file", f"{size} bytes, shorter than the 8 KiB header", offset=size)
            self.mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self.size = size
        try:
            self.header = Header.parse(self.mm[:HEADER_SIZE], size)
        except BaseException:
            self.mm.close()
            raise
        self._manifest: dict[str, Any] | None = None
        self._index: IndexView | None = None

    def close(self) -> None:
        self.mm.close()

    def __enter__(self) -> Capsule:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sections ---------------------------------------------------------------------

    def manifest_bytes(self) -> bytes:
        h = self.header
        return self.mm[h.manifest_off : h.manifest_off + h.manifest_len]

    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            self._manifest = parse_manifest(self.manifest_bytes())
        return self._manifest

    def index(self) -> IndexView:
        if self._index is None:
            self._index = IndexView(self.mm, self.header.index_off, self.header.index_len)
        return self._index

    def index_bytes(self) -> bytes:
        h = self.header
        return self.mm[h.index_off : h.index_off + h.index_len]

    # --- blocks -----------------------------------------------------------------------

    def raw_block_at(self, rel: int) -> bytes:
        """The encoded block whose length prefix starts ``rel`` bytes into the blocks."""
        h = self.header
        pos = h.first_block_off + rel
        if rel < 0 or pos + LEN.size > h.capsule_len:
            raise corrupt("blocks", f"no block at offset {rel}", offset=pos)
        (n,) = LEN.unpack_from(self.mm, pos)
        if pos + LEN.size + n > h.capsule_len:
            raise corrupt("blocks", f"block at offset {rel} overruns the capsule", offset=pos)
        return self.mm[pos + LEN.size : pos + LEN.size + n]

    def block_at(self, rel: int) -> Block:
        return decode_block(self.raw_block_at(rel), self.header.wire, f"block at offset {rel}")

    def codec(self, keys: BlockKeyProvider | None) -> PayloadCodec | None:
        """How to open payloads; ``None`` when they are encrypted and no key was given."""
        h = self.header
        key = None
        if h.encryption:
            if keys is None:
                return None
            enc = self.manifest()["wire"]["encryption"]
            if not isinstance(enc, dict):
                raise corrupt("manifest", "header says encrypted, manifest names no key")
            key = keys.decryption_key(str(self.manifest()["ledger_id"]), str(enc.get("key_id")))
        return PayloadCodec(h.compression_name, key)

    def open_payload(self, codec: PayloadCodec, f: Fields, where: str) -> bytes:
        """The event body of a block (its :data:`Fields`), checked against ``payload_b3``."""
        body = codec.open(f[8], f[0], f[1], f[2], where)
        if blake3(body).digest() != f[6]:
            raise corrupt(where, "payload_b3 does not match the payload")
        return body

    def blocks_region(self) -> bytes:
        """The blocks section as one bytes object (for one sequential pass)."""
        h = self.header
        return self.mm[h.first_block_off : h.capsule_len]

    # --- operations -------------------------------------------------------------------

    def seek(self, span_id: str, keys: BlockKeyProvider | None = None) -> SeekResult:
        """The block of ``span_id`` through the index: one lookup, one block read."""
        entry = self.index().lookup(span_id)
        if entry is None:
            raise NotFound("E-NOT-FOUND", f"no span {span_id!r} in {self.path}")
        where = f"block at offset {entry.block_off}"
        raw = self.raw_block_at(entry.block_off)
        if len(raw) != entry.block_len:
            raise corrupt(where, "block length differs from the index")
        block = decode_block(raw, self.header.wire, where)
        if (block.span_id, block.span_type, block.height) != (
            span_id,
            entry.span_type,
            entry.height,
        ):
            raise corrupt(where, "block does not match its index entry")
        codec = self.codec(keys)
        event = None
        if codec is not None:
            f = astuple_block(block)
            body = self.open_payload(codec, f, where)
            event = event_json(
                block.b3, block.sig, block.height, span_id, block.span_type, body, where
            )
        return SeekResult(entry, block, event)

    def extract(
        self, span_types: Sequence[str] = (), keys: BlockKeyProvider | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every event (or those of ``span_types``, found through the index) in order."""
        codec = self.codec(keys)
        if codec is None:
            raise EnvironmentProblem(
                "E-KEY", f"{self.path}: the blocks are encrypted; pass --decrypt-key"
            )
        wire = self.header.wire
        if span_types:
            offsets = self.index().offsets_of_type(type_matcher(span_types))
            pairs: Iterator[tuple[int, Fields]] = (
                (o, astuple_block(decode_block(self.raw_block_at(o), wire, f"block at offset {o}")))
                for o in offsets
            )
        else:
            pairs = ((off, f) for off, _, f in iter_blocks(self.blocks_region(), wire))
        open_payload = self.open_payload
        for off, f in pairs:
            where = f"block at offset {off}"
            body = open_payload(codec, f, where)
            yield event_json(f[5], f[7], f[1], f[2], f[3], body, where)
