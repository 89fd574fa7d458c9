from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import BadInput, CheckFailed, EnvironmentProblem, NotFound
from ledger.merkle import merkle_root
from projections.tcap import HEADER_SIZE, Header, PackOptions, pack
from projections.tcap.proof import InclusionProof, check_proof, load_proof, prove
from tests.conftest import run_cli
from tests.projections.conftest import make_signer


@pytest.fixture
def capsule(filled, signer, tmp_path):
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    return out


def _ids(ledger) -> list[str]:
    return [ev.id for ev in ledger.log.events()]


def test_every_span_proves_and_checks_against_the_header_alone(filled, signer, capsule):
    ids = _ids(filled)
    for i, span in enumerate(ids):
        proof = prove(capsule, span)
        assert (proof.leaf_index, proof.tree_size) == (i, len(ids))
        assert proof.header == capsule.read_bytes()[:HEADER_SIZE]
        report = check_proof(proof, span, signer.public_key)
        assert report.event == filled.log.get(i).to_json()
        assert report.pinned and not report.warnings
    leaves = [ev.b3 for ev in filled.log.events()]
    assert report.merkle_root == merkle_root(leaves).hex()


def test_a_proof_roundtrips_through_json(filled, capsule, tmp_path):
    proof = prove(capsule, _ids(filled)[7])
    path = tmp_path / "p.json"
    path.write_text(json.dumps(proof.to_json()))
    assert load_proof(path) == proof
    assert check_proof(load_proof(path)).warnings  # embedded key only: says so


