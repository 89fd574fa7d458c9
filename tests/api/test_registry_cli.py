"""``cap-agent registry ...`` end to end: add, show, list, verify, revoke, as-of, errors."""

from __future__ import annotations

from pathlib import Path

from ledger.canonical import packb, unpackb
from ledger.datadir import DataDir
from ledger.keys import StaticKeyProvider, load_hmac_key_file
from ledger.ledger import Ledger
from ledger.registry_entry import V09_FIELDS
from projections import default_consumers
from tests.registry_support import write_package


def _add(cli, tmp_path, tag="a", name="age-check"):
    files = write_package(tmp_path / f"pkg-{tag}", tag, name=name)
    keys = tmp_path / "keys"
    if not (keys / "signer.ed25519.sk.json").exists():
        assert cli("keys", "generate", "--out", str(keys), "--name", "signer").code == 0
    res = cli(
        "--json",
        "registry",
        "add",
        "--manifest",
        str(files["manifest"]),
        "--proof",
        str(files["proof"]),
        "--with-verifier",
        str(files["wasm"]),
        "--with-abi",
        str(files["abi"]),
        "--signing-key",
        str(keys / "signer.ed25519.sk.json"),
    )
    assert res.code == 0, res.err
    return res.json()


def test_add_show_list_verify_revoke(cli, tmp_path):
    entry = _add(cli, tmp_path)
    assert all(f in entry for f in V09_FIELDS) and entry["seq"] == 5
    shown = cli("--json", "registry", "show", "--id", entry["id"]).json()
    assert {f: shown[f] for f in V09_FIELDS} == {f: entry[f] for f in V09_FIELDS}
    human = cli("registry", "show", "--id", entry["id"])
    assert "verifier_name" in human.out and "age-check" in human.out

    other = _add(cli, tmp_path, "b", name="other")
    listed = cli("--json", "registry", "list").json()
    assert [e["id"] for e in listed["entries"]] == sorted([entry["id"], other["id"]])
    assert listed["next_cursor"] is None
    assert cli("--json", "registry", "list", "--status", "ok").json()["entries"] == []
    page = cli("--json", "registry", "list", "--limit", "1").json()
    assert len(page["entries"]) == 1 and page["next_cursor"]
    assert "VERIFIER" in cli("registry", "list").out

    ok = cli("--json", "registry", "verify", "--id", entry["id"])
    assert ok.code == 0 and ok.json()["signature"] == "valid"
    assert cli("registry", "verify", "--id", entry["id"]).out.startswith("OK")

    refs = {b["blob_id"]: b["refcount"] for b in cli("--json", "blob", "ls").json()["blobs"]}
    assert refs[entry["blob_wasm"]] == 1
    rev = cli("--json", "registry", "revoke", "--id", entry["id"], "--reason", "test")
    assert rev.code == 0
    refs = {b["blob_id"]: b["refcount"] for b in cli("--json", "blob", "ls").json()["blobs"]}
    assert refs[entry["blob_wasm"]] == 0
    again = cli("registry", "revoke", "--id", entry["id"])
    assert again.code == 2 and "E-CONFLICT" in again.err

    before = cli(
        "--json", "registry", "show", "--id", entry["id"], "--as-of", str(rev.json()["seq"] - 1)
    )
    assert before.json()["revoked"] is False
    assert cli("--json", "registry", "show", "--id", entry["id"]).json()["revoked"] is True
    early = cli("registry", "show", "--id", entry["id"], "--as-of", "4")
    assert early.code == 3 and "E-NOT-FOUND" in early.err
    as_of = cli("--json", "registry", "list", "--as-of", "5").json()["entries"]
    assert [e["id"] for e in as_of] == [entry["id"]]


def test_errors(cli, tmp_path):
    res = cli("registry", "show", "--id", "nope")
    assert res.code == 3 and "error[E-NOT-FOUND]" in res.err
    res = cli("registry", "verify", "--id", "nope")
    assert res.code == 3
    res = cli("registry", "revoke", "--id", "nope")
    assert res.code == 3
    files = write_package(tmp_path / "pkg")
    files["abi"].write_text('{"abi": "cap-verifier/1", "name": ""}')
    assert cli("keys", "generate", "--out", str(tmp_path / "k")).code == 0
    res = cli(
        "registry", "add", "--manifest", str(files["manifest"]), "--proof", str(files["proof"]),
        "--with-verifier", str(files["wasm"]), "--with-abi", str(files["abi"]),
        "--signing-key", str(tmp_path / "k" / "signing.ed25519.sk.json"),
    )  # fmt: skip
    assert res.code == 1 and "E-ABI-INVALID" in res.err and "Traceback" not in res.err
    res = cli(
        "registry", "add", "--manifest", str(tmp_path / "missing"), "--proof", str(files["proof"]),
        "--with-verifier", str(files["wasm"]), "--with-abi", str(files["abi"]),
        "--signing-key", str(tmp_path / "k" / "signing.ed25519.sk.json"),
    )  # fmt: skip
    assert res.code == 2 and "E-BAD-INPUT" in res.err
    assert len(cli("--json", "ledger", "log").lines()) == 1
    res = cli("registry", "list", "--status", "maybe")
    assert res.code == 2


def test_tampered_row_fails_verify(cli, tmp_path):
    entry = _add(cli, tmp_path)
    data = DataDir(Path(cli.root))
    keys = StaticKeyProvider(load_hmac_key_file(data.hmac_key_file))
    with Ledger.open(data, keys, default_consumers(data)) as led, led.store.write() as txn:
        db = led.store.db("proj_registry")
        row = unpackb(bytes(txn.get(entry["id"].encode(), db=db)))
        row["verifier_name"] = "evil"
        txn.put(entry["id"].encode(), packb(row), db=db)
    res = cli("registry", "verify", "--id", entry["id"])
    assert res.code == 1 and "error[E-SIGNATURE-INVALID]" in res.err
