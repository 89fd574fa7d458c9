"""Row encoding for projection tables: canonical msgpack without re-validating.

Rows are built from event payloads, which were validated and canonicalized when appended,
so re-checking every value in the hot loop of a rebuild is wasted work. The projections
build new rows with their keys in canonical (sorted) order and update unpacked canonical
rows in place (which keeps the order), so packing them as they are is canonical;
tests/projections/test_rows.py re-encodes every stored row to check it.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["pack_ordered"]


def pack_ordered(row: dict[str, Any]) -> bytes:
    """Msgpack of a row already in canonical key order at every level (the hot path)."""
    return msgpack.packb(row, use_bin_type=True)
