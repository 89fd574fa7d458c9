"""The seed's proof of done through the real CLI, and its failures with their codes."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, cli_env, run_cli


def run_tcap(*args: str, data=None):
    """``tcap ...`` (the console script's entry point) in a subprocess."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from api.cli import tcap_main; sys.exit(tcap_main())",
            *args,
        ],
        capture_output=True,
        env=cli_env(data),
        cwd=REPO,
        timeout=120,
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_proof_of_done(cli, tmp_path):
    payload = tmp_path / "att.json"
    payload.write_text(json.dumps({"subject": "sha3:ab12", "claim": "proof verified", "score": 7}))
    att = cli(
        "--json", "ledger", "append", "--type", "attestation.issue", "--payload-file", str(payload)
    )
    assert att.code == 0, att.err
    span = att.json()["id"]
    ubl = tmp_path / "ubl.json"
    ubl.write_text(json.dumps({"account": "royalties", "amount_cents": 1200, "ref": span}))
    assert cli("ledger", "append", "--type", "ubl.entry", "--payload-file", str(ubl)).code == 0
    assert cli("keys", "generate", "--out", str(tmp_path / "k")).code == 0
    sk, pk = tmp_path / "k/signing.ed25519.sk.json", tmp_path / "k/signing.ed25519.pk.json"
    out = tmp_path / "proof.tcap"
    res = cli("tcap", "pack", "--out", str(out), "--signing-key", str(sk))
    assert res.code == 0, res.err
    assert "3 blocks" in res.out  # the genesis and two blocks

    nowhere = tmp_path / "no-ledger-here"  # verify, seek, extract need no data directory
    code, stdout, stderr = run_tcap("verify", str(out), "--pubkey", str(pk), data=nowhere)
    assert code == 0, stderr
    assert stdout.splitlines()[0] == "OK" and "3 blocks" in stdout and "(pinned)" in stdout
    # With the ledger's chain key, every block's sig (the HMAC chain value) is checked too.
    hmac_key = str(cli.root / "keys" / "hmac.key")
    res = run_cli("--hmac-key-file", hmac_key, "tcap", "verify", str(out), data=nowhere)
    assert res.code == 0 and "sig (HMAC chain) checked on 3 of 3 blocks" in res.out
    code, stdout, stderr = run_tcap("verify", str(out), data=nowhere)
    assert code == 0 and "--pubkey" in stderr  # the embedded key only: a warning

    code, stdout, _ = run_tcap("--json", "seek", str(out), span, data=nowhere)
    assert code == 0
    found = json.loads(stdout)
    assert found["block"]["span_type"] == "attestation.issue"
    assert found["event"]["payload"]["claim"] == "proof verified"

    code, stdout, _ = run_tcap(
        "extract", str(out), "--span-type", "attestation.issue", data=nowhere
    )
    assert code == 0
    [line] = stdout.splitlines()
    assert json.loads(line) == att.json()  # reconciles with the ledger's own record

    res = run_cli("--json", "tcap", "extract", str(out), data=nowhere)
    assert [e["type"] for e in res.lines()] == ["ledger.genesis", "attestation.issue", "ubl.entry"]


def test_failures_print_codes(cli, tmp_path):
    assert cli("keys", "generate", "--out", str(tmp_path / "k")).code == 0
    assert cli("keys", "generate", "--out", str(tmp_path / "k"), "--name", "other").code == 0
    sk = tmp_path / "k/signing.ed25519.sk.json"
    out = tmp_path / "c.tcap"
    assert (
        cli("tcap", "pack", "--out", str(out), "--signing-key", str(sk), "--format", "cbor").code
        == 0
    )

    code, _, err = run_tcap(
        "verify", str(out), "--pubkey", str(tmp_path / "k/other.ed25519.pk.json")
    )
    assert code == 1 and "error[E-SIGNATURE-INVALID]" in err

    bad = tmp_path / "bad.tcap"
    data = bytearray(out.read_bytes())
    data[-3] ^= 0x40
    bad.write_bytes(data)
    code, _, err = run_tcap("--json", "verify", str(bad))
    assert code == 1
    assert json.loads(err.splitlines()[-1])["error"]["code"] == "E-CAPSULE-CORRUPT"
    assert "Traceback" not in err

    bad.write_bytes(out.read_bytes()[:5000])
    code, _, err = run_tcap("verify", str(bad))
    assert code == 1 and "error[E-CAPSULE-CORRUPT]" in err and "8 KiB" in err

    code, _, err = run_tcap("seek", str(out), "ev-nope-1")
    assert code == 3 and "error[E-NOT-FOUND]" in err
    code, _, err = run_tcap("verify", str(tmp_path / "missing.tcap"))
    assert code == 3 and "error[E-NOT-FOUND]" in err

    res = cli(
        "tcap",
        "pack",
        "--out",
        str(tmp_path / "big.tcap"),
        "--signing-key",
        str(sk),
        "--max-bytes",
        "8300",
    )
    assert res.code == 2 and "error[E-CAPSULE-TOO-LARGE]" in res.err and "--split" in res.err
    res = cli("tcap", "pack", "--out", str(out), "--signing-key", str(sk))
    assert res.code == 2 and "already exists" in res.err


def test_pack_needs_a_ledger(tmp_path):
    res = run_cli(
        "tcap",
        "pack",
        "--out",
        str(tmp_path / "c.tcap"),
        "--signing-key",
        "x",
        data=tmp_path / "none",
    )
    assert res.code == 4 and "error[E-NOT-INITIALIZED]" in res.err and "cap-agent init" in res.err


def test_encrypted_split_series_from_the_cli(cli, tmp_path):
    for i in range(12):
        p = tmp_path / f"p{i}.json"
        p.write_text(json.dumps({"i": i, "pad": "z" * 300}))
        assert cli("ledger", "append", "--type", "unote.tx", "--payload-file", str(p)).code == 0
    assert cli("keys", "generate", "--out", str(tmp_path / "k")).code == 0
    sk, pk = tmp_path / "k/signing.ed25519.sk.json", tmp_path / "k/signing.ed25519.pk.json"
    bk = tmp_path / "block.key.json"
    assert cli("tcap", "keygen", "--out", str(bk)).code == 0
    res = cli(
        "--json",
        "tcap",
        "pack",
        "--out",
        str(tmp_path / "s.tcap"),
        "--signing-key",
        str(sk),
        "--encrypt-key",
        str(bk),
        "--compression",
        "zstd",
        "--split",
        "--max-bytes",
        "11000",
    )
    assert res.code == 0, res.err
    parts = [c["path"] for c in res.json()["capsules"]]
    assert len(parts) > 1
    code, stdout, err = run_tcap("verify", *parts, "--pubkey", str(pk), "--decrypt-key", str(bk))
    assert code == 0, err
    assert stdout.startswith("OK\nseries of") and "payloads checked" in stdout
    code, _, err = run_tcap("verify", *parts[1:], "--pubkey", str(pk))
    assert code == 1 and "E-CAPSULE-CORRUPT" in err and "series" in err
    code, stdout, _ = run_tcap("extract", parts[-1], "--decrypt-key", str(bk))
    assert code == 0 and all(json.loads(x)["type"] == "unote.tx" for x in stdout.splitlines())
    code, _, err = run_tcap("extract", parts[-1])
    assert code == 4 and "E-KEY" in err
