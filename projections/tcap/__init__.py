"""TCAP v1 capsules: sealed, seekable exports of the event chain (docs/TCAP.md)."""

from __future__ import annotations

from projections.tcap.crypto import BlockKeyProvider, FileBlockKeyProvider, write_block_key_file
from projections.tcap.format import CAPSULE_LIMIT, HEADER_SIZE, SIG_CONTEXT, Header
from projections.tcap.reader import Capsule, SeekResult
from projections.tcap.verify import SeriesReport, VerifyReport, verify_capsule, verify_series
from projections.tcap.writer import PackedCapsule, PackOptions, pack, part_path

__all__ = [
    "CAPSULE_LIMIT",
    "HEADER_SIZE",
    "SIG_CONTEXT",
    "BlockKeyProvider",
    "Capsule",
    "FileBlockKeyProvider",
    "Header",
    "PackOptions",
    "PackedCapsule",
    "SeekResult",
    "SeriesReport",
    "VerifyReport",
    "pack",
    "part_path",
    "verify_capsule",
    "verify_series",
    "write_block_key_file",
]
