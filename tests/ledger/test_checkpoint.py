from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from ledger.chain import kid_for_key
from ledger.checkpoint import (
    CHECKPOINT_TYPE,
    AutoCheckpointer,
    Checkpoint,
    append_checkpoint,
    load_checkpoint,
    verify_checkpoints,
    write_checkpoint,
)
from ledger.datadir import DataDir
from ledger.errors import BadInput, CheckFailed
from ledger.keys import load_hmac_key_file, load_private_key, load_public_key, write_keypair
from ledger.store import Store
from projections.checkpoints import list_checkpoints
from projections.rebuild import rebuild, tables_digest
from tests.conftest import TEST_KEY, cli_env, run_cli
from tests.forgery import rewrite_history, truncate_history


@pytest.fixture
def signer(tmp_path: Path):
    sk, pk = write_keypair(tmp_path / "k", "auditor")
    return load_private_key(sk), load_public_key(pk)


def _fill(ledger, n: int) -> None:
    for i in range(n):
        ledger.log.append("test.ev", {"i": i})


def test_checkpoint_signs_the_head_and_is_recorded(ledger, signer):
    keypair, pub = signer
    _fill(ledger, 4)
    cp, ev = append_checkpoint(ledger.log, keypair, "auditor")
    assert (cp.seq, ev.seq, ev.type) == (4, 5, CHECKPOINT_TYPE)
    assert cp.b3 == ledger.log.get(4).b3.hex()
    assert cp.ledger_id == ledger.log.ledger_id
    assert ev.payload == cp.to_json()
    cp.check_signature(pub)
    rows = list(list_checkpoints(ledger.store))
    assert rows == [{"checkpoint": cp.to_json(), "event_seq": 5}]
    report = verify_checkpoints(ledger.log, [cp], pub)
    assert report.count == 6


def test_history_rewritten_with_the_right_hmac_key_is_caught(ledger, signer):
    keypair, pub = signer
    _fill(ledger, 5)
    old, _ = append_checkpoint(ledger.log, keypair)
    _fill(ledger, 3)
    rewrite_history(ledger.store, {ledger.log.current_kid(): TEST_KEY}, 2, {"i": 999})
    assert ledger.log.get(2).payload == {"i": 999}
    ledger.log.verify()  # both chains recompute: the key holder's rewrite passes this
    with pytest.raises(CheckFailed) as info:
        verify_checkpoints(ledger.log, [old], pub)
    assert info.value.code == "E-CHAIN-BROKEN"
    assert info.value.details["seq"] == old.seq
    assert "rewritten" in info.value.message


def test_rewrite_after_the_checkpoint_needs_a_later_checkpoint(ledger, signer):
    keypair, pub = signer
    _fill(ledger, 3)
    first, _ = append_checkpoint(ledger.log, keypair)
    _fill(ledger, 3)
    second, _ = append_checkpoint(ledger.log, keypair)
    rewrite_history(ledger.store, {ledger.log.current_kid(): TEST_KEY}, first.seq + 2, {"x": 1})
    verify_checkpoints(ledger.log, [first], pub)  # what it covers is intact
    with pytest.raises(CheckFailed) as info:
        verify_checkpoints(ledger.log, [first, second], pub)
    assert info.value.details["seq"] == second.seq


def test_truncated_history_is_caught(ledger, signer):
    keypair, pub = signer
    _fill(ledger, 6)
    cp, _ = append_checkpoint(ledger.log, keypair)
    truncate_history(ledger.store, 3)
    ledger.log.verify()  # a consistent shorter log
    with pytest.raises(CheckFailed) as info:
        verify_checkpoints(ledger.log, [cp], pub)
    assert info.value.code == "E-CHAIN-BROKEN"
    assert "truncated" in info.value.message


def test_truncated_and_regrown_history_is_caught(ledger, signer):
    keypair, pub = signer
    _fill(ledger, 6)
    cp, _ = append_checkpoint(ledger.log, keypair)
    truncate_history(ledger.store, 3)
    _fill(ledger, 10)  # the log is longer than the checkpoint again, but different
    ledger.log.verify()
    with pytest.raises(CheckFailed) as info:
        verify_checkpoints(ledger.log, [cp], pub)
    assert info.value.details["seq"] == cp.seq


