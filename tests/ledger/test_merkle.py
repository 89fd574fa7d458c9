"""RFC 6962 Merkle tree hash: streaming root and audit paths against the recursive definition."""

from __future__ import annotations

import pytest
from blake3 import blake3
from hypothesis import given
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    MerkleBuilder,
    audit_path,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_path,
    root_of_leaf_hashes,
)

leaves_st = st.lists(st.binary(max_size=8), min_size=0, max_size=40)


def mth(d: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC states it (the test's reference)."""
    if not d:
        return blake3(b"").digest()
    if len(d) == 1:
        return blake3(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < len(d):
        k *= 2
    return blake3(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def test_domain_separation_and_empty_root():
    assert blake3(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"ab") == blake3(b"\x00ab").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == blake3(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    # A leaf never collides with an inner node of the same bytes.
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


@given(leaves_st)
def test_streaming_root_equals_recursive_definition(leaves):
    b = MerkleBuilder()
    for x in leaves:
        b.add(x)
    assert len(b) == len(leaves)
    assert b.root() == mth(leaves) == merkle_root(leaves)
    assert root_of_leaf_hashes([leaf_hash(x) for x in leaves]) == mth(leaves)


@given(leaves_st.filter(bool), st.data())
def test_audit_path_proves_inclusion(leaves, data):
    i = data.draw(st.integers(0, len(leaves) - 1))
    path = audit_path(leaves, i)
    root = mth(leaves)
    assert root_from_path(leaves[i], i, len(leaves), path) == root
    # Another leaf's data, or the wrong position, does not reproduce the root.
    assert root_from_path(leaves[i] + b"x", i, len(leaves), path) != root
    if len(leaves) > 1:
        j = (i + 1) % len(leaves)
        if leaves[j] != leaves[i]:
            assert root_from_path(leaves[j], i, len(leaves), path) != root


def test_audit_path_shape_errors():
    leaves = [bytes([i]) for i in range(5)]
    with pytest.raises(IndexError):
        audit_path(leaves, 5)
    path = audit_path(leaves, 4)
    assert len(path) == 1  # leaf 4 of 5 hangs directly under the root
    with pytest.raises(ValueError):
        root_from_path(leaves[0], 0, 5, path)
    with pytest.raises(ValueError):
        root_from_path(leaves[0], 5, 5, path)
