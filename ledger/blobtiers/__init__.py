"""Blob tiers: where a blob's bytes live (one module per backend, one interface in base)."""

from __future__ import annotations

from ledger.blobtiers.base import CHUNK, BlobTier, Staged
from ledger.blobtiers.fs_tier import FsTier
from ledger.blobtiers.lmdb_tier import LmdbTier

__all__ = ["CHUNK", "BlobTier", "FsTier", "LmdbTier", "Staged"]
