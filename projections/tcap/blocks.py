"""Blocks: one per ledger event, length-prefixed, in canonical JSON Lines (v1) or CBOR (v1.1).

A block carries the event's place in the ledger's public chain (``prev_b3``, ``b3``), the
hash of its body (``payload_b3``), its identity (``tid``, ``height``, ``span_id``,
``span_type``), the ledger's keyed chain value (``sig``) and ``payload``: the event's
canonical msgpack body exactly as the ledger chained it, optionally zstd-compressed and then
encrypted. So ``b3 == BLAKE3(prev_b3 || body)`` holds byte for byte (docs/TCAP.md, "Blocks").
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cbor2
import zstandard

from projections.tcap.crypto import BlockKey, block_aad, decrypt_payload, encrypt_payload
from projections.tcap.format import CAPSULE_LIMIT, corrupt

__all__ = [
    "FIELDS",
    "LEN",
    "WIRE_CBOR",
    "WIRE_JSONL",
    "Block",
    "Fields",
    "PayloadCodec",
    "astuple_block",
    "decode_block",
    "iter_blocks",
]

WIRE_JSONL = 1
WIRE_CBOR = 2
LEN = struct.Struct("<I")  # the length prefix of every block
FIELDS = frozenset(
    ("b3", "height", "payload", "payload_b3", "prev_b3", "sig", "span_id", "span_type", "tid")
)
_HASHES = ("b3", "payload_b3", "prev_b3", "sig")
# Canonical JSON (ledger.canonical.canonical_json) for a map of strings and integers only.
_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(slots=True, frozen=True)
class Block:
    """A decoded block; ``payload`` is as stored (compressed and/or encrypted when so packed)."""

    tid: str
    height: int
    span_id: str
    span_type: str
    prev_b3: bytes
    b3: bytes
    payload_b3: bytes
    sig: bytes
    payload: bytes

    def encode(self, wire: int) -> bytes:
        """The block's bytes on the wire, without the length prefix."""
        if wire == WIRE_JSONL:
            doc: dict[str, Any] = {
                "b3": self.b3.hex(),
                "height": self.height,
                "payload": base64.b64encode(self.payload).decode(),
                "payload_b3": self.payload_b3.hex(),
                "prev_b3": self.prev_b3.hex(),
                "sig": self.sig.hex(),
                "span_id": self.span_id,
                "span_type": self.span_type,
                "tid": self.tid,
            }
            return _dumps(doc).encode() + b"\n"
        return cbor2.dumps(
            {
                "b3": self.b3,
                "height": self.height,
                "payload": self.payload,
                "payload_b3": self.payload_b3,
                "prev_b3": self.prev_b3,
                "sig": self.sig,
                "span_id": self.span_id,
                "span_type": self.span_type,
                "tid": self.tid,
            },
            canonical=True,
        )

    def dna(self) -> dict[str, Any]:
        """The chain fields as JSON (hex), for ``tcap seek``."""
        return {
            "tid": self.tid,
            "height": self.height,
            "span_id": self.span_id,
            "span_type": self.span_type,
            "prev_b3": self.prev_b3.hex(),
            "b3": self.b3.hex(),
            "payload_b3": self.payload_b3.hex(),
            "sig": self.sig.hex(),
        }


Fields = tuple[str, int, str, str, bytes, bytes, bytes, bytes, bytes]
"""A block's fields in :class:`Block` order, without building an object (hot loops)."""

_DECODE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    UnicodeDecodeError,
    binascii.Error,
    cbor2.CBORDecodeError,
)


def _check(doc: Any, hashes: list[bytes]) -> None:
    if type(doc["height"]) is not int or doc["height"] < 0:
        raise ValueError("height must be a non-negative integer")
    if type(doc["span_id"]) is not str or type(doc["span_type"]) is not str:
        raise ValueError("span_id and span_type must be strings")
    if type(doc["tid"]) is not str:
        raise ValueError("tid must be a string")
    for h in hashes:
        if len(h) != 32:
            raise ValueError("hash fields must be 32 bytes")


# The C scanner behind json.loads, called directly: it also reports where the value ended.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _fields_json(raw: bytes) -> Fields:
    text = raw.decode()
    if text[-1:] != "\n":
        raise ValueError("a JSON Lines block ends with a newline")
    try:
        doc, end = _scan_json(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text) - 1:
        raise ValueError("more than one JSON value in the block")
    if type(doc) is not dict or doc.keys() != FIELDS:
        raise ValueError("block fields are not the nine of TCAP v1")
    hashes = []
    for name in _HASHES:
        text = doc[name]
        value = bytes.fromhex(text)
        if value.hex() != text:
            raise ValueError(f"{name} is not lowercase hex")
        hashes.append(value)
    _check(doc, hashes)
    b3, payload_b3, prev_b3, sig = hashes
    payload = binascii.a2b_base64(doc["payload"], strict_mode=True)
    return (
        doc["tid"],
        doc["height"],
        doc["span_id"],
        doc["span_type"],
        prev_b3,
        b3,
        payload_b3,
        sig,
        payload,
    )


