"""``cap-agent registry add --selfverify`` and ``registry exec`` end to end, as a user runs
them from the README: exit codes, stderr codes, events and projection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ledger.sandbox_support import EXAMPLE, HOSTILE_ABI, hostile


def _key(cli, tmp_path: Path) -> str:
    keys = tmp_path / "keys"
    if not (keys / "me.ed25519.sk.json").exists():
        assert cli("keys", "generate", "--out", str(keys), "--name", "me").code == 0
    return str(keys / "me.ed25519.sk.json")


def _add(
    cli,
    tmp_path: Path,
    *extra: str,
    proof: Path | None = None,
    wasm: Path | None = None,
    abi: Path | None = None,
):
    return cli(
        "--json",
        "registry",
        "add",
        "--manifest",
        str(EXAMPLE / "manifest.json"),
        "--proof",
        str(proof or EXAMPLE / "proof.txt"),
        "--with-verifier",
        str(wasm or EXAMPLE / "verifier.wasm"),
        "--with-abi",
        str(abi or EXAMPLE / "verifier.abi.json"),
        "--signing-key",
        _key(cli, tmp_path),
        *extra,
    )


def _hostile(cli, tmp_path: Path, name: str) -> str:
    wasm, abi = tmp_path / f"{name}.wasm", tmp_path / "hostile.abi.json"
    wasm.write_bytes(hostile(name))
    abi.write_bytes(HOSTILE_ABI)
    res = _add(cli, tmp_path, wasm=wasm, abi=abi)
    assert res.code == 0, res.err
    return str(res.json()["id"])


def _events(cli, type_: str) -> list[dict]:
    res = cli("--json", "ledger", "log", "--type", type_)
    assert res.code == 0, res.err
    return res.lines()  # type: ignore[return-value]


def test_readme_flow_add_selfverify_then_exec(cli, tmp_path):
    res = _add(cli, tmp_path, "--selfverify")
    assert res.code == 0, res.err
    entry = res.json()
    assert entry["selfverify_status"] == "ok" and entry["selfverify_at"]
    assert entry["selfverify"]["log"] == ["info: proof matches SHA-256(manifest)"]
    assert entry["selfverify"]["engine"]["wasmtime"] == "50.0.1"
    (added,) = _events(cli, "registry.add")
    assert added["payload"]["selfverify"]["fuel_used"] == entry["selfverify"]["fuel_used"]

    run = cli("--json", "registry", "exec", "--id", entry["id"])
    assert run.code == 0, run.err
    doc = run.json()
    assert (doc["status"], doc["code"], doc["entry_id"]) == ("ok", None, entry["id"])
    assert doc["fuel_used"] == entry["selfverify"]["fuel_used"]  # same run, same fuel
    (event,) = _events(cli, "selfverify.result")
    assert event["seq"] == doc["seq"]
    payload = event["payload"]
    for field in ("status", "code", "fuel_used", "duration_us", "log", "engine", "at"):
        assert payload[field] == doc[field]
    shown = cli("--json", "registry", "show", "--id", entry["id"]).json()
    assert (shown["selfverify_status"], shown["selfverify_at"]) == ("ok", doc["at"])
    assert shown["fuel_used"] == doc["fuel_used"]
    assert cli("registry", "verify", "--id", entry["id"]).code == 0

    human = cli("registry", "exec", "--id", entry["id"])
    assert human.code == 0
    assert "selfverify ok: verifier accepted the proof" in human.out
    assert "info: proof matches SHA-256(manifest)" in human.out


def test_tampered_proof_exits_1_with_the_code_and_records_fail(cli, tmp_path):
    bad = tmp_path / "bad-proof.txt"
    bad.write_text("0" * 64 + "\n")
    res = _add(cli, tmp_path, "--selfverify", proof=bad)
    assert res.code == 1
    assert json.loads(res.err)["error"]["code"] == "E-VERIFY-FAILED"
    entry = res.json()  # the entry is recorded, with its verdict
    assert entry["selfverify_status"] == "fail"
    listed = cli("--json", "registry", "list", "--status", "fail").json()
    assert [e["id"] for e in listed["entries"]] == [entry["id"]]
    again = cli("registry", "exec", "--id", entry["id"])
    assert again.code == 1 and "error[E-VERIFY-FAILED]" in again.err
    assert "warn: proof does not match SHA-256(manifest)" in again.out


@pytest.mark.parametrize(
    ("name", "flags", "code"),
    [
        ("infinite_loop", ("--fuel", "100000"), "E-SANDBOX-OUT-OF-FUEL"),
        ("infinite_loop", ("--fuel", str(10**15), "--call-ms", "50"), "E-SANDBOX-TIMEOUT"),
        ("memory_bomb", ("--memory-mb", "2"), "E-SANDBOX-MEMORY"),
        ("deep_recursion", ("--stack-kb", "64"), "E-SANDBOX-TRAP"),
        ("wasi_import", (), "E-SANDBOX-FORBIDDEN-IMPORT"),
        ("huge_memory", (), "E-SANDBOX-MEMORY"),
    ],
)
def test_exec_of_hostile_entries_exits_1_with_their_code(cli, tmp_path, name, flags, code):
    entry_id = _hostile(cli, tmp_path, name)
    res = cli("registry", "exec", "--id", entry_id, *flags)
    assert res.code == 1
    assert f"error[{code}]" in res.err
    assert "Traceback" not in res.err
    (event,) = _events(cli, "selfverify.result")
    assert (event["payload"]["status"], event["payload"]["code"]) == ("fail", code)
    shown = cli("--json", "registry", "show", "--id", entry_id).json()
    assert (shown["selfverify_status"], shown["selfverify_code"]) == ("fail", code)


def test_abi_cannot_raise_the_hosts_limits(cli, tmp_path):
    entry = _add(cli, tmp_path).json()
    res = cli("--json", "registry", "exec", "--id", entry["id"], "--memory-mb", "4")
    assert res.code == 0, res.err
    # host 4 MiB beats the ABI's 8; the ABI's 200M fuel beats the host's default 1e9
    assert res.json()["limits"] == {
        "fuel": 200_000_000,
        "memory_mb": 4,
        "stack_kb": 512,
        "call_ms": 5000,
    }


def test_second_exec_process_uses_the_disk_cache(cli, tmp_path):
    entry = _add(cli, tmp_path).json()
    assert cli("registry", "exec", "--id", entry["id"]).code == 0
    cache = Path(cli.root) / "cache" / "wasm"
    (artifact,) = cache.glob("*.cwasm")
    stamp = artifact.stat().st_mtime_ns
    assert cli("registry", "exec", "--id", entry["id"]).code == 0
    assert artifact.stat().st_mtime_ns == stamp  # loaded, not recompiled and rewritten


def test_exec_errors(cli, tmp_path):
    missing = cli("--json", "registry", "exec", "--id", "f" * 64)
    assert missing.code == 3
    assert json.loads(missing.err)["error"]["code"] == "E-NOT-FOUND"
    assert _events(cli, "selfverify.result") == []
    entry = _add(cli, tmp_path).json()
    for flags in (("--fuel", "0"), ("--memory-mb", "5000"), ("--call-ms", "x")):
        bad = cli("registry", "exec", "--id", entry["id"], *flags)
        assert bad.code == 2 and "error[E-BAD-INPUT]" in bad.err
    no_sv = _add(cli, tmp_path, "--fuel", "10")
    assert no_sv.code == 2 and "--selfverify" in no_sv.err
