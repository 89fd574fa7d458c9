"""registry migrate: import a legacy SQLite registry (twice), and the seed's file upgrade."""

from __future__ import annotations

import sqlite3

import pytest

from ledger.blobs import BlobStore
from ledger.errors import BadInput
from ledger.registry import Registry
from ledger.registry_import import import_sqlite
from ledger.sqlite_schema import V09_NEW_COLUMNS
from ledger.sqlite_upgrade import upgrade_sqlite
from projections.blobs import BlobsView
from projections.rebuild import dump_tables, rebuild
from projections.registry import RegistryView

NEW = list(V09_NEW_COLUMNS)  # the seed's --add-columns list


@pytest.fixture
def reg(ledger):
    return Registry(BlobStore(ledger, BlobsView(ledger.store)), RegistryView(ledger.store))


def _legacy(path, rows, columns="id TEXT PRIMARY KEY, created_at TEXT, manifest_hash TEXT, "
            "proof_hash TEXT, signature TEXT, public_key TEXT"):  # fmt: skip
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE registry_entries ({columns})")
    for row in rows:
        marks = ", ".join("?" * len(row))
        conn.execute(f"INSERT INTO registry_entries ({', '.join(row)}) VALUES ({marks})",
                     tuple(row.values()))  # fmt: skip
    conn.commit()
    conn.close()
    return path


def _show(reg, entry_id):
    with reg.ledger.store.read() as txn:
        return reg.entries.get_entry(txn, entry_id)


def test_import_twice_imports_once(reg, ledger, tmp_path):
    rows = [
        {
            "id": f"legacy-{i}",
            "created_at": "2024-01-01T00:00:00Z",
            "manifest_hash": "ab" * 32,
            "signature": "c2ln",
            "public_key": "cGs=",
        }
        for i in range(1200)
    ]
    path = _legacy(tmp_path / "old.sqlite", rows)
    seen = []
    first = import_sqlite(reg, path, actor="migrator", progress=seen.append)
    assert (first.read, first.imported, first.skipped_existing) == (1200, 1200, 0)
    assert seen and seen[-1] == 1200
    assert first.last_seq - first.first_seq == 1199
    head = ledger.log.head().seq
    second = import_sqlite(reg, path)
    assert (second.read, second.imported, second.skipped_existing) == (1200, 0, 1200)
    assert ledger.log.head().seq == head
    entry = _show(reg, "legacy-7")
    assert entry["selfverify_status"] == "unknown" and entry["source"] == "import"
    assert entry["manifest_hash"] == "ab" * 32 and entry["blob_wasm"] is None
    types = {e.type for e in ledger.log.events(after=0)}
    assert types == {"registry.import"}


def test_extra_missing_and_bad_columns(reg, ledger, tmp_path):
    path = _legacy(
        tmp_path / "odd.sqlite",
        [
            {"id": "a", "note": "hello", "score": 1.5, "raw": b"\x01\x02"},
            {"id": 42},
            {"id": None},
            {"id": "bad\nid"},
            {"id": "a"},
        ],
        columns="id, note TEXT, score REAL, raw BLOB, selfverify_status TEXT",
    )
    report = import_sqlite(reg, path)
    assert (report.read, report.imported) == (5, 2)
    assert (report.skipped_invalid, report.skipped_existing) == (2, 1)
    ev = next(e for e in ledger.log.events() if e.type == "registry.import")
    assert ev.payload["legacy"] == {"note": "hello", "score": "1.5", "raw": "0102"}
    assert _show(reg, "42")["created_at"] is None


def test_import_of_an_upgraded_file_and_rebuild(reg, ledger, tmp_path):
    path = _legacy(tmp_path / "r.sqlite", [{"id": "x", "created_at": "2024-02-02T00:00:00Z"}])
    upgrade_sqlite(path, path, NEW)
    assert import_sqlite(reg, path).imported == 1
    before = list(dump_tables(ledger))
    rebuild(ledger)
    assert list(dump_tables(ledger)) == before


@pytest.mark.parametrize(
    "content,why",
    [(None, "no such"), (b"not sqlite at all" * 100, "not a readable"), (b"", "no registry")],
)
def test_bad_files(reg, tmp_path, content, why):
    path = tmp_path / "bad.sqlite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput) as info:
        import_sqlite(reg, path)
    assert info.value.code == "E-BAD-INPUT" and why in info.value.message


def test_upgrade_adds_columns_once(tmp_path):
    src = _legacy(tmp_path / "r.sqlite", [{"id": "x"}])
    out = tmp_path / "out.sqlite"
    first = upgrade_sqlite(src, out, NEW)
    assert first["added"] == NEW and first["blobs_table_created"]
    conn = sqlite3.connect(out)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(registry_entries)")]
    status = conn.execute("SELECT selfverify_status FROM registry_entries").fetchone()[0]
    blob_cols = [r[1] for r in conn.execute("PRAGMA table_info(blobs)")]
    conn.close()
    assert cols[-8:] == NEW and status == "unknown"
    assert blob_cols == ["blob_id", "size", "media_type", "data", "refcount"]
    again = upgrade_sqlite(out, out, NEW)
    assert again["added"] == [] and again["already_present"] == NEW
    assert not again["blobs_table_created"]
    with pytest.raises(BadInput):
        upgrade_sqlite(src, out, ["blob_wasm", "nonsense"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sqlite", "r.sqlite"]


def test_migrate_cli(cli, tmp_path):
    path = _legacy(tmp_path / "old.sqlite", [{"id": "one"}, {"id": "two"}])
    first = cli("--json", "registry", "migrate", "--from", "sqlite", "--input", str(path))
    assert first.code == 0, first.err
    assert first.json()["imported"] == 2
    second = cli("registry", "migrate", "--from", "sqlite", "--input", str(path))
    assert second.code == 0 and "imported 0" in second.out and "skipped 2" in second.out
    up = cli(
        "--json", "registry", "migrate", "--from", "sqlite", "--input", str(path), "--to",
        "sqlite", "--output", str(path), "--add-columns", ",".join(NEW),
    )  # fmt: skip
    assert up.code == 0 and up.json()["added"] == NEW
    bad = cli("registry", "migrate", "--from", "sqlite", "--input", str(path), "--to", "sqlite")
    assert bad.code == 2 and "E-BAD-INPUT" in bad.err
