"""The seed's SQLite data model (registry_entries and blobs), shared by export and upgrade."""

from __future__ import annotations

from ledger.registry_entry import V09_FIELDS

__all__ = [
    "BLOBS_COLUMNS",
    "BLOBS_DDL",
    "REGISTRY_COLUMNS",
    "REGISTRY_DDL",
    "V09_NEW_COLUMNS",
]

REGISTRY_COLUMNS: tuple[tuple[str, str], ...] = tuple((name, "TEXT") for name in V09_FIELDS)
BLOBS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("blob_id", "TEXT"),
    ("size", "INTEGER"),
    ("media_type", "TEXT"),
    ("data", "BLOB"),
    ("refcount", "INTEGER"),
)
# The columns v0.9 added to a legacy registry_entries table (the seed's migration).
V09_NEW_COLUMNS: tuple[str, ...] = (
    "blob_manifest",
    "blob_proof",
    "blob_wasm",
    "blob_abi",
    "selfverify_status",
    "selfverify_at",
    "verifier_name",
    "verifier_version",
)


def _ddl(table: str, columns: tuple[tuple[str, str], ...]) -> str:
    first, *rest = columns
    cols = [f"{first[0]} {first[1]} PRIMARY KEY", *(f"{n} {t}" for n, t in rest)]
    return f"CREATE TABLE {table} (\n  " + ",\n  ".join(cols) + "\n)"


REGISTRY_DDL = _ddl("registry_entries", REGISTRY_COLUMNS)
BLOBS_DDL = _ddl("blobs", BLOBS_COLUMNS)
