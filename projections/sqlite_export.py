"""``projections export --to sqlite``: the seed's two tables for the tools people have.

Rows are streamed from one LMDB snapshot into a temporary SQLite file that is renamed over
the output only when complete. ``with_data`` streams each blob's bytes, re-hashed on the
way, into ``blobs.data`` through SQLite's incremental blob I/O, so memory stays bounded.
Revoked entries are left out (the seed's table has no column to say so); ``selfverify_*``
are the current values. Same events give a byte-identical file (same SQLite library).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.blobs import BlobStore
from ledger.errors import BadInput, EnvironmentProblem
from ledger.ledger import Ledger
from ledger.outfile import output_file
from ledger.sqlite_schema import BLOBS_COLUMNS, BLOBS_DDL, REGISTRY_COLUMNS, REGISTRY_DDL
from projections.blobs import BlobsView
from projections.registry import RegistryView

__all__ = ["ExportReport", "export_sqlite"]

_BATCH = 1000


@dataclass(slots=True, frozen=True)
class ExportReport:
    output: str
    entries: int
    blobs: int
    data_bytes: int
    data_skipped: tuple[str, ...]
    head: int

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "entries": self.entries,
            "blobs": self.blobs,
            "data_bytes": self.data_bytes,
            "data_skipped": list(self.data_skipped),
            "as_of": self.head,
        }


def _batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def export_sqlite(
    ledger: Ledger,
    output: Path,
    *,
    with_data: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportReport:
    """Write ``registry_entries`` and ``blobs`` to ``output`` (replaced atomically)."""
    output = Path(output)
    if not output.parent.is_dir():
        raise BadInput("E-BAD-INPUT", f"output directory {output.parent} does not exist")
    try:
        with output_file(output) as temp:
            n_entries, n_blobs, data_bytes, skipped, head = _write(
                temp, ledger, with_data, progress
            )
    except sqlite3.Error as exc:
        raise EnvironmentProblem("E-STORAGE", f"cannot write {output}: {exc}") from None
    except OSError as exc:
        raise EnvironmentProblem("E-STORAGE", f"cannot write {output}: {exc.strerror}") from None
    return ExportReport(str(output), n_entries, n_blobs, data_bytes, tuple(skipped), head)


def _write(
    temp: Path, ledger: Ledger, with_data: bool, progress: Callable[[int], None] | None
) -> tuple[int, int, int, list[str], int]:
    store = ledger.store
    registry, blobs_view = RegistryView(store), BlobsView(store)
    blob_store = BlobStore(ledger, blobs_view)
    reg_cols = [n for n, _ in REGISTRY_COLUMNS]
    blob_cols = ", ".join(n for n, _ in BLOBS_COLUMNS)
    done = 0
    conn = sqlite3.connect(temp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        max_len = conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        conn.execute("BEGIN")
        conn.execute(REGISTRY_DDL)
        conn.execute(BLOBS_DDL)
        with store.read() as txn:
            head = ledger.log.head_in(txn).seq
            entries = (
                tuple(row.get(n) for n in reg_cols)
                for row in registry.iter_rows(txn)
                if not row.get("revoked")
            )
            n_entries = 0
            marks = ", ".join("?" * len(reg_cols))
            for batch in _batches(entries):
                conn.executemany(f"INSERT INTO registry_entries VALUES ({marks})", batch)
                n_entries += len(batch)
                done += len(batch)
                if progress is not None:
                    progress(done)
            n_blobs = data_bytes = 0
            skipped: list[str] = []
            for info in blobs_view.iter_blobs(txn):
                store_data = with_data and info.size <= max_len
                if with_data and not store_data:
                    skipped.append(info.blob_id)
                cur = conn.execute(
                    f"INSERT INTO blobs ({blob_cols}) VALUES (?, ?, ?, ?, ?)",
                    (
                        info.blob_id,
                        info.size,
                        info.media_type,
                        None,
                        info.refcount,
                    ),
                )
                if store_data:
                    conn.execute(
                        "UPDATE blobs SET data = zeroblob(?) WHERE rowid = ?",
                        (info.size, cur.lastrowid),
                    )
                    with conn.blobopen("blobs", "data", cur.lastrowid or 0) as blob:
                        for chunk in blob_store.chunks(info.blob_id, info):
                            blob.write(chunk)
                    data_bytes += info.size
                n_blobs += 1
                done += 1
                if progress is not None:
                    progress(done)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return n_entries, n_blobs, data_bytes, skipped, head
