"""Consistency of the blob store: every record has its data, no data lacks a record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.blobs import BlobStore
from ledger.errors import CapError

__all__ = ["BlobAudit", "audit_blobs"]


@dataclass(slots=True, frozen=True)
class BlobAudit:
    """Records checked, records whose data is missing or wrong, and data without a record."""

    checked: int
    bad: tuple[tuple[str, str], ...]  # (blob id, E- code)
    orphans: tuple[tuple[str, str], ...]  # (tier, blob id)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.orphans

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "bad": [{"blob_id": b, "code": c} for b, c in self.bad],
            "orphans": [{"tier": t, "blob_id": b} for t, b in self.orphans],
        }


def audit_blobs(blobs: BlobStore) -> BlobAudit:
    """Re-hash every recorded blob and look for stored data without a record."""
    view = blobs.index
    with blobs.ledger.store.read() as txn:
        records = {i.blob_id: i for i in view.iter_blobs(txn)}
    bad = []
    for blob_id, info in sorted(records.items()):
        try:
            for _ in blobs.chunks(blob_id, info):
                pass
        except CapError as exc:
            bad.append((blob_id, exc.code))
    orphans = []
    for tier in blobs.tiers.values():
        for blob_id, _size in tier.stored():
            found = records.get(blob_id)
            if found is None or found.tier != tier.name:
                orphans.append((tier.name, blob_id))
    return BlobAudit(len(records), tuple(bad), tuple(sorted(orphans)))
