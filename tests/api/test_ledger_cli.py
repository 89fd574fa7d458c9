"""The `cap-agent` ledger commands as a user runs them: real processes, real exit codes,
the contract's error format, and never a traceback or a key in the output."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest

from ledger.log import seq_key
from ledger.store import Store
from tests.conftest import CliResult, cli_env, run_cli

RESERVED = ("ledger.", "key.", "blob.", "registry.", "selfverify.", "token.")
KEY_HEX = "a1" * 32
OTHER_KEY_HEX = "b2" * 32


def error_line(res: CliResult, code: str, exit_code: int) -> str:
    """Assert a clean failure with ``code`` and return its message."""
    assert res.code == exit_code, (res.code, res.err)
    assert "Traceback" not in res.err
    match = re.search(rf"^error\[{code}\]: (.+)$", res.err, re.M)
    assert match is not None, res.err
    assert res.out == ""
    return match[1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """An initialized ledger for commands that must fail before writing anything."""
    root = tmp_path_factory.mktemp("shared") / "led"
    assert run_cli("init", data=root).code == 0
    return root


def payload(tmp_path: Path, text: str | bytes, name: str = "p.json") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


# --- the happy path ---------------------------------------------------------------------


def test_init_append_log_head_verify(tmp_path):
    root = tmp_path / "led"
    res = run_cli("--json", "init", data=root)
    assert res.code == 0, res.err
    doc = res.json()
    assert doc["key_source"] == "datadir"
    assert re.fullmatch(r"[0-9a-f]{32}", doc["ledger_id"])
    assert re.fullmatch(r"hk-[0-9a-f]{16}", doc["kid"])
    assert doc["genesis"]["type"] == "ledger.genesis" and doc["genesis"]["seq"] == 0
    key_file = root / "keys" / "hmac.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    pf = payload(tmp_path, '{"subject": "alice", "score": 7, "tags": ["a"]}')
    res = run_cli(
        "--json",
        "--actor",
        "cli:test",
        "ledger",
        "append",
        "--type",
        "attestation.issue",
        "--payload-file",
        pf,
        data=root,
    )
    assert res.code == 0, res.err
    ev = res.json()
    assert list(ev) == ["seq", "id", "ts", "type", "actor", "payload", "kid", "b3", "mac"]
    assert (ev["seq"], ev["type"], ev["actor"]) == (1, "attestation.issue", "cli:test")
    assert ev["id"] == f"ev-{doc['ledger_id'][:16]}-1"
    assert ev["payload"] == {"score": 7, "subject": "alice", "tags": ["a"]}
    for i in range(3):
        pf = payload(tmp_path, json.dumps({"i": i}))
        assert (
            run_cli("ledger", "append", "--type", "ubl.entry", "--payload-file", pf, data=root).code
            == 0
        )

    lines = run_cli("--json", "ledger", "log", data=root).lines()
    assert [e["seq"] for e in lines] == [0, 1, 2, 3, 4]
    assert lines[1] == ev
    after = run_cli("--json", "ledger", "log", "--after", "1", "--limit", "2", data=root).lines()
    assert [e["seq"] for e in after] == [2, 3]
    typed = run_cli("--json", "ledger", "log", "--type", "attestation.*", data=root).lines()
    assert [e["seq"] for e in typed] == [1]
    assert run_cli("--json", "ledger", "log", "--limit", "0", data=root).lines() == []
    human = run_cli("ledger", "log", data=root)
    assert human.code == 0 and len(human.out.splitlines()) == 5 and "ubl.entry" in human.out

    head = run_cli("--json", "ledger", "head", data=root).json()
    assert head == {
        "ledger_id": doc["ledger_id"],
        "seq": 4,
        "b3": lines[4]["b3"],
        "mac": lines[4]["mac"],
    }
    ver = run_cli("--json", "ledger", "verify", data=root)
    assert ver.code == 0, ver.err
    assert ver.json()["ok"] is True and ver.json()["count"] == 5
    human = run_cli("ledger", "verify", data=root)
    assert human.code == 0 and human.out.startswith("OK: 5 events verified")
    assert (
        run_cli("--json", "ledger", "verify", "--from", "2", "--to", "3", data=root).json()["count"]
        == 2
    )


def test_keys_generate_writes_a_private_and_a_public_file(tmp_path):
    res = run_cli("--json", "keys", "generate", "--out", str(tmp_path / "k"), "--name", "co")
    assert res.code == 0, res.err
    sk = Path(res.json()["secret_key_file"])
    pk = Path(res.json()["public_key_file"])
    assert sk.name == "co.ed25519.sk.json" and pk.name == "co.ed25519.pk.json"
    assert stat.S_IMODE(sk.stat().st_mode) == 0o600
    assert "secret_key" in json.loads(sk.read_text())
    assert "secret_key" not in json.loads(pk.read_text())
    again = run_cli("keys", "generate", "--out", str(tmp_path / "k"), "--name", "co")
    error_line(again, "E-BAD-INPUT", 2)


# --- bad input: each a clear E- code, no traceback ----------------------------------------


@pytest.mark.parametrize("prefix", RESERVED)
def test_reserved_types_are_refused(shared, tmp_path, prefix):
    pf = payload(tmp_path, "{}")
    res = run_cli(
        "ledger", "append", "--type", f"{prefix}forged", "--payload-file", pf, data=shared
    )
    assert "reserved prefix" in error_line(res, "E-BAD-INPUT", 2)


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("[1, 2]", "not a JSON object"),
        ('"text"', "not a JSON object"),
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        ('{"x": 1.5}', "floats"),
        ('{"x": 1e3}', "floats"),
        ('{"x": NaN}', "floats"),
        ('{"x": 1, "x": 2}', "duplicate key"),
        ('{"x": 18446744073709551616}', "64-bit"),
        ('{"x": "\\ud800"}', "surrogate"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_bad_payload_files(shared, tmp_path, content, what):
    pf = payload(tmp_path, content)
    res = run_cli("ledger", "append", "--type", "ubl.entry", "--payload-file", pf, data=shared)
    assert what in error_line(res, "E-BAD-INPUT", 2)


def test_payload_file_missing_a_directory_or_too_large(shared, tmp_path):
    for path in (tmp_path / "absent.json", tmp_path):
        res = run_cli(
            "ledger", "append", "--type", "ubl.entry", "--payload-file", str(path), data=shared
        )
        error_line(res, "E-BAD-INPUT", 2)
    big = payload(tmp_path, '{"x": "' + "a" * (1 << 20) + '"}')
    res = run_cli("ledger", "append", "--type", "ubl.entry", "--payload-file", big, data=shared)
    assert "larger than" in error_line(res, "E-BAD-INPUT", 2)


@pytest.mark.parametrize(
    "argv",
    [
        ("ledger", "frobnicate"),
        ("ledger", "append", "--payload-file", "x.json"),
        ("ledger", "log", "--after", "-5"),
        ("ledger", "log", "--limit", "-1"),
        ("ledger", "verify", "--from", "7"),
        ("ledger", "verify", "--from", "-1"),
        ("--log-level", "loud", "ledger", "head"),
    ],
)
def test_usage_errors(shared, argv):
    error_line(run_cli(*argv, data=shared), "E-BAD-INPUT", 2)


def test_log_after_the_end_is_empty(shared):
    res = run_cli("--json", "ledger", "log", "--after", "99999999999999999999999", data=shared)
    assert (res.code, res.out) == (0, "")


def test_missing_data_dir(tmp_path):
    for cmd in (("ledger", "log"), ("ledger", "verify"), ("ledger", "head")):
        res = run_cli(*cmd, data=tmp_path / "nowhere")
        assert "cap-agent init" in error_line(res, "E-NOT-INITIALIZED", 4)


def test_data_dir_is_a_file(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    res = run_cli("ledger", "verify", data=tmp_path / "file")
    assert "not a directory" in error_line(res, "E-NOT-INITIALIZED", 4)


def test_unopenable_store(cli):
    """The store cannot be opened (its lock file is a directory: fails even for root)."""
    lock = cli.root / "lmdb" / "lock.mdb"
    lock.unlink()
    lock.mkdir()
    error_line(cli("ledger", "verify"), "E-STORAGE", 4)


def test_init_twice_is_a_conflict(cli):
    error_line(cli("init"), "E-CONFLICT", 2)


@pytest.mark.parametrize("where", ["header", "meta pages", "truncated"])
def test_corrupted_lmdb_file(cli, where):
    data = cli.root / "lmdb" / "data.mdb"
    with data.open("r+b") as f:
        if where == "header":
            f.write(b"\xde\xad\xbe\xef" * 8)
        elif where == "meta pages":
            for page in (0, 1):
                f.seek(page * 4096 + 16)
                f.write(b"\xff" * 64)
        else:
            f.truncate(100)
    res = cli("ledger", "verify")
    assert "corrupt" in error_line(res, "E-CHAIN-BROKEN", 1)


def test_tampered_event_names_its_seq_in_text_and_json(cli, tmp_path):
    for i in range(4):
        assert (
            cli(
                "ledger",
                "append",
                "--type",
                "ubl.entry",
                "--payload-file",
                payload(tmp_path, json.dumps({"i": i})),
            ).code
            == 0
        )
    store = Store(cli.root / "lmdb")
    with store.write() as txn:
        rec = bytearray(txn.get(seq_key(2), db=store.db("events")))
        rec[-1] ^= 0x01
        txn.put(seq_key(2), bytes(rec), db=store.db("events"))
    store.close()
    msg = error_line(cli("ledger", "verify"), "E-CHAIN-BROKEN", 1)
    assert msg.startswith("chain broken at seq 2:")
    res = cli("--json", "ledger", "verify")
    assert res.code == 1 and res.out == "" and "Traceback" not in res.err
    err = json.loads(res.err.strip().splitlines()[-1])
    assert err["error"]["code"] == "E-CHAIN-BROKEN"
    assert err["error"]["details"] == {"seq": 2}
    assert err["error"]["message"].startswith("chain broken at seq 2:")


def test_wrong_key_is_e_key_for_every_command(tmp_path):
    root = tmp_path / "led"
    assert run_cli("init", env={**cli_env(root), "CAP_LEDGER_HMAC_KEY": KEY_HEX}).code == 0
    wrong = {**cli_env(root), "CAP_LEDGER_HMAC_KEY": OTHER_KEY_HEX}
    pf = payload(tmp_path, "{}")
    for cmd in (
        ("ledger", "verify"),
        ("ledger", "log"),
        ("ledger", "append", "--type", "ubl.entry", "--payload-file", pf),
    ):
        res = run_cli(*cmd, env=wrong)
        msg = error_line(res, "E-KEY", 4)
        assert KEY_HEX not in res.err and OTHER_KEY_HEX not in res.err and "hk-" in msg
    res = run_cli("--json", "ledger", "verify", env=wrong)
    assert res.code == 4 and json.loads(res.err)["error"]["code"] == "E-KEY"
    short = run_cli("ledger", "verify", env={**cli_env(root), "CAP_LEDGER_HMAC_KEY": "abcd"})
    assert "abcd" not in error_line(short, "E-KEY", 4)


def test_json_errors_are_one_object_on_stderr(tmp_path):
    res = run_cli("--json", "ledger", "head", data=tmp_path / "none")
    assert res.code == 4 and res.out == ""
    doc = json.loads(res.err)
    assert set(doc) == {"error"} and doc["error"]["code"] == "E-NOT-INITIALIZED"
    assert isinstance(doc["error"]["message"], str)


def test_keys_never_appear_in_any_output(tmp_path):
    """With the key in the environment and debug logging, nothing a command prints (stdout
    or stderr) contains the key; the same for the key `init` generates."""
    root = tmp_path / "env"
    env = {**cli_env(root), "CAP_LEDGER_HMAC_KEY": KEY_HEX}
    generated = tmp_path / "dd"
    outputs = [
        run_cli("--log-level", "debug", "init", env=env),
        run_cli("--log-level", "debug", "--json", "init", data=generated),
    ]
    pf = payload(tmp_path, '{"a": 1}')
    for cmd in (
        ("ledger", "append", "--type", "ubl.entry", "--payload-file", pf),
        ("ledger", "log"),
        ("ledger", "head"),
        ("ledger", "verify"),
        ("ledger", "verify", "--from", "9"),
    ):
        for flags in ((), ("--json",)):
            outputs.append(run_cli("--log-level", "debug", *flags, *cmd, env=env))
            outputs.append(run_cli("--log-level", "debug", *flags, *cmd, data=generated))
    generated_hex = (generated / "keys" / "hmac.key").read_text().strip()
    assert len(generated_hex) == 64
    assert sum(r.code == 0 for r in outputs) >= 18
    for res in outputs:
        text = (res.out + res.err).lower()
        assert KEY_HEX not in text and generated_hex not in text
        assert "Traceback" not in res.err


def test_no_stdin_needed(cli):
    """Commands never wait for input (CI runs with no stdin)."""
    res = run_cli("ledger", "verify", data=cli.root, stdin=b"")
    assert res.code == 0 and res.out.startswith("OK: 1 events verified")
