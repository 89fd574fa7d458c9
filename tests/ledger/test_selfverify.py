"""Self-verification wired to the registry: add signs the verdict, exec re-runs from the
store and records ``selfverify.result``, which the projection applies."""

from __future__ import annotations

import asyncio
import io

import pytest
from nacl.signing import SigningKey

from ledger.blob_gc import collect_garbage
from ledger.blobs import BlobStore
from ledger.errors import NotFound
from ledger.keys import Ed25519Keypair
from ledger.registry import Package, Registry
from ledger.sandbox import Limits, VerifierPool
from ledger.sandbox.cache import module_cache
from ledger.selfverify import SelfVerifier
from projections.blobs import BlobsView
from projections.rebuild import dump_tables, rebuild
from projections.registry import RegistryView
from tests.ledger.sandbox_support import HOSTILE_ABI, example, hostile

KEY = Ed25519Keypair("test", SigningKey(bytes(range(32))))
EVENT_FIELDS = {"entry_id", "status", "code", "fuel_used", "duration_us", "log", "engine", "at"}


@pytest.fixture
def blobs(ledger):
    return BlobStore(ledger, BlobsView(ledger.store), inline_max=64)


@pytest.fixture
def reg(blobs):
    return Registry(blobs, RegistryView(blobs.ledger.store))


@pytest.fixture
def verifier(data_dir):
    return SelfVerifier(Limits(), cache_dir=data_dir.cache / "wasm")


def _package(wasm: bytes, abi: bytes, manifest: bytes, proof: bytes) -> Package:
    return Package(*(io.BytesIO(b) for b in (manifest, proof, wasm, abi)))


def _example(proof: bytes | None = None) -> Package:
    pkg = example()
    return _package(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof if proof is None else proof)


def _show(reg, entry_id, as_of=None):
    with reg.ledger.store.read() as txn:
        return reg.entries.get_entry(txn, entry_id, as_of)


def _events(ledger, type_):
    return [ev for ev in ledger.log.events(types=[type_])]


def test_add_with_selfverify_signs_the_verdict(reg, verifier, ledger):
    entry, event = reg.add(_example(), KEY, selfverify=verifier)
    assert entry["selfverify_status"] == "ok"
    assert entry["selfverify_at"] == verifier.last.at
    assert (entry["verifier_name"], entry["verifier_version"]) == ("sha256-commitment", "1.0.0")
    recorded = event.payload["selfverify"]
    assert recorded["fuel_used"] == verifier.last.fuel_used > 0
    assert recorded["engine"]["wasmtime"] == "50.0.1"
    assert recorded["log"] == ["info: proof matches SHA-256(manifest)"]
    assert recorded["limits"]["fuel"] == 200_000_000  # the ABI lowered the host's fuel
    assert reg.verify(entry["id"])["signature"] == "valid"
    shown = _show(reg, entry["id"])
    assert (shown["selfverify_status"], shown["fuel_used"]) == ("ok", recorded["fuel_used"])


def test_add_with_failing_selfverify_records_fail(reg, verifier):
    entry, event = reg.add(_example(b"0" * 64), KEY, selfverify=verifier)
    assert entry["selfverify_status"] == "fail"
    assert event.payload["selfverify"]["code"] == "E-VERIFY-FAILED"
    assert _show(reg, entry["id"])["selfverify_code"] == "E-VERIFY-FAILED"


def test_exec_appends_a_result_the_projection_applies(reg, verifier, ledger):
    entry, _ = reg.add(_example(), KEY)
    assert _show(reg, entry["id"])["selfverify_status"] == "unknown"
    result, event = verifier.exec_entry(reg, entry["id"], actor="tester")
    assert result.ok and event.type == "selfverify.result" and event.actor == "tester"
    assert set(event.payload) >= EVENT_FIELDS
    assert event.payload["entry_id"] == entry["id"]
    assert event.payload["fuel_used"] == result.fuel_used
    assert event.payload["log"] == list(result.log)
    assert _events(ledger, "selfverify.result") == [event]
    shown = _show(reg, entry["id"])
    assert (shown["selfverify_status"], shown["selfverify_at"]) == ("ok", result.at)
    assert _show(reg, entry["id"], as_of=event.seq - 1)["selfverify_status"] == "unknown"
    assert reg.verify(entry["id"])["signature"] == "valid"  # exec never breaks the signature


def test_twenty_execs_give_the_same_verdict_and_fuel(reg, verifier, ledger):
    entry, _ = reg.add(_example(), KEY, selfverify=verifier)
    signed_fuel = verifier.last.fuel_used
    for _ in range(20):
        verifier.exec_entry(reg, entry["id"])
    events = _events(ledger, "selfverify.result")
    assert len(events) == 20
    assert {(e.payload["status"], e.payload["code"], e.payload["fuel_used"]) for e in events} == {
        ("ok", None, signed_fuel)
    }