def _fields_cbor(doc: Any) -> Fields:
    if type(doc) is not dict or doc.keys() != FIELDS:
        raise ValueError("block fields are not the nine of TCAP v1")
    hashes = [doc["b3"], doc["payload_b3"], doc["prev_b3"], doc["sig"], doc["payload"]]
    if any(type(h) is not bytes for h in hashes):
        raise ValueError("hashes and payload must be byte strings")
    _check(doc, hashes[:4])
    return (
        doc["tid"],
        doc["height"],
        doc["span_id"],
        doc["span_type"],
        doc["prev_b3"],
        doc["b3"],
        doc["payload_b3"],
        doc["sig"],
        doc["payload"],
    )


def _cbor_loads(raw: bytes) -> Any:
    fp = io.BytesIO(raw)
    value = cbor2.CBORDecoder(fp).decode()
    if fp.tell() != len(raw):
        raise ValueError("trailing bytes after the CBOR item")
    return value


def astuple_block(b: Block) -> Fields:
    return (
        b.tid,
        b.height,
        b.span_id,
        b.span_type,
        b.prev_b3,
        b.b3,
        b.payload_b3,
        b.sig,
        b.payload,
    )


def decode_block(raw: bytes, wire: int, where: str) -> Block:
    """Parse one block's bytes; ``E-CAPSULE-CORRUPT`` naming ``where`` if malformed."""
    try:
        fields = _fields_json(raw) if wire == WIRE_JSONL else _fields_cbor(_cbor_loads(raw))
    except _DECODE_ERRORS as exc:
        raise corrupt(where, f"malformed block ({exc})") from None
    return Block(*fields)


def iter_blocks(
    region: bytes, wire: int, start: int = 0, stop: int | None = None
) -> Iterator[tuple[int, int, Fields]]:
    """``(offset, length, fields)`` of every block in ``region`` (the blocks section) from
    offset ``start`` to ``stop``, for sequential readers: one decoder for the whole run,
    no object per block."""
    end = len(region) if stop is None else stop
    unpack = LEN.unpack_from
    pos = start
    if wire == WIRE_CBOR:
        fp = io.BytesIO(region)
        decode = cbor2.CBORDecoder(fp).decode
    while pos < end:
        if pos + LEN.size > end:
            raise corrupt("blocks", "a length prefix is cut off", offset=pos)
        (n,) = unpack(region, pos)
        start, stop = pos + LEN.size, pos + LEN.size + n
        if stop > end:
            raise corrupt(f"block at offset {pos}", "overruns the capsule", offset=pos)
        try:
            if wire == WIRE_CBOR:
                fp.seek(start)
                fields = _fields_cbor(decode())
                if fp.tell() != stop:
                    raise ValueError("the CBOR item does not fill the block")
            else:
                fields = _fields_json(region[start:stop])
        except _DECODE_ERRORS as exc:
            raise corrupt(f"block at offset {pos}", f"malformed block ({exc})") from None
        yield pos, n, fields
        pos = stop


class PayloadCodec:
    """Turns an event body into a block payload and back: zstd, then encryption."""

    __slots__ = ("_cctx", "_dctx", "compression", "key")

    def __init__(self, compression: str, key: BlockKey | None) -> None:
        self.compression = compression
        self.key = key
        self._cctx = zstandard.ZstdCompressor(level=3) if compression == "zstd" else None
        self._dctx = zstandard.ZstdDecompressor() if compression == "zstd" else None

    def seal(self, body: bytes, tid: str, height: int, span_id: str) -> bytes:
        data = self._cctx.compress(body) if self._cctx is not None else body
        if self.key is not None:
            data = encrypt_payload(self.key, block_aad(tid, height, span_id), data)
        return data

    @property
    def identity(self) -> bool:
        """True when payloads are stored as the bodies themselves (no zstd, no cipher)."""
        return self.key is None and self._dctx is None

    def open(self, payload: bytes, tid: str, height: int, span_id: str, where: str) -> bytes:
        """The event body of a block's payload; needs the key when the capsule is encrypted."""
        data = payload
        if self.key is not None:
            aad = block_aad(tid, height, span_id)
            data = decrypt_payload(self.key, aad, data, where=where)
        if self._dctx is not None:
            try:
                data = self._dctx.decompress(data, max_output_size=CAPSULE_LIMIT)
            except zstandard.ZstdError as exc:
                raise corrupt(where, f"zstd payload does not decompress ({exc})") from None
        return data
