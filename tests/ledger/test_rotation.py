from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ledger.chain import kid_for_key
from ledger.datadir import DataDir, resolve_keys
from ledger.errors import BadInput, CheckFailed, Conflict, EnvironmentProblem
from ledger.events import decode_record, encode_body
from ledger.keys import Keyring, StaticKeyProvider
from ledger.ledger import Ledger
from ledger.log import ROTATE_TYPE, Append, seq_key
from ledger.rotation import rotate_key
from projections import default_consumers
from tests.conftest import TEST_KEY, cli_env, run_cli
from tests.forgery import rewrite_history

K1, K2, K3 = TEST_KEY, bytes(range(1, 33)), bytes(range(2, 34))


def _open(data: DataDir, *keys: bytes) -> Ledger:
    provider = StaticKeyProvider(keys[0]) if len(keys) == 1 else Keyring(list(keys))
    return Ledger.open(data, provider, default_consumers(data))


def test_rotate_event_is_macd_by_the_old_key_and_names_only_kids(data_dir):
    with _open(data_dir, K1) as led:
        led.log.append("t.a", {})
        ev = rotate_key(led.log, K2, "ops")
        assert ev.type == ROTATE_TYPE
        assert ev.kid == kid_for_key(K1)
        assert ev.payload == {"old_kid": kid_for_key(K1), "new_kid": kid_for_key(K2)}
        assert led.log.current_kid() == kid_for_key(K2)
        record = led.log.get(ev.seq).record()
        for key in (K1, K2):
            assert key not in record and key.hex().encode() not in record
        # The writer held only the old key: it must refuse to write on, loudly.
        with pytest.raises(EnvironmentProblem) as info:
            led.log.append("t.b", {})
        assert info.value.code == "E-KEY"
    with pytest.raises(EnvironmentProblem) as info:
        _open(data_dir, K1)
    assert info.value.code == "E-KEY"
    with _open(data_dir, K2) as led:
        ev = led.log.append("t.b", {})
        assert ev.kid == kid_for_key(K2)


def test_a_keyring_writer_continues_across_the_rotation(data_dir):
    with _open(data_dir, K1, K1) as led:  # a keyring holding only K1 so far
        rotate_key(led.log, K2)
        ev = led.log.append("t.after", {})
        assert ev.kid == kid_for_key(K2)
        assert led.log.verify().kids == tuple(sorted({kid_for_key(K1), kid_for_key(K2)}))


def test_verify_across_two_rotations(data_dir):
    with _open(data_dir, K1) as led:
        led.log.append("t.1", {})
        rotate_key(led.log, K2)
    with _open(data_dir, K2) as led:
        led.log.append("t.2", {})
        rotate_key(led.log, K3)
    with _open(data_dir, K3) as led:
        led.log.append("t.3", {})
    with _open(data_dir, K1, K2, K3) as led:
        report = led.log.verify()
        assert report.count == 6
        assert set(report.kids) == {kid_for_key(k) for k in (K1, K2, K3)}
        kids = [ev.kid for ev in led.log.events()]
        assert kids == [kid_for_key(k) for k in (K1, K1, K1, K2, K2, K3)]
        # Every range start works: the kid in effect is derived from the event before.
        for start in range(6):
            assert led.log.verify(start).count == 6 - start
    with _open(data_dir, K1, K3) as led:  # the middle key is missing
        with pytest.raises(EnvironmentProblem) as info:
            led.log.verify()
        assert info.value.code == "E-KEY"
        assert kid_for_key(K2) in info.value.message


def test_an_event_under_a_retired_kid_breaks_the_chain(data_dir):
    """Someone keeping the old key appends (recomputing both chains) after the rotation."""
    with _open(data_dir, K1) as led:
        rotate_key(led.log, K2)
    with _open(data_dir, K2) as led:
        ev = led.log.append("t.new", {})
        events = led.store.db("events")
        with led.store.write() as txn:  # re-label the event with the retired kid
            old = decode_record(bytes(txn.get(seq_key(ev.seq), db=events)))
            body = encode_body(old.seq, old.id, old.ts, old.type, old.actor, {}, kid_for_key(K1))
            txn.put(seq_key(ev.seq), old.b3 + old.mac + body, db=events)
        rewrite_history(led.store, {kid_for_key(K1): K1}, ev.seq, {})
    with _open(data_dir, K1, K2) as led:
        with pytest.raises(CheckFailed) as info:
            led.log.verify()
        assert info.value.code == "E-CHAIN-BROKEN"
        assert info.value.details["seq"] == ev.seq
        assert "kid" in info.value.message


def test_rotating_to_the_current_key_is_a_conflict(ledger):
    with pytest.raises(Conflict):
        rotate_key(ledger.log, TEST_KEY)
    with pytest.raises(BadInput):  # straight through the log: refused too
        ledger.log.append(ROTATE_TYPE, {"old_kid": ledger.log.current_kid(), "new_kid": ""})
    with pytest.raises(BadInput):
        ledger.log.append(ROTATE_TYPE, {"old_kid": "x", "new_kid": kid_for_key(K2)})
    assert ledger.log.head().seq == 0


