"""``cap-agent tokens create|list|revoke`` through the real CLI."""

from __future__ import annotations

import re


def test_create_prints_the_token_once_and_keeps_only_its_hash(cli):
    res = cli("--json", "tokens", "create", "--name", "ops", "--role", "writer")
    assert res.code == 0, res.err
    doc = res.json()
    token = doc["token"]
    assert re.match(r"^cap_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$", token)
    assert (doc["name"], doc["role"]) == ("ops", "writer")
    listed = cli("--json", "tokens", "list")
    assert token not in listed.out
    assert [t["name"] for t in listed.json()["tokens"]] == ["ops"]
    log = cli("--json", "ledger", "log", "--type", "token.*")
    assert token not in log.out
    (event,) = log.lines()
    assert event["type"] == "token.create"
    assert set(event["payload"]) == {"name", "role", "token_id", "hash"}
    data = (cli.root / "lmdb" / "data.mdb").read_bytes()
    assert token.encode() not in data


def test_human_output_shows_token_on_first_line(cli):
    res = cli("tokens", "create", "--name", "h", "--role", "reader")
    assert res.code == 0
    assert res.out.splitlines()[0].startswith("cap_")


def test_duplicate_name_is_conflict_then_revoke_frees_it(cli):
    assert cli("tokens", "create", "--name", "a", "--role", "admin").code == 0
    res = cli("tokens", "create", "--name", "a", "--role", "reader")
    assert res.code == 2
    assert "error[E-CONFLICT]" in res.err
    res = cli("--json", "tokens", "revoke", "--name", "a")
    assert res.code == 0
    assert res.json()["name"] == "a"
    assert cli("--json", "tokens", "list").json()["tokens"] == []
    all_ = cli("--json", "tokens", "list", "--all").json()["tokens"]
    assert [t["revoked"] for t in all_] == [True]
    assert cli("tokens", "create", "--name", "a", "--role", "reader").code == 0


def test_revoke_unknown_is_not_found(cli):
    res = cli("tokens", "revoke", "--name", "ghost")
    assert res.code == 3
    assert "error[E-NOT-FOUND]" in res.err


def test_bad_role_and_bad_name_are_usage_errors(cli):
    res = cli("tokens", "create", "--name", "x", "--role", "root")
    assert res.code == 2 and "E-BAD-INPUT" in res.err
    res = cli("tokens", "create", "--name", "bad name!", "--role", "reader")
    assert res.code == 2 and "E-BAD-INPUT" in res.err
    assert "Traceback" not in res.err


def test_tokens_on_uninitialized_dir(tmp_path):
    from tests.conftest import run_cli

    res = run_cli("tokens", "list", data=tmp_path / "none")
    assert res.code == 4
    assert "E-NOT-INITIALIZED" in res.err and "cap-agent init" in res.err
