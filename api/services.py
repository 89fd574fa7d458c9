"""Wiring shared by the doors (CLI, HTTP): write-side services with their read-side indexes."""

from __future__ import annotations

from ledger.blobs import BlobStore
from ledger.ledger import Ledger
from ledger.registry import Registry
from projections.blobs import BlobsView
from projections.registry import RegistryView

__all__ = ["blob_store", "registry"]


def blob_store(ledger: Ledger) -> BlobStore:
    """The blob store of ``ledger``, validating against the blobs projection."""
    return BlobStore(ledger, BlobsView(ledger.store))


def registry(ledger: Ledger) -> Registry:
    """Registry commands of ``ledger``, validating against the registry projection."""
    return Registry(blob_store(ledger), RegistryView(ledger.store))