def test_signature_problems(ledger, signer, tmp_path):
    keypair, pub = signer
    _fill(ledger, 2)
    cp, _ = append_checkpoint(ledger.log, keypair)
    other = load_public_key(write_keypair(tmp_path / "o", "other")[1])
    with pytest.raises(CheckFailed) as info:
        verify_checkpoints(ledger.log, [cp], other)
    assert info.value.code == "E-SIGNATURE-INVALID"
    doc = cp.to_json()
    for field, value in (("seq", cp.seq - 1), ("b3", "0" * 64), ("ts", "2000-01-01T00:00:00Z")):
        forged = Checkpoint.from_json({**doc, field: value})
        with pytest.raises(CheckFailed) as info:
            verify_checkpoints(ledger.log, [forged], pub)
        assert info.value.code == "E-SIGNATURE-INVALID", field
    foreign = Checkpoint.sign("another-ledger", cp.seq, bytes.fromhex(cp.b3), keypair)
    with pytest.raises(CheckFailed) as info:
        verify_checkpoints(ledger.log, [foreign], pub)
    assert info.value.code == "E-CHAIN-BROKEN"
    assert "another-ledger" in info.value.message


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b'{"seq": 1}',
        b"x" * (70 << 10),
    ],
)
def test_malformed_checkpoint_files(tmp_path, content):
    path = tmp_path / "cp.json"
    path.write_bytes(content)
    with pytest.raises(BadInput) as info:
        load_checkpoint(path)
    assert info.value.code == "E-BAD-INPUT"


def test_checkpoint_file_field_checks(ledger, signer, tmp_path):
    keypair, _ = signer
    cp, _ = append_checkpoint(ledger.log, keypair)
    path = tmp_path / "cp.json"
    write_checkpoint(path, cp)
    assert load_checkpoint(path) == cp
    doc = cp.to_json()
    for bad in ({"seq": -1}, {"seq": "1"}, {"b3": "AB" * 32}, {"format": "x"}, {"extra": 1}):
        path.write_text(json.dumps({**doc, **bad}))
        with pytest.raises(BadInput):
            load_checkpoint(path)
    with pytest.raises(BadInput):
        load_checkpoint(tmp_path / "missing.json")


