"""The interface every blob tier implements, and the staged blob handed between them.

A put runs in three steps: the bytes are *staged* (hashed while streamed, kept in memory
when small, in a temporary file when large), *persisted* by the tier before the event is
appended (a file tier renames its fsynced temporary file into place), then *written* in the
event's own transaction (the LMDB tier stores the bytes there). Deletion mirrors it: rows and
LMDB bytes go in the ``blob.gc`` transaction, files are released after it commits, so a
crash can leave a file without a record (swept later) but never a record without data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lmdb

__all__ = ["CHUNK", "BlobTier", "Staged"]

CHUNK = 1 << 20  # streaming unit: memory stays bounded by a few of these


@dataclass(slots=True, frozen=True)
class Staged:
    """A blob hashed and held ready: ``data`` for the LMDB tier, ``temp`` for the file tier."""

    blob_id: str
    sha3_256: str
    size: int
    tier: str
    data: bytes | None = None
    temp: Path | None = None


class BlobTier(ABC):
    """One place blob bytes can live, addressed by blob id (BLAKE3 hex)."""

    name: ClassVar[str]

    @abstractmethod
    def persist(self, staged: Staged) -> None:
        """Make the staged bytes durable before the ``blob.put`` event is appended."""

    @abstractmethod
    def write(self, txn: lmdb.Transaction, staged: Staged) -> None:
        """Store what belongs in the ``blob.put`` transaction itself."""

    @abstractmethod
    def chunks(self, blob_id: str) -> Iterator[bytes]:
        """The stored bytes in order; ``None``-free, raises ``E-BLOB-MISSING`` if absent."""

    @abstractmethod
    def delete(self, txn: lmdb.Transaction, blob_id: str) -> None:
        """Remove what lives in the store, inside the ``blob.gc`` transaction."""

    @abstractmethod
    def release(self, blob_id: str) -> int:
        """Remove what lives outside the store, after ``blob.gc`` committed; bytes freed."""

    @abstractmethod
    def stored(self) -> Iterator[tuple[str, int]]:
        """Every stored ``(blob_id, size)``, to find data without a record."""

    @abstractmethod
    def discard(self, staged: Staged) -> None:
        """Drop a staged blob that will not be appended (failure, or a dry run)."""