def test_a_group_after_the_rotation_needs_the_new_key(data_dir):
    new_kid, old_kid = kid_for_key(K2), kid_for_key(K1)
    rotation = {"old_kid": old_kid, "new_kid": new_kid}
    with _open(data_dir, K1) as led:
        with pytest.raises(EnvironmentProblem):
            led.log.append_many([Append(ROTATE_TYPE, rotation), Append("t.x", {})])
        assert led.log.head().seq == 0  # all or nothing: the rotation did not happen
        assert led.log.current_kid() == kid_for_key(K1)
    with _open(data_dir, K1, K2) as led:
        with pytest.raises(BadInput):  # it must name the kid it is MAC'd under
            led.log.append(ROTATE_TYPE, {"old_kid": new_kid, "new_kid": kid_for_key(K3)})
        evs = led.log.append_many([Append(ROTATE_TYPE, rotation), Append("t.x", {})])
        assert [e.kid for e in evs] == [old_kid, new_kid]
        led.log.verify()


def test_keyring_env_and_directory(tmp_path, monkeypatch):
    data = DataDir(tmp_path / "d")
    (data.keys / "keyring").mkdir(parents=True)
    (data.keyring / "a.key").write_text(K1.hex())
    (tmp_path / "cur.key").write_text(K3.hex())
    monkeypatch.setenv("CAP_LEDGER_HMAC_KEYRING", f"{K2.hex()}, ")
    provider, source = resolve_keys(data, tmp_path / "cur.key")
    assert source == "file"
    assert provider.current()[0] == kid_for_key(K3)
    assert {provider.get(kid_for_key(k)) for k in (K1, K2, K3)} == {K1, K2, K3}
    monkeypatch.setenv("CAP_LEDGER_HMAC_KEYRING", "zz")
    with pytest.raises(EnvironmentProblem) as info:
        resolve_keys(data, tmp_path / "cur.key")
    assert info.value.code == "E-KEY"
    monkeypatch.delenv("CAP_LEDGER_HMAC_KEYRING")
    with pytest.raises(EnvironmentProblem) as info:
        resolve_keys(data, tmp_path / "cur.key", tmp_path / "no-such-dir")
    assert info.value.code == "E-KEY"


def test_cli_rotation_in_the_data_directory_twice(cli, tmp_path):
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    for i, key in enumerate((K2, K3)):
        f = tmp_path / f"new{i}.key"
        f.write_text(key.hex() + "\n")
        assert cli("ledger", "append", "--type", "t.x", "--payload-file", str(payload)).code == 0
        res = cli("--json", "ledger", "rotate-key", "--new-key-file", str(f))
        assert res.code == 0, res.err
        assert res.json()["new_kid"] == kid_for_key(key)
    assert cli("ledger", "append", "--type", "t.x", "--payload-file", str(payload)).code == 0
    res = cli("--json", "ledger", "verify")
    assert res.code == 0, res.err
    assert len(res.json()["kids"]) == 3
    root: Path = cli.root
    ring = sorted((root / "keys" / "keyring").iterdir())
    assert len(ring) == 2 and f"{kid_for_key(K2)}.key" in [p.name for p in ring]
    assert bytes.fromhex((root / "keys" / "hmac.key").read_text()) == K3
    for p in ring:
        assert p.stat().st_mode & 0o077 == 0


def test_cli_rotation_with_external_keys(tmp_path):
    root = tmp_path / "d"
    k1, k2, k3 = (tmp_path / f"k{i}.key" for i in (1, 2, 3))
    for f, k in ((k1, K1), (k2, K2), (k3, K3)):
        f.write_text(k.hex())
    env = cli_env(root)

    def run(*args: str, key: Path, keyring: Path | None = None):
        extra = ["--keyring", str(keyring)] if keyring else []
        return run_cli("--hmac-key-file", str(key), *extra, *args, env=env)

    assert run("init", key=k1).code == 0
    res = run("ledger", "rotate-key", "--new-key-file", str(k2), key=k1)
    assert res.code == 0, res.err
    assert "keyring" in res.err  # tells the operator what to do next
    assert run("ledger", "verify", key=k1).code == 4  # the old key cannot write or verify on
    ring = tmp_path / "ring"
    ring.mkdir()
    (ring / "old.key").write_text(K1.hex())
    assert run("ledger", "rotate-key", "--new-key-file", str(k3), key=k2, keyring=ring).code == 0
    res = run("ledger", "verify", key=k3)
    assert res.code == 4 and "error[E-KEY]" in res.err
    assert K1.hex() not in res.err and K3.hex() not in res.err
    (ring / "mid.key").write_text(K2.hex())
    res = run("--json", "ledger", "verify", key=k3, keyring=ring)
    assert res.code == 0, res.err
    assert res.json()["count"] == 3


def test_unknown_new_key_file_is_e_key(cli, tmp_path):
    res = cli("ledger", "rotate-key", "--new-key-file", str(tmp_path / "missing.key"))
    assert res.code == 4 and "E-KEY" in res.err
    short = tmp_path / "short.key"
    short.write_text(secrets.token_hex(8))
    res = cli("ledger", "rotate-key", "--new-key-file", str(short))
    assert res.code == 4 and "E-KEY" in res.err
