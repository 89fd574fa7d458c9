"""Registry v0.9: add, refcounts through revoke and GC, verify, tampering, as-of views."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from blake3 import blake3
from nacl.signing import SigningKey

from ledger.blob_gc import collect_garbage
from ledger.blobs import BlobStore
from ledger.canonical import packb, unpackb
from ledger.errors import BadInput, CheckFailed, Conflict, NotFound
from ledger.keys import Ed25519Keypair
from ledger.registry import Package, Registry
from ledger.registry_entry import V09_FIELDS, core_hash
from projections.blobs import BlobsView
from projections.rebuild import dump_tables, rebuild
from projections.registry import RegistryView
from tests.registry_support import package

KEY = Ed25519Keypair("test", SigningKey(bytes(range(32))))


@pytest.fixture
def blobs(ledger):
    return BlobStore(ledger, BlobsView(ledger.store), inline_max=64)


@pytest.fixture
def reg(blobs):
    return Registry(blobs, RegistryView(blobs.ledger.store))


def _refcounts(blobs):
    with blobs.ledger.store.read() as txn:
        return {b.blob_id: b.refcount for b in blobs.index.iter_blobs(txn)}


def _show(reg, entry_id, as_of=None):
    with reg.ledger.store.read() as txn:
        return reg.entries.get_entry(txn, entry_id, as_of)


def test_add_records_every_v09_field(ledger, reg):
    entry, event = reg.add(package("a", wasm_size=200), KEY, actor="tester")
    assert list(entry) == list(V09_FIELDS)
    wasm = b"\0asm\x01\0\0\0" + b"a".ljust(200, b"\0")
    assert entry["blob_wasm"] == blake3(wasm).hexdigest()
    manifest = package("a").manifest.read()
    assert entry["manifest_hash"] == hashlib.sha3_256(manifest).hexdigest()
    assert entry["blob_manifest"] == blake3(manifest).hexdigest()
    abi = package("a").abi.read()
    assert entry["blob_abi"] == hashlib.sha3_256(abi).hexdigest()
    assert (entry["verifier_name"], entry["verifier_version"]) == ("age-check", "1.0")
    assert entry["selfverify_status"] == "unknown" and entry["selfverify_at"] is None
    assert entry["id"] == core_hash(entry)
    assert base64.b64decode(entry["public_key"]) == KEY.public_key
    types = [e.type for e in ledger.log.events()][1:]
    assert types == ["blob.put"] * 4 + ["registry.add"]
    assert event.payload["entry"] == entry
    shown = _show(reg, entry["id"])
    assert {k: shown[k] for k in V09_FIELDS} == entry
    assert shown["revoked"] is False and shown["source"] == "add" and shown["seq"] == 5
    report = reg.verify(entry["id"])
    assert report["ok"] and [b["part"] for b in report["blobs"]] == [
        "wasm",
        "abi",
        "manifest",
        "proof",
    ]


def test_refcounts_through_add_revoke_and_gc(reg, blobs):
    a, _ = reg.add(package("a"), KEY)
    b, _ = reg.add(package("a"), KEY)  # same files: same blobs, a second entry
    assert a["id"] != b["id"]
    counts = _refcounts(blobs)
    assert len(counts) == 4 and set(counts.values()) == {2}
    assert collect_garbage(blobs, min_age=0).removed == []

    reg.revoke(a["id"], reason="superseded")
    assert set(_refcounts(blobs).values()) == {1}
    assert collect_garbage(blobs, min_age=0).removed == []
    assert _show(reg, a["id"])["revoked"] is True
    assert _show(reg, a["id"])["revoke_reason"] == "superseded"

    reg.revoke(b["id"])
    assert set(_refcounts(blobs).values()) == {0}
    assert collect_garbage(blobs, min_age=3600).removed == []  # grace period
    removed = collect_garbage(blobs, min_age=0).removed
    assert len(removed) == 4 and _refcounts(blobs) == {}
    with pytest.raises(CheckFailed) as info:
        reg.verify(b["id"])
    assert info.value.code == "E-BLOB-MISSING"


def test_shared_blob_counts_once_per_entry(reg, blobs):
    a, _ = reg.add(package("a"), KEY)
    c, _ = reg.add(package("c"), KEY)  # same ABI file as "a", other manifest/proof/wasm
    assert a["blob_abi"] == c["blob_abi"]
    with blobs.ledger.store.read() as txn:
        abi = blobs.index.by_sha3(txn, a["blob_abi"])
    assert abi.refcount == 2 and abi.puts == 2
    reg.revoke(c["id"])
    assert blobs.info(abi.blob_id).refcount == 1


def test_revoke_unknown_and_twice(reg, ledger):
    with pytest.raises(NotFound) as info:
        reg.revoke("nope")
    assert info.value.code == "E-NOT-FOUND"
    entry, _ = reg.add(package(), KEY)
    reg.revoke(entry["id"])
    head = ledger.log.head().seq
    with pytest.raises(Conflict):
        reg.revoke(entry["id"])
    assert ledger.log.head().seq == head


def _tamper(reg, entry_id, **changes):
    db = reg.entries.db
    with reg.ledger.store.write() as txn:
        row = unpackb(bytes(txn.get(entry_id.encode(), db=db)))
        row.update(changes)
        txn.put(entry_id.encode(), packb(row), db=db)


@pytest.mark.parametrize(
    "changes",
    [
        {"verifier_version": "9.9"},
        {"created_at": "2020-01-01T00:00:00.000000Z"},
        {"signature": base64.b64encode(bytes(64)).decode()},
        {"public_key": base64.b64encode(bytes(SigningKey(bytes(32)).verify_key)).decode()},
        {"signature": "not base64!"},
        {"signature": None},
    ],
)
def test_tampered_entry_fails_verify(reg, changes):
    entry, _ = reg.add(package(), KEY)
    _tamper(reg, entry["id"], **changes)
    with pytest.raises(CheckFailed) as info:
        reg.verify(entry["id"])
    assert info.value.code == "E-SIGNATURE-INVALID"


def test_resigned_with_other_key_but_same_id_fails(reg):
    """A forger who re-signs the core with another key must also change public_key, which
    changes the core hash, so the id no longer matches."""
    entry, _ = reg.add(package(), KEY)
    other = Ed25519Keypair("other", SigningKey(bytes([7]) * 32))
    forged_sig = base64.b64encode(other.sign(bytes.fromhex(entry["id"]))).decode()
    _tamper(
        reg,
        entry["id"],
        signature=forged_sig,
        public_key=base64.b64encode(other.public_key).decode(),
    )
    with pytest.raises(CheckFailed) as info:
        reg.verify(entry["id"])
    assert info.value.code == "E-SIGNATURE-INVALID" and "id" in info.value.message


@pytest.mark.parametrize("part", ["manifest", "abi"])
def test_flipped_blob_under_entry_fails_verify(reg, blobs, part):
    entry, _ = reg.add(package(), KEY)
    field = {"manifest": "blob_manifest"}.get(part)
    with blobs.ledger.store.read() as txn:
        info = (
            blobs.index.blob(txn, entry[field])
            if field
            else blobs.index.by_sha3(txn, entry["blob_abi"])
        )
    assert info.tier == "lmdb"
    key = bytes.fromhex(info.blob_id)
    with blobs.ledger.store.write() as txn:
        data = bytearray(txn.get(key, db=blobs.lmdb.db))
        data[-1] ^= 0x20
        txn.put(key, bytes(data), db=blobs.lmdb.db)
    with pytest.raises(CheckFailed) as exc:
        reg.verify(entry["id"])
    assert exc.value.code == "E-HASH-MISMATCH"


def test_missing_wasm_file_fails_verify(reg, blobs):
    entry, _ = reg.add(package(wasm_size=500), KEY)
    assert blobs.info(entry["blob_wasm"]).tier == "fs"
    blobs.fs.path(entry["blob_wasm"]).unlink()
    with pytest.raises(CheckFailed) as exc:
        reg.verify(entry["id"])
    assert exc.value.code == "E-BLOB-MISSING"


def test_bad_abi_appends_nothing(reg, ledger):
    bad = Package(
        manifest=io.BytesIO(b"{}"),
        proof=io.BytesIO(b"p"),
        wasm=io.BytesIO(b"\0asm"),
        abi=io.BytesIO(b'{"abi": "other/2", "name": "x", "version": "1"}'),
    )
    with pytest.raises(CheckFailed) as info:
        reg.add(bad, KEY)
    assert info.value.code == "E-ABI-INVALID"
    assert ledger.log.head().seq == 0
    assert list(reg.blobs.fs.stored()) == []


def test_selfverify_callable_is_signed_and_exec_results_apply(reg):
    seen = {}

    def selfverify(wasm, abi, manifest, proof):
        seen.update(wasm=wasm, abi=abi, manifest=manifest, proof=proof)
        return {
            "status": "ok",
            "code": None,
            "fuel_used": 1234,
            "duration_us": 56,
            "log": ["hello"],
            "engine": {"name": "wasmtime"},
            "at": "2026-01-02T03:04:05.000006Z",
        }

    entry, _ = reg.add(package(), KEY, selfverify=selfverify)
    assert seen["proof"] == b"proof-bytes:a" and seen["wasm"].startswith(b"\0asm")
    assert entry["selfverify_status"] == "ok"
    assert entry["selfverify_at"] == "2026-01-02T03:04:05.000006Z"
    shown = _show(reg, entry["id"])
    assert shown["fuel_used"] == 1234 and shown["selfverify_code"] is None
    # A later run (registry exec) updates the row; the signature still verifies.
    ev = reg.record_selfverify(
        entry["id"],
        {
            "status": "fail",
            "code": "E-SANDBOX-OUT-OF-FUEL",
            "fuel_used": 10,
            "duration_us": 1,
            "log": [],
            "engine": {},
            "at": "2026-02-02T00:00:00Z",
        },
    )
    shown = _show(reg, entry["id"])
    assert (shown["selfverify_status"], shown["selfverify_code"]) == (
        "fail",
        "E-SANDBOX-OUT-OF-FUEL",
    )
    assert shown["updated_seq"] == ev.seq
    assert reg.verify(entry["id"])["ok"]
    with pytest.raises(BadInput):
        reg.record_selfverify(entry["id"], {"status": "maybe", "at": "x"})
    with pytest.raises(NotFound):
        reg.record_selfverify("nope", {"status": "ok", "at": "2026-02-02T00:00:00Z"})


def test_as_of_views(reg, ledger):
    a, ev_a = reg.add(package("a"), KEY)
    b, ev_b = reg.add(package("b", name="other"), KEY)
    ev_r = reg.revoke(a["id"])
    ev_s = reg.record_selfverify(
        b["id"], {"status": "ok", "at": "2026-02-02T00:00:00Z", "fuel_used": 5}
    )
    assert _show(reg, a["id"], as_of=ev_a.seq - 1) is None
    assert _show(reg, a["id"], as_of=ev_a.seq)["revoked"] is False
    assert _show(reg, a["id"], as_of=ev_r.seq - 1)["revoked"] is False
    assert _show(reg, a["id"], as_of=ev_r.seq)["revoked"] is True
    assert _show(reg, a["id"], as_of=10**9) == _show(reg, a["id"])
    assert _show(reg, b["id"], as_of=ev_s.seq - 1)["selfverify_status"] == "unknown"
    assert _show(reg, b["id"], as_of=ev_s.seq)["selfverify_status"] == "ok"

    def ids(**kw):
        with ledger.store.read() as txn:
            rows, _ = reg.entries.list_entries(txn, **kw)
        return [r["id"] for r in rows]

    assert ids(as_of=ev_a.seq - 1) == []
    assert ids(as_of=ev_a.seq) == [a["id"]]
    assert ids(as_of=ev_b.seq) == sorted([a["id"], b["id"]])
    assert ids(status="ok") == [b["id"]]
    assert ids(status="ok", as_of=ev_s.seq - 1) == []
    assert ids(status="unknown", as_of=ev_s.seq - 1) == sorted([a["id"], b["id"]])
    assert ids(verifier_name="other") == [b["id"]]
    with pytest.raises(BadInput):
        ids(as_of=-1)
    # Every as-of view equals the state a replay up to that seq would give.
    for seq in range(ledger.log.head().seq + 1):
        with ledger.store.read() as txn:
            at = [reg.entries.get_entry(txn, i, seq) for i in (a["id"], b["id"])]
        assert [x is not None for x in at] == [seq >= ev_a.seq, seq >= ev_b.seq]


def test_list_pages(reg, ledger):
    made = sorted(reg.add(package(str(i)), KEY)[0]["id"] for i in range(5))
    got, cursor = [], None
    while True:
        with ledger.store.read() as txn:
            rows, cursor = reg.entries.list_entries(txn, limit=2, cursor=cursor)
        got += [r["id"] for r in rows]
        if cursor is None:
            break
    assert got == made
    with ledger.store.read() as txn:
        rows, _ = reg.entries.list_entries(txn, limit=2, cursor=made[1], as_of=10**6)
    assert [r["id"] for r in rows] == made[2:4]


def test_rebuild_equals_incremental(reg, blobs, ledger):
    entries = [reg.add(package(str(i), wasm_size=100 * i), KEY)[0] for i in range(6)]
    reg.revoke(entries[0]["id"])
    reg.record_selfverify(entries[1]["id"], {"status": "ok", "at": "2026-02-02T00:00:00Z"})
    blobs.put(io.BytesIO(b"loose"))
    reg.revoke(entries[2]["id"])
    collect_garbage(blobs, min_age=0)
    before = list(dump_tables(ledger))
    assert {t for t, _, _ in before} == {"proj_blobs", "proj_registry", "proj_registry_hist"}
    for batch in (1, 5, 1000):
        rebuild(ledger, batch=batch)
        assert list(dump_tables(ledger)) == before
