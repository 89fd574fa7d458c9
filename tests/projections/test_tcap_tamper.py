"""Any change to a sealed capsule makes verify fail, naming where; wrong keys are refused."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import CheckFailed
from projections.tcap import Capsule, PackOptions, pack, verify_capsule
from projections.tcap.blocks import iter_blocks
from projections.tcap.format import HEADER_SIZE
from tests.projections.conftest import make_signer, reseal

FAILS = {"E-CAPSULE-CORRUPT", "E-SIGNATURE-INVALID"}
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def sections(path):
    with Capsule(path) as cap:
        h = cap.header
        return {
            "header": (0, HEADER_SIZE),
            "manifest": (h.manifest_off, h.index_off),
            "index": (h.index_off, h.first_block_off),
            "blocks": (h.first_block_off, h.capsule_len),
        }


def fails(path, pubkey, **kw) -> CheckFailed:
    with pytest.raises(CheckFailed) as info:
        verify_capsule(path, pubkey, **kw)
    assert info.value.code in FAILS, info.value
    return info.value


@pytest.mark.parametrize("wire", ["jsonl", "cbor"])
@pytest.mark.parametrize("region", ["header", "manifest", "index", "blocks"])
def test_any_single_byte_change_fails(filled, signer, tmp_path, wire, region):
    src = tmp_path / "c.tcap"
    pack(filled.log, src, signer.keypair, PackOptions(wire=wire, compression="zstd"))
    original = src.read_bytes()
    lo, hi = sections(src)[region]
    target = tmp_path / "t.tcap"

    @SETTINGS
    @given(offset=st.integers(lo, hi - 1), xor=st.integers(1, 255))
    def check(offset, xor):
        data = bytearray(original)
        data[offset] ^= xor
        target.write_bytes(data)
        err = fails(target, signer.public_key)
        if region != "header":
            assert err.details.get("where") == "body"  # capsule_b3 catches it first

    check()
    target.write_bytes(original)
    assert verify_capsule(target, signer.public_key).blocks == 31


def test_truncation_and_appending_fail(filled, signer, tmp_path):
    src = tmp_path / "c.tcap"
    pack(filled.log, src, signer.keypair, PackOptions(wire="cbor"))
    original = src.read_bytes()
    target = tmp_path / "t.tcap"

    @SETTINGS
    @given(cut=st.integers(0, len(original) - 1))
    def truncated(cut):
        target.write_bytes(original[:cut])
        err = fails(target, signer.public_key)
        assert err.code == "E-CAPSULE-CORRUPT"

    @SETTINGS
    @given(extra=st.binary(min_size=1, max_size=64))
    def appended(extra):
        target.write_bytes(original + extra)
        err = fails(target, signer.public_key)
        assert "trailing" in err.message

    truncated()
    appended()


def test_wrong_pubkey_fails(filled, signer, tmp_path):
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    other = make_signer(tmp_path / "k2", "other")
    err = fails(out, other.public_key)
    assert err.code == "E-SIGNATURE-INVALID"
    assert "pinned" in err.message


def test_resealed_by_another_key(filled, signer, tmp_path):
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    mallory = make_signer(tmp_path / "k2", "mallory")
    reseal(out, mallory.keypair, lambda body: None)
    assert fails(out, signer.public_key).code == "E-SIGNATURE-INVALID"
    # Unpinned, the embedded key is all there is: it passes, with a warning saying so.
    report = verify_capsule(out)
    assert report.signer == base64.b64encode(mallory.public_key).decode()
    assert any("--pubkey" in w for w in report.warnings)


def _block_span(path, n):
    """(start, end) file offsets of block ``n``'s encoded bytes."""
    with Capsule(path) as cap:
        base = cap.header.first_block_off
        for i, (off, length, _) in enumerate(iter_blocks(cap.blocks_region(), cap.header.wire)):
            if i == n:
                return base + off + 4, base + off + 4 + length
    raise AssertionError


def _replace_in(body, start, old: bytes, new: bytes):
    rel = start - HEADER_SIZE
    i = body.index(old, rel)
    body[i : i + len(old)] = new


