"""SQLite export: the seed's schema as the sqlite3 program sees it, data, determinism."""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess

import pytest
from blake3 import blake3
from nacl.signing import SigningKey

from ledger.blobs import BlobStore
from ledger.errors import CheckFailed
from ledger.keys import Ed25519Keypair
from ledger.registry import Registry
from ledger.registry_entry import V09_FIELDS
from projections.blobs import BlobsView
from projections.registry import RegistryView
from projections.sqlite_export import export_sqlite
from tests.registry_support import package

KEY = Ed25519Keypair("test", SigningKey(bytes(range(32))))
SEED_REGISTRY = [(name, "TEXT") for name in V09_FIELDS]
SEED_BLOBS = [
    ("blob_id", "TEXT"),
    ("size", "INTEGER"),
    ("media_type", "TEXT"),
    ("data", "BLOB"),
    ("refcount", "INTEGER"),
]


@pytest.fixture
def filled(ledger):
    blobs = BlobStore(ledger, BlobsView(ledger.store), inline_max=64)
    reg = Registry(blobs, RegistryView(ledger.store))
    live = [reg.add(package(str(i), wasm_size=30 + 100 * i), KEY)[0] for i in range(3)]
    gone = reg.add(package("gone"), KEY)[0]
    reg.revoke(gone["id"])
    blobs.put(io.BytesIO(b"loose bytes"), "text/plain")
    return ledger, blobs, live, gone


def _sqlite3(path, sql):
    exe = shutil.which("sqlite3")
    assert exe, "the sqlite3 program is missing (make sysdeps installs it)"
    res = subprocess.run([exe, str(path), sql], capture_output=True, text=True, check=True)
    return res.stdout


def test_export_has_the_seed_schema_in_the_sqlite3_program(filled, tmp_path):
    ledger, _blobs, live, gone = filled
    out = tmp_path / "registry.sqlite"
    report = export_sqlite(ledger, out)
    assert report.entries == 3 and report.blobs == 14 and report.data_bytes == 0
    for table, cols in (("registry_entries", SEED_REGISTRY), ("blobs", SEED_BLOBS)):
        info = _sqlite3(out, f"PRAGMA table_info({table});")
        rows = [line.split("|") for line in info.strip().splitlines()]
        assert [(r[1], r[2]) for r in rows] == cols
        assert rows[0][5] == "1"  # the first column is the primary key
    schema = _sqlite3(out, ".schema registry_entries")
    assert "id TEXT PRIMARY KEY" in schema and "public_key TEXT" in schema
    ids = _sqlite3(out, "SELECT id FROM registry_entries ORDER BY id;").split()
    assert ids == sorted(e["id"] for e in live) and gone["id"] not in ids
    row = _sqlite3(out, f"SELECT * FROM registry_entries WHERE id = '{live[0]['id']}';")
    assert row.strip().split("|") == [
        "" if live[0][f] is None else str(live[0][f]) for f in V09_FIELDS
    ]
    assert _sqlite3(out, "SELECT count(*) FROM blobs WHERE data IS NOT NULL;").strip() == "0"
    refs = _sqlite3(out, f"SELECT refcount FROM blobs WHERE blob_id = '{live[1]['blob_wasm']}';")
    assert refs.strip() == "1"


def test_with_data_in_both_tiers(filled, tmp_path):
    ledger, blobs, _live, _ = filled
    out = tmp_path / "data.sqlite"
    report = export_sqlite(ledger, out, with_data=True)
    conn = sqlite3.connect(out)
    rows = conn.execute("SELECT blob_id, size, data FROM blobs").fetchall()
    conn.close()
    assert len(rows) == 14 and report.data_bytes == sum(r[1] for r in rows)
    tiers = {blobs.info(r[0]).tier for r in rows}
    assert tiers == {"lmdb", "fs"}
    for blob_id, size, data in rows:
        assert len(data) == size and blake3(data).hexdigest() == blob_id


def test_same_events_same_file(filled, tmp_path):
    ledger, *_ = filled
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    export_sqlite(ledger, a, with_data=True)
    export_sqlite(ledger, b, with_data=True)
    assert a.read_bytes() == b.read_bytes()


def test_corrupt_blob_aborts_export_without_output(filled, tmp_path):
    ledger, blobs, live, _ = filled
    path = blobs.fs.path(live[2]["blob_wasm"])
    data = bytearray(path.read_bytes())
    data[3] ^= 1
    path.write_bytes(bytes(data))
    out = tmp_path / "x" / "bad.sqlite"
    out.parent.mkdir()
    with pytest.raises(CheckFailed) as info:
        export_sqlite(ledger, out, with_data=True)
    assert info.value.code == "E-HASH-MISMATCH"
    assert list(out.parent.iterdir()) == []
    export_sqlite(ledger, out)  # without data the rows still export
    assert out.exists()


def test_export_cli(cli, tmp_path):
    out = tmp_path / "cli.sqlite"
    res = cli("--json", "projections", "export", "--to", "sqlite", "--output", str(out))
    assert res.code == 0, res.err
    assert res.json()["entries"] == 0 and out.exists()
    assert _sqlite3(out, "SELECT count(*) FROM registry_entries;").strip() == "0"
    bad = cli("projections", "export", "--to", "sqlite", "--output", str(tmp_path / "no/x.db"))
    assert bad.code == 2 and "E-BAD-INPUT" in bad.err
