"""The seed's own migration: add the v0.9 columns to a SQLite registry file.

``registry migrate --from sqlite --input R --to sqlite --output OUT --add-columns ...``
copies R (SQLite's backup API) to a temporary file next to OUT, adds each requested column
that is missing (TEXT; ``selfverify_status`` defaults to ``unknown``), creates the seed's
``blobs`` table if absent, and renames the result over OUT. Input and output may be the
same file; running it twice changes nothing the second time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger.errors import BadInput, EnvironmentProblem
from ledger.outfile import output_file
from ledger.registry_entry import V09_FIELDS
from ledger.registry_import import open_legacy
from ledger.sqlite_schema import BLOBS_DDL

__all__ = ["upgrade_sqlite"]


def upgrade_sqlite(source: Path, output: Path, add_columns: Sequence[str]) -> dict[str, Any]:
    """Upgrade ``source`` into ``output``; returns which columns were added."""
    wanted = [c.strip() for c in add_columns if c.strip()]
    if not wanted:
        raise BadInput("E-BAD-INPUT", "--add-columns names no column")
    unknown = [c for c in wanted if c not in V09_FIELDS]
    if unknown:
        raise BadInput("E-BAD-INPUT", f"not v0.9 registry columns: {', '.join(unknown)}")
    output = Path(output)
    if not output.parent.is_dir():
        raise BadInput("E-BAD-INPUT", f"output directory {output.parent} does not exist")
    src = open_legacy(source)
    try:
        with output_file(output) as temp:
            added, created = _upgrade_copy(src, temp, source, wanted)
    except sqlite3.Error as exc:
        raise EnvironmentProblem("E-STORAGE", f"cannot upgrade into {output}: {exc}") from None
    finally:
        src.close()
    return {
        "input": str(source),
        "output": str(output),
        "added": added,
        "already_present": [c for c in wanted if c not in added],
        "blobs_table_created": created,
    }


def _upgrade_copy(
    src: sqlite3.Connection, temp: Path, source: Path, wanted: list[str]
) -> tuple[list[str], bool]:
    dst = sqlite3.connect(temp)
    try:
        src.backup(dst)
        tables = {r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "registry_entries" not in tables:
            raise BadInput("E-BAD-INPUT", f"{source} has no registry_entries table")
        have = {r[1] for r in dst.execute("PRAGMA table_info(registry_entries)")}
        added = []
        for col in wanted:
            if col in have:
                continue
            default = " DEFAULT 'unknown'" if col == "selfverify_status" else ""
            dst.execute(f"ALTER TABLE registry_entries ADD COLUMN {col} TEXT{default}")
            added.append(col)
        created = "blobs" not in tables
        if created:
            dst.execute(BLOBS_DDL)
        dst.commit()
    finally:
        dst.close()
    return added, created