@pytest.mark.parametrize(
    ("what", "where"),
    [
        ("prev_b3", "block 5"),
        ("payload", "block 5"),
        ("height", "block 5"),
        ("merkle", "manifest"),
        ("index", "index"),
        ("manifest_order", "manifest"),
    ],
)
def test_checks_behind_the_seal(filled, signer, tmp_path, what, where):
    """A properly re-sealed but inconsistent capsule (a buggy packer) is still caught."""
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    start, end = _block_span(out, 5)
    data = out.read_bytes()
    block = json.loads(data[start:end])
    secs = sections(out)

    def mutate(body):
        if what == "prev_b3":
            h = block["prev_b3"]
            _replace_in(
                body, start, h.encode(), ("0" if h[0] != "0" else "1").encode() + h[1:].encode()
            )
        elif what == "payload":
            p = block["payload"]
            flipped = ("B" if p[10] != "B" else "C") + p[11:]
            _replace_in(body, start, p.encode(), (p[:10] + flipped).encode())
        elif what == "height":
            _replace_in(body, start, b'"height":5,', b'"height":6,')
        elif what == "merkle":
            m = json.loads(data[secs["manifest"][0] : secs["manifest"][1]])
            r = m["merkle"]["root"]
            _replace_in(
                body,
                HEADER_SIZE,
                r.encode(),
                ("0" if r[0] != "0" else "1").encode() + r[1:].encode(),
            )
        elif what == "index":
            # Point the last index entry one byte further into the blocks.
            at = secs["blocks"][0] - HEADER_SIZE - 40 + 16
            (off,) = struct.unpack_from("<Q", body, at)
            struct.pack_into("<Q", body, at, off + 1)
        elif what == "manifest_order":  # valid JSON, same length, keys out of order
            _replace_in(
                body,
                HEADER_SIZE,
                b'"mode":"embedded","part":null',
                b'"part":null,"mode":"embedded"',
            )

    reseal(out, signer.keypair, mutate)
    err = fails(out, signer.public_key)
    assert err.code == "E-CAPSULE-CORRUPT"
    assert err.details["where"].startswith(where), err
    if what == "manifest_order":
        assert "canonical" in err.message


@pytest.mark.parametrize("block", [3, 15, 16, 29])
def test_two_process_walk_finds_the_same(filled, signer, tmp_path, block):
    """The block walk split across two processes reports what one process reports: the
    same summary on a good capsule, the same first fault on a bad one (either half, or
    the seam between them: 31 blocks split at block 15)."""
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions(wire="cbor"))
    one = verify_capsule(out, signer.public_key, workers=1)
    two = verify_capsule(out, signer.public_key, workers=2)
    assert one == two
    start, _ = _block_span(out, block)

    def mutate(body):  # break the block's prev_b3 link, keep everything else
        rel = start - HEADER_SIZE
        i = body.index(b"gprev_b3X ", rel) + len(b"gprev_b3X ")
        body[i] ^= 1

    reseal(out, signer.keypair, mutate)
    errors = []
    for workers in (1, 2):
        with pytest.raises(CheckFailed) as info:
            verify_capsule(out, signer.public_key, workers=workers)
        errors.append((info.value.code, info.value.message))
    assert errors[0] == errors[1]
    assert f"block {block} at offset" in errors[0][1]


def test_sig_is_the_ledgers_hmac_chain_checked_with_the_chain_key(filled, keys, signer, tmp_path):
    from ledger.errors import EnvironmentProblem
    from ledger.keys import StaticKeyProvider

    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    assert verify_capsule(out, signer.public_key, macs=keys).sigs_checked == 31
    assert verify_capsule(out, signer.public_key).sigs_checked is None
    with pytest.raises(EnvironmentProblem) as info:  # a different chain key holds no kid
        verify_capsule(out, signer.public_key, macs=StaticKeyProvider(b"\x07" * 32))
    assert info.value.code == "E-KEY"

    filtered = tmp_path / "f.tcap"
    pack(filled.log, filtered, signer.keypair, PackOptions(start=4, stop=9, types=("ubl.entry",)))
    # Blocks 5 and 8: neither has its predecessor in the capsule, so neither sig is checkable.
    assert verify_capsule(filtered, signer.public_key, macs=keys).sigs_checked == 0
    ranged = tmp_path / "r.tcap"
    pack(filled.log, ranged, signer.keypair, PackOptions(start=4, stop=9))
    assert verify_capsule(ranged, signer.public_key, macs=keys).sigs_checked == 5

    start, end = _block_span(out, 7)
    sig = json.loads(out.read_bytes()[start:end])["sig"]

    def mutate(body):
        _replace_in(body, start, sig.encode(), (("0" if sig[0] != "0" else "1") + sig[1:]).encode())

    reseal(out, signer.keypair, mutate)
    assert verify_capsule(out, signer.public_key).blocks == 31  # without the key: unchecked
    with pytest.raises(CheckFailed) as bad:
        verify_capsule(out, signer.public_key, macs=keys)
    assert bad.value.code == "E-SIGNATURE-INVALID"
    assert bad.value.details["where"].startswith("block 7 ")
