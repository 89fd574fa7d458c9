"""RFC 6962 Merkle tree hash with BLAKE3: roots, streaming roots and audit paths.

``leaf = BLAKE3(0x00 || data)`` and ``node = BLAKE3(0x01 || left || right)``; a tree of ``n``
leaves splits at the largest power of two below ``n`` (RFC 6962, section 2.1). The empty
tree's root is ``BLAKE3("")``. Used by TCAP capsules (``merkle.root``) and inclusion proofs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from blake3 import blake3

__all__ = [
    "EMPTY_ROOT",
    "MerkleBuilder",
    "audit_path",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "root_from_path",
    "root_of_leaf_hashes",
]

EMPTY_ROOT = blake3(b"").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """Hash of one leaf (domain-separated from inner nodes by the 0x00 prefix)."""
    return blake3(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an inner node over its two children's hashes."""
    return blake3(_NODE + left + right).digest()


class MerkleBuilder:
    """The root of a stream of leaves in O(log n) memory: a stack of perfect subtrees."""

    __slots__ = ("_count", "_stack")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (size, hash) of perfect subtrees
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, data: bytes) -> None:
        """Append one leaf's data (not its hash)."""
        self.add_hash(blake3(_LEAF + data).digest())

    def add_hash(self, h: bytes) -> None:
        """Append a leaf already hashed with :func:`leaf_hash`."""
        stack = self._stack
        size = 1
        while stack and stack[-1][0] == size:
            h = blake3(_NODE + stack.pop()[1] + h).digest()
            size *= 2
        stack.append((size, h))
        self._count += 1

    def root(self) -> bytes:
        """RFC 6962 root of the leaves added so far: the stack folded from the right."""
        if not self._stack:
            return EMPTY_ROOT
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h


def root_of_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """RFC 6962 root from leaf hashes, level by level (an odd last node moves up as is,
    which yields the same tree as the RFC's split at the largest power of two)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        nxt = [
            blake3(_NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """RFC 6962 ``MTH`` over leaf data."""
    b = MerkleBuilder()
    for leaf in leaves:
        b.add(leaf)
    return b.root()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree(hashes: Sequence[bytes]) -> bytes:
    b = MerkleBuilder()
    for h in hashes:
        b.add_hash(h)
    return b.root()


def audit_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 audit path (``PATH(m, D[n])``) of leaf ``index``, nearest sibling first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} out of range for {len(leaves)} leaves")
    hashes = [leaf_hash(x) for x in leaves]
    path: list[bytes] = []
    lo, hi, m = 0, len(hashes), index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m - lo < k:
            path.append(_subtree(hashes[lo + k : hi]))
            hi = lo + k
        else:
            path.append(_subtree(hashes[lo : lo + k]))
            lo += k
    path.reverse()
    return path


def root_from_path(data: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root implied by leaf ``data`` at ``index`` of a tree of ``size`` leaves and its
    audit path; compare it with a trusted root to check inclusion. ``ValueError`` when the
    path's length does not fit ``index`` and ``size``."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} out of range for a tree of {size} leaves")
    # Walk down to find, level by level, whether the leaf sits left or right.
    sides: list[bool] = []  # True when the sibling is on the right
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            sides.append(True)
            hi = lo + k
        else:
            sides.append(False)
            lo += k
    if len(sides) != len(path):
        raise ValueError(f"audit path has {len(path)} hashes, expected {len(sides)}")
    h = leaf_hash(data)
    for sibling, right in zip(path, reversed(sides), strict=True):
        h = node_hash(h, sibling) if right else node_hash(sibling, h)
    return h
