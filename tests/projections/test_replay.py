from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from api.services import blob_store
from ledger.checkpoint import append_checkpoint
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from ledger.keys import Keyring, StaticKeyProvider, load_private_key, write_keypair
from ledger.ledger import Ledger
from ledger.log import seq_key
from ledger.rotation import rotate_key
from projections import default_consumers
from projections.replay import audit_replay, render_key
from tests.conftest import TEST_KEY, cli_env, run_cli


@pytest.fixture
def busy(ledger, tmp_path):
    """A ledger whose projections hold rows: blobs, checkpoints and plain events."""
    sk, _ = write_keypair(tmp_path / "k", "cp")
    blobs = blob_store(ledger)
    for i in range(12):
        ledger.log.append("attestation.issue", {"i": i})
        if i % 3 == 0:
            blobs.put(io.BytesIO(f"blob {i}".encode()), "text/plain")
    append_checkpoint(ledger.log, load_private_key(sk))
    return ledger


def _table(report, name):
    return next(t for t in report.tables if t.name == name)


def test_replay_of_an_untouched_ledger_is_identical(busy):
    report = audit_replay(busy)
    assert report.ok and report.compared and report.differences == 0
    assert report.events == busy.log.head().seq + 1
    blobs = _table(report, "proj_blobs")
    assert blobs.replayed_rows == blobs.live_rows > 0
    assert blobs.replayed_digest == blobs.live_digest
    assert _table(report, "proj_checkpoints").replayed_rows == 1
    assert "outbox" not in {t.name for t in report.tables}  # delivery state is not replayed
    doc = report.to_json()
    assert doc["ok"] is True and doc["chains"] == "ok" and doc["kids"] == list(report.kids)


def _edit(ledger, table, fn):
    db = ledger.store.db(table)
    with ledger.store.write() as txn:
        fn(txn, db)


def test_a_row_edited_behind_the_logs_back_is_named(busy):
    with busy.store.read() as txn:
        rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=busy.store.db("proj_blobs"))]
    key, value = rows[0]
    _edit(busy, "proj_blobs", lambda txn, db: txn.put(key, value[:-1] + b"\x00", db=db))
    _edit(busy, "proj_checkpoints", lambda txn, db: txn.put(b"zz-injected", b"1", db=db))
    doomed = rows[-1][0]
    _edit(busy, "proj_blobs", lambda txn, db: txn.delete(doomed, db=db))
    report = audit_replay(busy)
    assert not report.ok and report.differences == 3
    named = {(d.table, d.key, d.kind) for t in report.tables for d in t.named}
    assert named == {
        ("proj_blobs", key, "changed"),
        ("proj_blobs", doomed, "missing"),
        ("proj_checkpoints", b"zz-injected", "extra"),
    }
    changed = next(d for d in _table(report, "proj_blobs").named if d.kind == "changed")
    assert changed.live_b3 != changed.replayed_b3
    assert render_key(key) == "b/" + key[2:].hex()


def test_chain_breaks_are_found_before_anything_is_compared(busy):
    events = busy.store.db("events")
    with busy.store.write() as txn:
        raw = bytearray(txn.get(seq_key(5), db=events))
        raw[-1] ^= 1
        txn.put(seq_key(5), bytes(raw), db=events)
    with pytest.raises(CheckFailed) as info:
        audit_replay(busy)
    assert info.value.code == "E-CHAIN-BROKEN" and info.value.details["seq"] == 5


def test_replay_to_an_earlier_seq_reproduces_that_moments_tables(busy):
    then = audit_replay(busy)
    for i in range(5):
        busy.log.append("attestation.issue", {"later": i})
    blob_store(busy).put(io.BytesIO(b"later blob"), "text/plain")
    later = audit_replay(busy, to=then.to)
    assert not later.compared and later.ok and later.events == then.events
    assert [t.replayed_digest for t in later.tables] == [t.replayed_digest for t in then.tables]
    assert all(t.live_rows is None for t in later.tables)
    now = audit_replay(busy)
    assert _table(now, "proj_blobs").replayed_digest != _table(then, "proj_blobs").replayed_digest


def test_bad_arguments(ledger):
    with pytest.raises(BadInput):
        audit_replay(ledger, to=-1)


def test_cli_replay_names_an_edited_row(busy, tmp_path):
    data = busy.data.root
    busy.close()
    env = cli_env(data, CAP_LEDGER_HMAC_KEY=TEST_KEY.hex())
    report_file = tmp_path / "report.json"
    res = run_cli("--json", "audit", "replay", "--report", str(report_file), env=env)
    assert res.code == 0, res.err
    assert res.json()["ok"] is True and json.loads(report_file.read_text())["ok"] is True
    first_ts = json.loads(run_cli("--json", "ledger", "log", "--limit", "3", env=env).out
                          .splitlines()[2])["ts"]  # fmt: skip
    res = run_cli("--json", "audit", "replay", "--as-of", first_ts, env=env)
    assert res.code == 0, res.err
    assert res.json()["to"] >= 2 and res.json()["compared_with_live"] is False
    keys = StaticKeyProvider(TEST_KEY)
    with Ledger.open(data, keys, default_consumers(busy.data)) as led:
        db = led.store.db("proj_blobs")
        with led.store.write() as txn:
            key, value = next(iter(txn.cursor(db=db)))
            txn.put(bytes(key), bytes(value) + b"!", db=db)
    res = run_cli("audit", "replay", env=env)
    assert res.code == 1
    assert "error[E-HASH-MISMATCH]" in res.err and render_key(bytes(key)) in res.err
    assert "changed" in res.out
    res = run_cli("audit", "replay", "--to", "1", "--as-of", first_ts, env=env)
    assert res.code == 2
    res = run_cli("audit", "replay", "--as-of", "1999-01-01T00:00:00Z", env=env)
    assert res.code == 3 and "E-NOT-FOUND" in res.err


def test_cli_replay_uninitialized(tmp_path: Path):
    res = run_cli("audit", "replay", data=tmp_path / "none")
    assert res.code == 4 and "E-NOT-INITIALIZED" in res.err


def test_replay_across_a_key_rotation_needs_every_key(data_dir):
    k2 = bytes(range(5, 37))
    with Ledger.open(data_dir, Keyring([TEST_KEY]), default_consumers(data_dir)) as led:
        led.log.append("a.b", {})
        rotate_key(led.log, k2)
        led.log.append("a.b", {})
        report = audit_replay(led)
        assert report.ok and len(report.kids) == 2
    with Ledger.open(data_dir, StaticKeyProvider(k2), default_consumers(data_dir)) as led:
        with pytest.raises(EnvironmentProblem) as info:
            audit_replay(led)
        assert info.value.code == "E-KEY"
