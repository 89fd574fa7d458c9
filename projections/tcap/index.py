"""INDEX_KV: span_id -> (block offset, span_type, height) as a sorted fixed-width table.

Keys are the first 16 bytes of ``BLAKE3(span_id)``, so a lookup is a binary search over the
mapped table (O(log n) probes, no scan of the blocks and no parse of the whole index). The
index is a pure function of the blocks: verify rebuilds it and compares bytes.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from blake3 import blake3

from projections.tcap.format import corrupt

__all__ = [
    "ENTRY_SIZE",
    "INDEX_MAGIC",
    "IndexBuilder",
    "IndexEntry",
    "IndexView",
    "Row",
    "span_key",
]

INDEX_MAGIC = b"TCAPIDX1"
_HEAD = struct.Struct("<8sQIIII")  # magic, entry_count, entry_size, type_count, types_len, 0
_ENTRY = struct.Struct("<16sQQII")  # key, block_off, height, type_id, block_len
_TYPE_LEN = struct.Struct("<H")
ENTRY_SIZE = _ENTRY.size
KEY_SIZE = 16


def span_key(span_id: str) -> bytes:
    """Index key of a span: the first 16 bytes of BLAKE3 of its UTF-8 bytes."""
    return blake3(span_id.encode()).digest()[:KEY_SIZE]


def _align8(n: int) -> int:
    return (n + 7) & ~7


@dataclass(slots=True, frozen=True)
class IndexEntry:
    """Where one span's block is: offset relative to the first block, and its length."""

    span_type: str
    block_off: int
    block_len: int
    height: int


Row = tuple[bytes, int, int, str, int]
"""(key, block offset, height, span type, block length): one block's index row."""


class IndexBuilder:
    """Collects one small row per block while packing; :meth:`build` sorts and encodes."""

    __slots__ = ("_rows", "_types_len")

    def __init__(self, rows: list[Row] | None = None) -> None:
        self._rows: list[Row] = rows if rows is not None else []
        self._types_len: dict[str, int] = {}
        for row in self._rows:
            self._note_type(row[3])

    def _note_type(self, span_type: str) -> None:
        if span_type not in self._types_len:
            self._types_len[span_type] = _TYPE_LEN.size + len(span_type.encode())

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, span_id: str, span_type: str, height: int, block_off: int, length: int) -> None:
        self._note_type(span_type)
        self._rows.append((span_key(span_id), block_off, height, span_type, length))

    def size_with(self, span_type: str | None = None, extra: int = 0) -> int:
        """Encoded size after ``extra`` more rows (one of them of ``span_type``)."""
        types_len = sum(self._types_len.values())
        if span_type is not None and span_type not in self._types_len:
            types_len += _TYPE_LEN.size + len(span_type.encode())
        return _HEAD.size + _align8(types_len) + ENTRY_SIZE * (len(self._rows) + extra)

    def type_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self._types_len, 0)
        for row in self._rows:
            counts[row[3]] += 1
        return counts

    def build(self) -> bytes:
        """The encoded index; ``ValueError`` if two span ids share a key (never seen)."""
        names = sorted(self._types_len, key=str.encode)
        ids = {name: i for i, name in enumerate(names)}
        table = b"".join(_TYPE_LEN.pack(len(n.encode())) + n.encode() for n in names)
        rows = sorted(self._rows)
        out = bytearray(_HEAD.pack(INDEX_MAGIC, len(rows), ENTRY_SIZE, len(names), len(table), 0))
        out += table + bytes(_align8(len(table)) - len(table))
        pack = _ENTRY.pack
        prev = b""
        for key, off, height, span_type, length in rows:
            if key == prev:
                raise ValueError("two span ids share an index key")
            prev = key
            out += pack(key, off, height, ids[span_type], length)
        return bytes(out)


class IndexView:
    """A checked, read-only view of an encoded index (usually inside an mmap)."""

    __slots__ = ("_buf", "_entries_off", "count", "types")

    def __init__(self, buf: Any, start: int, length: int) -> None:
        """``buf`` is anything sliceable with ``struct.unpack_from`` (an mmap, bytes)."""
        if length < _HEAD.size:
            raise corrupt("index", "shorter than its 32-byte header")
        magic, count, entry_size, type_count, types_len, zero = _HEAD.unpack_from(buf, start)
        if magic != INDEX_MAGIC or entry_size != ENTRY_SIZE or zero != 0:
            raise corrupt("index", "bad index header (magic, entry size or reserved field)")
        entries_off = start + _HEAD.size + _align8(types_len)
        if entries_off + count * ENTRY_SIZE != start + length:
            raise corrupt("index", "index length does not match its entry count")
        types: list[str] = []
        pos = start + _HEAD.size
        end = pos + types_len
        try:
            for _ in range(type_count):
                (n,) = _TYPE_LEN.unpack_from(buf, pos)
                if pos + 2 + n > end:
                    raise ValueError("type table overruns")
                types.append(bytes(buf[pos + 2 : pos + 2 + n]).decode())
                pos += 2 + n
        except (struct.error, ValueError, UnicodeDecodeError):
            raise corrupt("index", "type table is malformed") from None
        if pos != end or any(buf[end:entries_off]):
            raise corrupt("index", "type table length or padding is wrong")
        self._buf = buf
        self._entries_off = entries_off
        self.count = count
        self.types = types

    def _key(self, i: int) -> bytes:
        p = self._entries_off + i * ENTRY_SIZE
        return bytes(self._buf[p : p + KEY_SIZE])

    def _entry(self, i: int) -> IndexEntry:
        _, off, height, tid, length = _ENTRY.unpack_from(
            self._buf, self._entries_off + i * ENTRY_SIZE
        )
        if tid >= len(self.types):
            raise corrupt("index", f"entry {i} names an unknown span type")
        return IndexEntry(self.types[tid], off, length, height)

    def lookup(self, span_id: str) -> IndexEntry | None:
        """Binary search for ``span_id``; ``None`` when the capsule has no such span."""
        key = span_key(span_id)
        keys = _Keys(self)
        i = bisect.bisect_left(keys, key)
        if i < self.count and keys[i] == key:
            return self._entry(i)
        return None

    def offsets_of_type(self, match: Callable[[str], bool]) -> list[int]:
        """Block offsets (relative, ascending) of every span whose type ``match`` accepts."""
        wanted = {i for i, t in enumerate(self.types) if match(t)}
        start = self._entries_off
        data = bytes(self._buf[start : start + self.count * ENTRY_SIZE])
        return sorted(off for _, off, _, tid, _ in _ENTRY.iter_unpack(data) if tid in wanted)

    def entries(self) -> Iterator[tuple[bytes, IndexEntry]]:
        for i in range(self.count):
            yield self._key(i), self._entry(i)


class _Keys:
    """The index's keys as a sequence, for :func:`bisect.bisect_left`."""

    __slots__ = ("_view",)

    def __init__(self, view: IndexView) -> None:
        self._view = view

    def __len__(self) -> int:
        return self._view.count

    def __getitem__(self, i: int) -> bytes:
        return self._view._key(i)
