"""``registry migrate --from sqlite``: import a legacy registry as ``registry.import`` events.

The legacy file is the seed's ``registry_entries`` table, usually without the v0.9 columns;
missing optional columns read as null, extra columns are kept in the event under
``legacy``. Every imported entry has ``selfverify_status`` unknown. An id already in the
registry is skipped (checked again inside the write transaction), so importing the same
file twice imports nothing twice.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import BadInput, Conflict
from ledger.log import Append
from ledger.registry import REGISTRY_IMPORT, Registry
from ledger.registry_entry import V09_FIELDS

__all__ = ["IMPORT_BATCH", "ImportReport", "import_sqlite", "open_legacy"]

IMPORT_BATCH = 500
_ID = re.compile(r"^[\x20-\x7e]{1,256}$")


@dataclass(slots=True)
class ImportReport:
    read: int = 0
    imported: int = 0
    skipped_existing: int = 0
    skipped_invalid: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    invalid: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "imported": self.imported,
            "skipped_existing": self.skipped_existing,
            "skipped_invalid": self.skipped_invalid,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "invalid": self.invalid[:20],
        }


def open_legacy(path: Path) -> sqlite3.Connection:
    """Open a SQLite file read-only; ``E-BAD-INPUT`` when it is missing or not SQLite."""
    if not Path(path).is_file():
        raise BadInput("E-BAD-INPUT", f"no such SQLite file: {path}")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BadInput("E-BAD-INPUT", f"{path} is not a readable SQLite file: {exc}") from None
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _entry(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """The v0.9 entry and the extra columns of a legacy row, or why it is invalid."""
    entry_id = row.get("id")
    if isinstance(entry_id, int) and not isinstance(entry_id, bool):
        entry_id = str(entry_id)
    if not isinstance(entry_id, str) or not _ID.match(entry_id):
        return f"row with id {entry_id!r}: id must be 1-256 printable ASCII characters"
    entry: dict[str, Any] = {}
    for name in V09_FIELDS:
        value = row.get(name)
        entry[name] = None if value is None else str(_json_safe(value))
    entry["id"] = entry_id
    entry["selfverify_status"] = "unknown"
    entry["selfverify_at"] = None
    extra = {k: _json_safe(v) for k, v in row.items() if k not in V09_FIELDS}
    return entry, extra


def _legacy_rows(conn: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "registry_entries" not in tables:
        raise BadInput("E-BAD-INPUT", "the SQLite file has no registry_entries table")
    cols = _columns(conn, "registry_entries")
    if "id" not in cols:
        raise BadInput("E-BAD-INPUT", "registry_entries has no id column")
    cur = conn.execute("SELECT * FROM registry_entries ORDER BY rowid")
    names = [d[0] for d in cur.description]
    while rows := cur.fetchmany(IMPORT_BATCH):
        for r in rows:
            yield dict(zip(names, r, strict=True))


def import_sqlite(
    registry: Registry,
    path: Path,
    *,
    actor: str = "system",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import every legacy row not yet in the registry; returns the counts."""
    conn = open_legacy(path)
    report = ImportReport()
    source = {"format": "sqlite", "file": Path(path).name}

    def precheck(txn: Any, payload: dict[str, Any]) -> dict[str, Any]:
        if registry.entries.row(txn, payload["entry"]["id"]) is not None:
            raise Conflict("E-CONFLICT", f"entry {payload['entry']['id']} already exists")
        return payload

    def flush(batch: list[Append]) -> None:
        try:
            events = registry.ledger.log.append_many(batch) if batch else []
        except Conflict:  # another writer imported some of them meanwhile: one by one
            events = []
            for item in batch:
                try:
                    events += registry.ledger.log.append_many([item])
                except Conflict:
                    report.skipped_existing += 1
        for ev in events:
            report.imported += 1
            report.first_seq = ev.seq if report.first_seq is None else report.first_seq
            report.last_seq = ev.seq

    try:
        seen: set[str] = set()
        batch: list[Append] = []
        for row in _legacy_rows(conn):
            report.read += 1
            parsed = _entry(row)
            if isinstance(parsed, str):
                report.skipped_invalid += 1
                report.invalid.append(parsed)
                continue
            entry, extra = parsed
            with registry.ledger.store.read() as txn:
                exists = registry.entries.row(txn, entry["id"]) is not None
            if exists or entry["id"] in seen:
                report.skipped_existing += 1
                continue
            seen.add(entry["id"])
            payload = {"entry": entry, "legacy": extra, "source": source}
            batch.append(Append(REGISTRY_IMPORT, payload, actor, precheck=precheck))
            if len(batch) >= IMPORT_BATCH:
                flush(batch)
                batch = []
            if progress is not None:
                progress(report.read)
        flush(batch)
    except sqlite3.DatabaseError as exc:
        raise BadInput("E-BAD-INPUT", f"{path}: cannot read registry_entries: {exc}") from None
    finally:
        conn.close()
    return report
