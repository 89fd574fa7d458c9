"""Blob garbage collection: remove blobs no live entry references, after a grace period.

One ``blob.gc`` event lists what was removed and the bytes freed. The set is computed in
the event's own write transaction (so it is race-free), rows and LMDB bytes go in that
transaction, files are unlinked after it commits. Interrupted at any point, the store is
left with at worst files that have no record, which the next GC sweeps first; never a
record without its data. The file tier's lock (held exclusively here, shared by puts)
keeps a put's freshly renamed file from being swept before its event commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import lmdb

from ledger.blobs import BLOB_GC, BlobStore
from ledger.errors import BadInput
from ledger.events import Event
from ledger.log import Append

__all__ = ["DEFAULT_MIN_AGE", "TEMP_GRACE", "GcReport", "collect_garbage"]

DEFAULT_MIN_AGE = 3600  # seconds a blob stays after its last put even when unreferenced
TEMP_GRACE = 3600  # seconds before an untouched temporary file counts as a dead put


@dataclass(slots=True, frozen=True)
class GcReport:
    """What a GC run removed (or, dry, would remove)."""

    dry_run: bool
    min_age: int
    cutoff: str
    removed: list[dict[str, Any]]
    bytes_freed: int
    orphans: dict[str, int] = field(default_factory=dict)
    seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "min_age": self.min_age,
            "cutoff": self.cutoff,
            "removed": self.removed,
            "count": len(self.removed),
            "bytes_freed": self.bytes_freed,
            "orphans": self.orphans,
            "seq": self.seq,
        }


def _cutoff(min_age: int) -> str:
    when = datetime.now(UTC) - timedelta(seconds=min_age)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plan(blobs: BlobStore, txn: lmdb.Transaction, cutoff: str) -> dict[str, Any]:
    removed = [
        {"blob_id": info.blob_id, "size": info.size, "tier": info.tier}
        for info in blobs.index.collectable(txn, cutoff)
    ]
    # LMDB bytes whose record is gone or lives in the other tier (the inline limit changed).
    stray = []
    for key, value in txn.cursor(db=blobs.lmdb.db).iternext(keys=True, values=True):
        info = blobs.index.blob(txn, bytes(key).hex())
        if info is None or info.tier != blobs.lmdb.name:
            stray.append({"blob_id": bytes(key).hex(), "size": len(value)})
    return {"removed": removed, "stray": stray}


def _sweep_files(blobs: BlobStore, dry_run: bool) -> dict[str, int]:
    """Files without a record (a put or GC that died between file and commit), and dead
    temporary files. Called with the file tier's lock held exclusively."""
    files = size = temps = temp_bytes = 0
    for blob_id, n in list(blobs.fs.stored()):
        with blobs.ledger.store.read() as txn:
            info = blobs.index.blob(txn, blob_id)
        if info is None or info.tier != blobs.fs.name:
            files += 1
            size += n
            if not dry_run:
                blobs.fs.release(blob_id)
    for path, n in list(blobs.fs.stale_temps(TEMP_GRACE)):
        temps += 1
        temp_bytes += n
        if not dry_run:
            path.unlink(missing_ok=True)
    return {"files": files, "file_bytes": size, "temps": temps, "temp_bytes": temp_bytes}


def collect_garbage(
    blobs: BlobStore,
    *,
    min_age: int = DEFAULT_MIN_AGE,
    dry_run: bool = False,
    actor: str = "system",
    progress: Callable[[int], None] | None = None,
) -> GcReport:
    """Remove unreferenced blobs last put more than ``min_age`` seconds ago.

    ``dry_run`` lists what would go and changes nothing (no event, no file touched).
    """
    if min_age < 0:
        raise BadInput("E-BAD-INPUT", "--min-age must not be negative")
    cutoff = _cutoff(min_age)
    if dry_run:
        with blobs.fs.lock(exclusive=False):
            orphans = _sweep_files(blobs, dry_run=True)
        with blobs.ledger.store.read() as txn:
            plan = _plan(blobs, txn, cutoff)
        removed = plan["removed"]
        return GcReport(True, min_age, cutoff, removed, sum(r["size"] for r in removed), orphans)

    with blobs.fs.lock(exclusive=True):
        orphans = _sweep_files(blobs, dry_run=False)

        def precheck(txn: lmdb.Transaction, payload: dict[str, Any]) -> dict[str, Any]:
            plan = _plan(blobs, txn, payload["cutoff"])
            freed = sum(r["size"] for r in plan["removed"])
            freed += sum(s["size"] for s in plan["stray"])
            return {**payload, **plan, "bytes_freed": freed}

        def side(txn: lmdb.Transaction, event: Event) -> None:
            for r in event.payload["removed"]:
                blobs.tiers[r["tier"]].delete(txn, r["blob_id"])
            for s in event.payload["stray"]:
                blobs.lmdb.delete(txn, s["blob_id"])

        payload = {"min_age": min_age, "cutoff": cutoff, "orphans": orphans}
        event = blobs.ledger.log.append_many(
            [Append(BLOB_GC, payload, actor, precheck=precheck, side=side)]
        )[0]
        for i, r in enumerate(event.payload["removed"], 1):
            blobs.tiers[r["tier"]].release(r["blob_id"])
            if progress is not None:
                progress(i)
    p = event.payload
    return GcReport(False, min_age, cutoff, p["removed"], p["bytes_freed"], orphans, event.seq)