def test_checkpoint_covers_its_predecessor_under_concurrent_appends(ledger, signer):
    keypair, pub = signer
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            ledger.log.append("test.ev", {})

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        made = [append_checkpoint(ledger.log, keypair) for _ in range(10)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    for cp, ev in made:
        assert cp.seq == ev.seq - 1
        assert cp.b3 == ledger.log.get(cp.seq).b3.hex()
    verify_checkpoints(ledger.log, [cp for cp, _ in made], pub)


def _wait_for(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_automatic_checkpoints_every_n_events(ledger, signer):
    keypair, pub = signer
    auto = AutoCheckpointer(ledger.log, keypair, every_events=5, every_seconds=None)
    auto.start()
    try:
        _fill(ledger, 5)
        assert _wait_for(lambda: auto.made == 1)
        _fill(ledger, 4)
        time.sleep(0.2)
        assert auto.made == 1  # four events are not enough
        _fill(ledger, 1)
        assert _wait_for(lambda: auto.made == 2)
    finally:
        auto.stop()
    cps = [Checkpoint.from_json(r["checkpoint"]) for r in list_checkpoints(ledger.store)]
    assert [cp.seq for cp in cps] == [5, 11]
    verify_checkpoints(ledger.log, cps, pub)


def test_automatic_checkpoints_count_other_processes_events(ledger, signer, tmp_path):
    """The service's other workers (here: CLI appends) move the head too; the count is by
    seq, so a checkpoint is due although this process appended only two of the events."""
    keypair, _ = signer
    auto = AutoCheckpointer(ledger.log, keypair, every_events=5, every_seconds=None)
    auto.start()
    try:
        _fill(ledger, 1)
        payload = tmp_path / "p.json"
        payload.write_text("{}")
        env = cli_env(ledger.data.root, CAP_LEDGER_HMAC_KEY=TEST_KEY.hex())
        for _ in range(4):
            res = run_cli(
                "ledger", "append", "--type", "cli.ev", "--payload-file", str(payload), env=env
            )
            assert res.code == 0, res.err
        time.sleep(0.2)
        assert auto.made == 0  # nothing committed here since: nobody counted yet
        _fill(ledger, 1)
        assert _wait_for(lambda: auto.made == 1)
    finally:
        auto.stop()
    [row] = list_checkpoints(ledger.store)
    assert Checkpoint.from_json(row["checkpoint"]).seq == 6


def test_automatic_checkpoints_on_a_timer_only_when_something_is_new(ledger, signer):
    keypair, _ = signer
    auto = AutoCheckpointer(ledger.log, keypair, every_events=None, every_seconds=0.05)
    auto.start()
    try:
        _fill(ledger, 2)
        assert _wait_for(lambda: auto.made == 1)
        time.sleep(0.3)  # idle: no checkpoint of a checkpoint
        assert auto.made == 1
        assert ledger.log.get(ledger.log.head().seq).type == CHECKPOINT_TYPE
    finally:
        auto.stop()


def test_cli_checkpoint_then_rewrite_fails_verify(cli, tmp_path):
    keys = tmp_path / "keys"
    assert cli("keys", "generate", "--out", str(keys), "--name", "aud").code == 0
    sk, pk = keys / "aud.ed25519.sk.json", keys / "aud.ed25519.pk.json"
    payload = tmp_path / "p.json"
    payload.write_text('{"v": 1}')
    for _ in range(3):
        assert (
            cli("ledger", "append", "--type", "att.issue", "--payload-file", str(payload)).code == 0
        )
    cp_file = tmp_path / "cp.json"
    res = cli("--json", "ledger", "checkpoint", "--signing-key", str(sk), "--out", str(cp_file))
    assert res.code == 0, res.err
    assert res.json()["checkpoint"]["seq"] == 3
    res = cli("--json", "ledger", "verify", "--checkpoint", str(cp_file), "--pubkey", str(pk))
    assert res.code == 0, res.err
    assert res.json()["checkpoints"][0]["seq"] == 3
    printed = cli("ledger", "checkpoint", "--signing-key", str(sk))
    assert json.loads(printed.out)["seq"] == 4
    listed = cli("--json", "ledger", "checkpoints").lines()
    assert [r["checkpoint"]["seq"] for r in listed] == [3, 4]  # type: ignore[index]

    data = DataDir(cli.root)
    key = load_hmac_key_file(data.hmac_key_file)
    store = Store(data.lmdb)
    try:
        rewrite_history(store, {kid_for_key(key): key}, 1, {"v": 2})
    finally:
        store.close()
    assert cli("ledger", "verify").code == 0  # the keyed chain is fooled
    res = cli("ledger", "verify", "--checkpoint", str(cp_file), "--pubkey", str(pk))
    assert res.code == 1
    assert "error[E-CHAIN-BROKEN]" in res.err and "seq 3" in res.err
    assert "Traceback" not in res.err


def test_cli_checkpoint_usage_errors(cli, tmp_path):
    res = cli("ledger", "verify", "--checkpoint", str(tmp_path / "nope.json"))
    assert res.code == 2 and "E-BAD-INPUT" in res.err
    res = cli("ledger", "checkpoint", "--signing-key", str(tmp_path / "nope.sk.json"))
    assert res.code == 4 and "E-KEY" in res.err
    res = run_cli("ledger", "checkpoint", "--signing-key", "x", data=tmp_path / "empty")
    assert res.code == 4 and "E-NOT-INITIALIZED" in res.err


def test_checkpoints_projection_rebuilds_identically(ledger, signer):
    keypair, _ = signer
    _fill(ledger, 3)
    append_checkpoint(ledger.log, keypair)
    append_checkpoint(ledger.log, keypair)
    before = tables_digest(ledger, ["checkpoints"])
    assert rebuild(ledger, ["checkpoints"]).events == 6
    assert tables_digest(ledger, ["checkpoints"]) == before
    assert len(list(list_checkpoints(ledger.store))) == 2
