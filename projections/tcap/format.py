"""The TCAP v1 header: a fixed 8 KiB little-endian struct, its hash and its seal message.

Layout (docs/TCAP.md, "Header"): every byte not named by a field is zero, and readers check
that. ``header_b3`` is BLAKE3 of the 8 KiB with the ``header_b3`` and ``seal`` fields zeroed;
the seal is Ed25519 over ``sig_context || capsule_b3 || header_b3``. ``merkle_root`` (bytes
280..312) repeats the manifest's ``merkle.root`` inside the sealed header, so an inclusion
proof (``projections/tcap/proof.py``) needs nothing of the capsule but its header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any

from blake3 import blake3

from ledger.errors import CheckFailed

__all__ = [
    "CAPSULE_LIMIT",
    "CIPHER_NAMES",
    "COMPRESSIONS",
    "HEADER_SIZE",
    "MAGIC",
    "SIG_CONTEXT",
    "VERSION",
    "WIRE_FORMATS",
    "Header",
    "corrupt",
]

MAGIC = b"TCAPv1\x00\x00"  # "TCAPv1\0", NUL-padded to 8 bytes
VERSION = 1
HEADER_SIZE = 8192
CAPSULE_LIMIT = 52_428_800  # 50 MB: the seed's maximum size of one capsule
SIG_CONTEXT = b"diamond:tcap:v1"
WIRE_FORMATS = {1: "jsonl", 2: "cbor"}  # v1 canonical JSON Lines, v1.1 canonical CBOR
COMPRESSIONS = {0: "none", 1: "zstd"}
CIPHER_NAMES = {0: "none", 1: "xchacha20poly1305-ietf"}

# magic, version, endianness, header_size, manifest_off, manifest_len, index_off, index_len,
# first_block_off, blocks_len, block_count, capsule_len, wire, compression, encryption,
# cipher, reserved u32, capsule_b3, header_b3, sig_context (32, NUL-padded), seal, public key,
# merkle_root (the manifest's merkle.root, so the seal covers it: inclusion proofs are
# checked against the sealed header alone)
_STRUCT = struct.Struct("<8sH2sI8QBBBBI32s32s32s64s32s32s")
_HEADER_B3 = slice(120, 152)
_SEAL = slice(184, 248)
assert _STRUCT.size == 312


def corrupt(where: str, why: str, **details: Any) -> CheckFailed:
    """``E-CAPSULE-CORRUPT`` naming the section (and offset) where the capsule is wrong."""
    return CheckFailed(
        "E-CAPSULE-CORRUPT", f"capsule corrupt: {where}: {why}", where=where, **details
    )


@dataclass(slots=True, frozen=True)
class Header:
    """The decoded header; offsets are absolute file offsets."""

    manifest_off: int
    manifest_len: int
    index_off: int
    index_len: int
    first_block_off: int
    blocks_len: int
    block_count: int
    capsule_len: int
    wire: int
    compression: int
    encryption: bool
    cipher: int
    capsule_b3: bytes = bytes(32)
    header_b3: bytes = bytes(32)
    seal: bytes = bytes(64)
    public_key: bytes = bytes(32)
    merkle_root: bytes = bytes(32)

    @property
    def wire_name(self) -> str:
        return WIRE_FORMATS[self.wire]

    @property
    def compression_name(self) -> str:
        return COMPRESSIONS[self.compression]

    def pack(self) -> bytes:
        """The full 8 KiB header as stored."""
        fixed = _STRUCT.pack(
            MAGIC,
            VERSION,
            b"LE",
            HEADER_SIZE,
            self.manifest_off,
            self.manifest_len,
            self.index_off,
            self.index_len,
            self.first_block_off,
            self.blocks_len,
            self.block_count,
            self.capsule_len,
            self.wire,
            self.compression,
            int(self.encryption),
            self.cipher,
            0,
            self.capsule_b3,
            self.header_b3,
            SIG_CONTEXT.ljust(32, b"\x00"),
            self.seal,
            self.public_key,
            self.merkle_root,
        )
        return fixed + bytes(HEADER_SIZE - len(fixed))

    def compute_b3(self) -> bytes:
        """``header_b3``: BLAKE3 of the header with ``header_b3`` and ``seal`` zeroed."""
        return blake3(replace(self, header_b3=bytes(32), seal=bytes(64)).pack()).digest()

    def seal_message(self) -> bytes:
        """What the seal signs: ``sig_context || capsule_b3 || header_b3``."""
        return SIG_CONTEXT + self.capsule_b3 + self.header_b3

    @classmethod
    def parse(cls, raw: bytes | memoryview, file_size: int | None) -> Header:
        """Decode and check the header's structure and ``header_b3`` (not the seal).
        ``file_size`` ``None``: a detached header (an inclusion proof's), whose
        ``capsule_len`` is taken as the size."""
        if file_size is None:
            file_size = _STRUCT.unpack_from(raw, 0)[11] if len(raw) >= HEADER_SIZE else len(raw)
        if file_size < HEADER_SIZE or len(raw) < HEADER_SIZE:
            raise corrupt("header", f"file is {file_size} bytes, shorter than the 8 KiB header")
        f = _STRUCT.unpack_from(raw, 0)
        if f[0] != MAGIC:
            raise corrupt("header", "bad magic (not a TCAP v1 capsule)", offset=0)
        if f[1] != VERSION:
            raise corrupt("header", f"unsupported version {f[1]}", offset=8)
        if f[2] != b"LE":
            raise corrupt("header", "endianness is not LE", offset=10)
        if f[3] != HEADER_SIZE:
            raise corrupt("header", f"header_size is {f[3]}, not {HEADER_SIZE}", offset=12)
        if bytes(raw[_HEADER_B3]) != blake3(_zero_hash_fields(raw)).digest():
            raise corrupt("header", "header_b3 does not match the header (header altered)")
        h = cls(
            manifest_off=f[4],
            manifest_len=f[5],
            index_off=f[6],
            index_len=f[7],
            first_block_off=f[8],
            blocks_len=f[9],
            block_count=f[10],
            capsule_len=f[11],
            wire=f[12],
            compression=f[13],
            encryption=f[14] == 1,
            cipher=f[15],
            capsule_b3=f[17],
            header_b3=f[18],
            seal=f[20],
            public_key=f[21],
            merkle_root=f[22],
        )
        if f[16] != 0 or any(raw[_STRUCT.size : HEADER_SIZE]):
            raise corrupt("header", "reserved bytes are not zero")
        if f[19] != SIG_CONTEXT.ljust(32, b"\x00"):
            raise corrupt("header", "sig_context is not diamond:tcap:v1", offset=152)
        h._check_fields(file_size, f[14])
        return h

    def _check_fields(self, file_size: int, encryption_byte: int) -> None:
        if self.wire not in WIRE_FORMATS:
            raise corrupt("header", f"unknown wire format {self.wire}", offset=80)
        if self.compression not in COMPRESSIONS:
            raise corrupt("header", f"unknown compression {self.compression}", offset=81)
        if encryption_byte not in (0, 1) or (self.cipher != 0) != self.encryption:
            raise corrupt("header", "encryption flag and cipher disagree", offset=82)
        if self.cipher not in CIPHER_NAMES:
            raise corrupt("header", f"unknown cipher {self.cipher}", offset=83)
        if (
            self.manifest_off != HEADER_SIZE
            or self.index_off != self.manifest_off + self.manifest_len
            or self.first_block_off != self.index_off + self.index_len
            or self.capsule_len != self.first_block_off + self.blocks_len
        ):
            raise corrupt("header", "section offsets and lengths are not contiguous", offset=16)
        if self.capsule_len != file_size:
            what = "truncated" if file_size < self.capsule_len else "has trailing bytes"
            raise corrupt(
                "file",
                f"capsule {what}: the file is {file_size} bytes, the header says "
                f"{self.capsule_len}",
                offset=min(file_size, self.capsule_len),
            )
        if self.capsule_len > CAPSULE_LIMIT:
            raise corrupt("header", f"capsule is larger than the {CAPSULE_LIMIT}-byte limit")


def _zero_hash_fields(raw: bytes | memoryview) -> bytes:
    buf = bytearray(raw[:HEADER_SIZE])
    buf[_HEADER_B3] = bytes(32)
    buf[_SEAL] = bytes(64)
    return bytes(buf)
