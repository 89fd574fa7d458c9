"""Pack -> verify -> seek -> extract round trips for both wire formats and all caps."""

from __future__ import annotations

import itertools
import json

import cbor2
import pytest

from ledger.canonical import canonical_json
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from projections.tcap import Capsule, PackOptions, pack, verify_capsule
from projections.tcap.blocks import LEN, iter_blocks
from projections.tcap.crypto import FileBlockKeyProvider, write_block_key_file
from projections.tcap.format import CAPSULE_LIMIT, HEADER_SIZE, MAGIC, SIG_CONTEXT

COMBOS = list(itertools.product(("jsonl", "cbor"), ("none", "zstd"), (False, True)))


def ledger_events(ledger, types=None):
    return [e.to_json() for e in ledger.log.events() if types is None or e.type in types]


@pytest.mark.parametrize(("wire", "compression", "encrypt"), COMBOS)
def test_round_trip(filled, signer, block_keys, tmp_path, wire, compression, encrypt):
    keys = block_keys if encrypt else None
    out = tmp_path / "c.tcap"
    [packed] = pack(
        filled.log, out, signer.keypair, PackOptions(wire=wire, compression=compression), keys
    )
    assert packed.size == out.stat().st_size <= CAPSULE_LIMIT
    assert packed.blocks == 31 and (packed.first_height, packed.last_height) == (0, 30)

    report = verify_capsule(out, signer.public_key, keys)
    assert report.payloads_checked and report.pinned and not report.warnings
    assert (report.wire, report.compression, report.encrypted) == (wire, compression, encrypt)

    expected = ledger_events(filled)
    with Capsule(out) as cap:
        assert list(cap.extract((), keys)) == expected
        assert list(cap.extract(["ubl.entry"], keys)) == ledger_events(filled, {"ubl.entry"})
        for ev in expected[::7]:
            res = cap.seek(ev["id"], keys)
            assert res.event == ev
            assert res.block.b3.hex() == ev["b3"] and res.block.sig.hex() == ev["mac"]


def test_blocks_are_canonical_and_link_to_the_ledger(filled, signer, tmp_path):
    events = list(filled.log.events())
    for wire in ("jsonl", "cbor"):
        out = tmp_path / f"{wire}.tcap"
        pack(filled.log, out, signer.keypair, PackOptions(wire=wire))
        with Capsule(out) as cap:
            region = cap.blocks_region()
            raws = [region[o + 4 : o + 4 + n] for o, n, _ in iter_blocks(region, cap.header.wire)]
            manifest = cap.manifest_bytes()
        assert canonical_json(json.loads(manifest)) == manifest
        for ev, raw in zip(events, raws, strict=True):
            if wire == "jsonl":
                doc = json.loads(raw)
                assert canonical_json(doc) + b"\n" == raw
                prev = bytes.fromhex(doc["prev_b3"])
            else:
                doc = cbor2.loads(raw)
                assert cbor2.dumps(doc, canonical=True) == raw
                prev = doc["prev_b3"]
            # prev_b3 is the event's place in the ledger's public chain.
            want = events[ev.seq - 1].b3 if ev.seq else bytes(32)
            assert prev == want
            assert doc["height"] == ev.seq and doc["span_id"] == ev.id
            assert doc["tid"] == filled.log.ledger_id


def test_header_fields_on_disk(filled, signer, tmp_path):
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    data = out.read_bytes()
    assert data[:8] == MAGIC and data[8:10] == b"\x01\x00" and data[10:12] == b"LE"
    assert int.from_bytes(data[16:24], "little") == HEADER_SIZE
    assert data[152:184] == SIG_CONTEXT.ljust(32, b"\0")
    assert data[248:280] == signer.public_key
    manifest = json.loads(data[HEADER_SIZE : HEADER_SIZE + int.from_bytes(data[24:32], "little")])
    assert data[280:312].hex() == manifest["merkle"]["root"]
    assert not any(data[312:HEADER_SIZE])