@pytest.mark.parametrize(
    ("name", "limits", "code"),
    [
        ("infinite_loop", Limits(fuel=100_000), "E-SANDBOX-OUT-OF-FUEL"),
        ("infinite_loop", Limits(fuel=10**15, call_ms=30), "E-SANDBOX-TIMEOUT"),
        ("memory_bomb", Limits(memory_mb=2), "E-SANDBOX-MEMORY"),
        ("wasi_import", Limits(), "E-SANDBOX-FORBIDDEN-IMPORT"),
        ("trap", Limits(), "E-SANDBOX-TRAP"),
    ],
)
def test_exec_records_hostile_outcomes(reg, data_dir, name, limits, code):
    entry, _ = reg.add(_package(hostile(name), HOSTILE_ABI, b"m", b"p"), KEY)
    verifier = SelfVerifier(limits, cache_dir=data_dir.cache / "wasm")
    result, event = verifier.exec_entry(reg, entry["id"])
    assert (result.code, event.payload["code"], event.payload["status"]) == (code, code, "fail")
    shown = _show(reg, entry["id"])
    assert (shown["selfverify_status"], shown["selfverify_code"]) == ("fail", code)


def _flip_blob(blobs, blob_id):
    info = blobs.info(blob_id)
    if info.tier == "fs":
        path = blobs.fs.path(blob_id)
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    else:
        key = bytes.fromhex(blob_id)
        with blobs.ledger.store.write() as txn:
            data = bytearray(txn.get(key, db=blobs.lmdb.db))
            data[len(data) // 2] ^= 0x01
            txn.put(key, bytes(data), db=blobs.lmdb.db)


def test_altered_wasm_in_the_store_is_recorded_and_never_executed(reg, blobs, verifier):
    entry, _ = reg.add(_example(), KEY)
    _flip_blob(blobs, entry["blob_wasm"])
    module_cache().clear()
    before = module_cache().compiles
    result, event = verifier.exec_entry(reg, entry["id"])
    assert (result.code, result.fuel_used, result.cache) == ("E-HASH-MISMATCH", 0, "none")
    assert event.payload["code"] == "E-HASH-MISMATCH"
    assert module_cache().compiles == before
    assert _show(reg, entry["id"])["selfverify_status"] == "fail"


def test_exec_after_gc_records_blob_missing(reg, blobs, verifier):
    entry, _ = reg.add(_example(), KEY)
    reg.revoke(entry["id"])
    assert collect_garbage(blobs, min_age=0).removed
    result, event = verifier.exec_entry(reg, entry["id"])
    assert (result.code, event.payload["code"]) == ("E-BLOB-MISSING", "E-BLOB-MISSING")


def test_exec_of_an_unknown_entry_records_nothing(reg, verifier, ledger):
    head = ledger.log.head().seq
    with pytest.raises(NotFound) as err:
        verifier.exec_entry(reg, "f" * 64)
    assert err.value.code == "E-NOT-FOUND" and ledger.log.head().seq == head


def test_rebuilt_projection_equals_the_incremental_one(reg, verifier, ledger):
    ok, _ = reg.add(_example(), KEY, selfverify=verifier)
    bad, _ = reg.add(_package(hostile("trap"), HOSTILE_ABI, b"m", b"p"), KEY)
    verifier.exec_entry(reg, ok["id"])
    verifier.exec_entry(reg, bad["id"])
    before = list(dump_tables(ledger, ["registry"]))
    rebuild(ledger, ["registry"])
    assert list(dump_tables(ledger, ["registry"])) == before


async def test_execs_run_concurrently_in_the_pool(reg, data_dir, ledger):
    verifier = SelfVerifier(Limits(fuel=2_000_000), cache_dir=data_dir.cache / "wasm")
    ok, _ = reg.add(_example(), KEY)
    bad, _ = reg.add(_example(b"1" * 64), KEY)
    loop_, _ = reg.add(_package(hostile("infinite_loop"), HOSTILE_ABI, b"m", b"p"), KEY)
    ids = [ok["id"], bad["id"], loop_["id"]] * 6
    pool = VerifierPool(workers=3, queue=4)
    try:
        done = await asyncio.gather(*(pool.call(verifier.exec_entry, reg, i) for i in ids))
    finally:
        pool.close()
    codes = [r.code for r, _ in done]
    assert codes == [None, "E-VERIFY-FAILED", "E-SANDBOX-OUT-OF-FUEL"] * 6
    assert len({ev.seq for _, ev in done}) == len(ids)
    assert len(_events(ledger, "selfverify.result")) == len(ids)