def test_wrong_span_fails(filled, capsule):
    ids = _ids(filled)
    proof, other = prove(capsule, ids[3]), prove(capsule, ids[4])
    with pytest.raises(CheckFailed) as info:
        check_proof(proof, ids[4])
    assert info.value.code == "E-VERIFY-FAILED"
    # Another span's block and body on this span's path: the root differs.
    swapped = replace(proof, block=other.block, body=other.body)
    with pytest.raises(CheckFailed) as info:
        check_proof(swapped)
    assert info.value.code == "E-HASH-MISMATCH"
    with pytest.raises(CheckFailed):
        check_proof(replace(proof, leaf_index=4))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_tampered_path_fails(filled, capsule, data):
    proof = prove(capsule, _ids(filled)[data.draw(st.integers(0, 30))])
    i = data.draw(st.integers(0, len(proof.path) - 1))
    bit = data.draw(st.integers(0, 255))
    h = bytearray(proof.path[i])
    h[bit // 8] ^= 1 << (bit % 8)
    path = (*proof.path[:i], bytes(h), *proof.path[i + 1 :])
    with pytest.raises(CheckFailed) as info:
        check_proof(replace(proof, path=path))
    assert info.value.code == "E-HASH-MISMATCH"


def test_truncated_or_extended_paths_and_sizes_fail(filled, capsule):
    proof = prove(capsule, _ids(filled)[10])
    for bad in (
        replace(proof, path=proof.path[:-1]),
        replace(proof, path=(*proof.path, proof.path[0])),
        replace(proof, tree_size=proof.tree_size - 1),
    ):
        with pytest.raises(CheckFailed) as info:
            check_proof(bad)
        assert info.value.code == "E-HASH-MISMATCH"


def test_tampered_event_body_or_block_fails(filled, capsule):
    proof = prove(capsule, _ids(filled)[5])
    body = bytearray(proof.body)
    body[-3] ^= 1
    with pytest.raises(CheckFailed) as info:
        check_proof(replace(proof, body=bytes(body)))
    assert info.value.code == "E-HASH-MISMATCH"
    forged = {**proof.block, "span_type": "unote.tx"}
    with pytest.raises(CheckFailed):
        check_proof(replace(proof, block=forged))


def test_header_tampering_and_the_pinned_key(filled, signer, capsule, tmp_path):
    proof = prove(capsule, _ids(filled)[2])
    header = bytearray(proof.header)
    header[290] ^= 1  # inside merkle_root: header_b3 no longer matches
    with pytest.raises(CheckFailed) as info:
        check_proof(replace(proof, header=bytes(header)))
    assert info.value.code == "E-CAPSULE-CORRUPT"
    other = make_signer(tmp_path / "o", "other")
    with pytest.raises(CheckFailed) as info:
        check_proof(proof, pubkey=other.public_key)
    assert info.value.code == "E-SIGNATURE-INVALID"
    # A forger re-signing a header with their own root is caught by the pinned key.
    head = Header.parse(proof.header, None)
    fake = replace(head, merkle_root=bytes(32), public_key=other.public_key)
    fake = replace(fake, header_b3=fake.compute_b3())
    fake = replace(fake, seal=other.keypair.sign(fake.seal_message()))
    with pytest.raises(CheckFailed) as info:
        check_proof(replace(proof, header=fake.pack()), pubkey=signer.public_key)
    assert info.value.code == "E-SIGNATURE-INVALID"


def test_prove_errors(filled, capsule, block_keys, signer, tmp_path):
    with pytest.raises(NotFound):
        prove(capsule, "ev-nope-1")
    enc = tmp_path / "e.tcap"
    pack(filled.log, enc, signer.keypair, PackOptions(), block_keys)
    span = _ids(filled)[4]
    with pytest.raises(EnvironmentProblem) as info:
        prove(enc, span)
    assert info.value.code == "E-KEY"
    proof = prove(enc, span, block_keys)  # with the key: the plaintext body is proven
    assert check_proof(proof, span).event["seq"] == 4


def test_filtered_and_zstd_cbor_capsules(filled, signer, tmp_path):
    out = tmp_path / "f.tcap"
    pack(
        filled.log,
        out,
        signer.keypair,
        PackOptions(wire="cbor", compression="zstd", types=("ubl.*",), start=3),
    )
    span = next(ev.id for ev in filled.log.events(types=["ubl.entry"]) if ev.seq >= 3)
    report = check_proof(prove(out, span), span, signer.public_key)
    assert report.event["type"] == "ubl.entry" and report.leaf_index == 0


@pytest.mark.parametrize(
    "doc",
    [
        "[]",
        "{}",
        '{"format": "x"}',
    ],
)
def test_malformed_proof_files(tmp_path, doc):
    path = tmp_path / "p.json"
    path.write_text(doc)
    with pytest.raises(BadInput):
        load_proof(path)


def test_malformed_proof_fields(filled, capsule):
    good = prove(capsule, _ids(filled)[1]).to_json()
    for bad in (
        {"header": base64.b64encode(b"short").decode()},
        {"leaf_index": -1},
        {"path": ["zz"]},
        {"body": "%%%"},
        {"block": {**good["block"], "b3": "AB" * 32}},
    ):
        with pytest.raises(BadInput):
            InclusionProof.from_json({**good, **bad})


def test_cli_prove_and_check(filled, signer, capsule, tmp_path):
    span = _ids(filled)[9]
    proof_file = tmp_path / "proof.json"
    res = run_cli("tcap", "prove", str(capsule), span, "--out", str(proof_file), data=tmp_path)
    assert res.code == 0, res.err
    res = run_cli(
        "--json",
        "tcap",
        "check-proof",
        str(proof_file),
        "--span-id",
        span,
        "--pubkey",
        str(signer.pk_path),
        data=tmp_path / "no-ledger-needed",
    )
    assert res.code == 0, res.err
    assert res.json()["event"]["id"] == span
    doc = json.loads(proof_file.read_text())
    doc["path"][0] = "0" * 64
    proof_file.write_text(json.dumps(doc))
    res = run_cli("tcap", "check-proof", str(proof_file), data=tmp_path)
    assert res.code == 1 and "error[E-HASH-MISMATCH]" in res.err
    res = run_cli("tcap", "prove", str(capsule), "ev-missing", data=tmp_path)
    assert res.code == 3 and "E-NOT-FOUND" in res.err
    printed = run_cli("tcap", "prove", str(capsule), span, data=tmp_path)
    assert json.loads(printed.out)["leaf_index"] == 9