def test_plain_pack_is_byte_reproducible(filled, signer, tmp_path):
    a, b = tmp_path / "a.tcap", tmp_path / "b.tcap"
    for out in (a, b):
        pack(filled.log, out, signer.keypair, PackOptions(wire="cbor", compression="zstd"))
    assert a.read_bytes() == b.read_bytes()


def test_filtered_pack_keeps_per_block_links(filled, signer, tmp_path):
    out = tmp_path / "f.tcap"
    [packed] = pack(
        filled.log, out, signer.keypair, PackOptions(start=5, stop=20, types=("attestation.*",))
    )
    expected = [
        e for e in ledger_events(filled) if 5 <= e["seq"] <= 20 and e["type"] == "attestation.issue"
    ]
    assert packed.blocks == len(expected) > 1
    report = verify_capsule(out, signer.public_key)
    assert (report.first_height, report.last_height) == (expected[0]["seq"], expected[-1]["seq"])
    with Capsule(out) as cap:
        assert list(cap.extract()) == expected
        assert cap.manifest()["selection"] == {"from": 5, "to": 20, "types": ["attestation.*"]}


def test_seq_range_starts_with_the_ledgers_prev_b3(filled, signer, tmp_path):
    out = tmp_path / "r.tcap"
    pack(filled.log, out, signer.keypair, PackOptions(start=10, stop=12))
    report = verify_capsule(out, signer.public_key)
    assert report.blocks == 3
    assert report.first_prev_b3 == filled.log.get(9).b3.hex()
    assert report.last_b3 == filled.log.get(12).b3.hex()


def test_empty_selection_is_a_valid_empty_capsule(filled, signer, tmp_path):
    out = tmp_path / "e.tcap"
    [packed] = pack(filled.log, out, signer.keypair, PackOptions(types=("no.such",)))
    assert packed.blocks == 0
    report = verify_capsule(out, signer.public_key)
    assert report.blocks == 0 and report.first_height is None
    with Capsule(out) as cap:
        assert list(cap.extract()) == []


def test_encrypted_without_key_verifies_structure_only(filled, signer, block_keys, tmp_path):
    out = tmp_path / "x.tcap"
    pack(filled.log, out, signer.keypair, PackOptions(), block_keys)
    report = verify_capsule(out, signer.public_key)
    assert not report.payloads_checked and any("encrypted" in w for w in report.warnings)
    with Capsule(out) as cap:
        res = cap.seek(f"ev-{filled.log.ledger_id[:16]}-4")
        assert res.event is None and res.block.height == 4
        with pytest.raises(EnvironmentProblem) as info:
            list(cap.extract())
        assert info.value.code == "E-KEY"
        # Header, manifest and index stay readable.
        assert cap.manifest()["wire"]["encryption"]["key_id"].startswith("bk-")
        assert cap.index().count == 31
    # Payloads are not in the clear.
    assert b"x" * 20 not in out.read_bytes()[HEADER_SIZE:]


def test_wrong_block_key_is_refused(filled, signer, block_keys, tmp_path):
    out = tmp_path / "x.tcap"
    pack(filled.log, out, signer.keypair, PackOptions(), block_keys)
    other = tmp_path / "other.key.json"
    write_block_key_file(other)
    with pytest.raises(EnvironmentProblem) as info:
        verify_capsule(out, signer.public_key, FileBlockKeyProvider(other))
    assert info.value.code == "E-KEY"
    foreign = tmp_path / "foreign.key.json"
    write_block_key_file(foreign, "another-tenant")
    with pytest.raises(EnvironmentProblem) as info:
        pack(
            filled.log,
            tmp_path / "y.tcap",
            signer.keypair,
            PackOptions(),
            FileBlockKeyProvider(foreign),
        )
    assert info.value.code == "E-KEY"


def test_too_large_is_refused_with_a_hint_and_leaves_nothing(filled, signer, tmp_path):
    out = tmp_path / "out" / "big.tcap"
    out.parent.mkdir()
    with pytest.raises(BadInput) as info:
        pack(filled.log, out, signer.keypair, PackOptions(max_bytes=HEADER_SIZE + 4000))
    assert info.value.code == "E-CAPSULE-TOO-LARGE"
    assert "--split" in info.value.message
    assert list(out.parent.iterdir()) == []  # no capsule, no scratch or temporary file


def test_existing_output_is_never_replaced(filled, signer, tmp_path):
    out = tmp_path / "c.tcap"
    out.write_bytes(b"keep me")
    with pytest.raises(BadInput):
        pack(filled.log, out, signer.keypair, PackOptions())
    assert out.read_bytes() == b"keep me"


def test_bad_options(filled, signer, tmp_path):
    for opts in (
        PackOptions(wire="xml"),
        PackOptions(compression="lz4"),
        PackOptions(start=-1),
        PackOptions(start=5, stop=4),
        PackOptions(max_bytes=CAPSULE_LIMIT + 1),
    ):
        with pytest.raises(BadInput):
            pack(filled.log, tmp_path / "c.tcap", signer.keypair, opts)


def test_broken_ledger_chain_is_not_packed(filled, signer, tmp_path):
    from ledger.log import seq_key

    events = filled.store.db("events")
    with filled.store.write() as txn:
        raw = bytearray(txn.get(seq_key(7), db=events))
        raw[-1] ^= 1
        txn.put(seq_key(7), bytes(raw), db=events)
    with pytest.raises(CheckFailed) as info:
        pack(filled.log, tmp_path / "c.tcap", signer.keypair, PackOptions())
    assert info.value.code == "E-CHAIN-BROKEN" and info.value.details["seq"] == 7
    assert not (tmp_path / "c.tcap").exists()


def test_length_prefixes_walk_exactly_to_the_end(filled, signer, tmp_path):
    out = tmp_path / "c.tcap"
    pack(filled.log, out, signer.keypair, PackOptions(wire="cbor"))
    with Capsule(out) as cap:
        h = cap.header
        pos, n = h.first_block_off, 0
        while pos < h.capsule_len:
            (length,) = LEN.unpack_from(cap.mm, pos)
            pos += LEN.size + length
            n += 1
        assert pos == h.capsule_len and n == h.block_count


def test_pack_while_others_append_is_a_consistent_snapshot(filled, signer, tmp_path):
    import threading

    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            filled.log.append("load.ev", {"i": i})
            i += 1

    head_before = filled.log.head().seq
    t = threading.Thread(target=writer)
    t.start()
    try:
        [packed] = pack(filled.log, tmp_path / "c.tcap", signer.keypair, PackOptions())
    finally:
        stop.set()
        t.join()
    assert packed.first_height == 0 and packed.last_height >= head_before
    report = verify_capsule(tmp_path / "c.tcap", signer.public_key)
    assert report.last_b3 == filled.log.get(packed.last_height).b3.hex()


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"type": "ed25519", "public_key": "AAAA"}',
        b'{"type": "tcap-block-key", "cipher": "aes-gcm", "key": "AAAA"}',
        b'{"type": "tcap-block-key", "cipher": "xchacha20poly1305-ietf", "key": "AAAA"}',
    ],
)
def test_bad_block_key_files_are_e_key(tmp_path, content):
    from ledger.errors import CapError

    path = tmp_path / "k.json"
    path.write_bytes(content)
    with pytest.raises(CapError) as info:
        FileBlockKeyProvider(path)
    assert info.value.code == "E-KEY"
    with pytest.raises(EnvironmentProblem) as missing:
        FileBlockKeyProvider(tmp_path / "none.json")
    assert missing.value.code == "E-KEY"
    with pytest.raises(BadInput):  # keygen never overwrites
        write_block_key_file(path)
