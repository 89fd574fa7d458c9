"""docs/EVENTS.md is the format of record: recompute its worked example and its encoding
table with nothing but msgpack, blake3 and hmac (an auditor's toolbox), and check that the
ledger writes exactly what the document says, down to the raw LMDB records."""

from __future__ import annotations

import hmac
import itertools
import json
import re
import struct
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
from blake3 import blake3

from ledger.chain import kid_for_key
from ledger.events import decode_record, encode_body
from ledger.log import Append

DOC = (Path(__file__).resolve().parents[2] / "docs" / "EVENTS.md").read_text()
FIELDS = ("actor", "id", "kid", "payload", "seq", "ts", "type")


# --- an independent implementation, written from the document --------------------------


def canonical(value: Any) -> Any:
    """Sorted map keys (by UTF-8 bytes), nothing but nil/bool/int/str/array/map."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        return {k: canonical(value[k]) for k in sorted(value, key=lambda k: k.encode())}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    assert value is None or isinstance(value, bool | int | str), value
    return value


def body_of(event: dict[str, Any]) -> bytes:
    return msgpack.packb(canonical({f: event[f] for f in FIELDS}), use_bin_type=True)


def kid_of(key: bytes) -> str:
    return "hk-" + hmac.new(key, b"cap-ledger/kid/v1", "sha256").digest()[:8].hex()


def chain(prev_b3: bytes, prev_mac: bytes, body: bytes, key: bytes) -> tuple[bytes, bytes]:
    b3 = blake3(prev_b3 + body).digest()
    return b3, hmac.new(key, prev_mac + b3, "sha256").digest()


# --- what the document says -------------------------------------------------------------


def find(pattern: str, text: str, flags: int = 0) -> str:
    """The first group of ``pattern`` in ``text``, which must be there."""
    match = re.search(pattern, text, flags)
    assert match is not None, pattern
    return match[1]


def section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end > 0 else None]


def example() -> dict[str, Any]:
    text = section("Worked example")
    return {
        "key": bytes.fromhex(find(r"^key  ([0-9a-f]{64})$", text, re.M)),
        "kid": find(r"^kid  (hk-[0-9a-f]{16})$", text, re.M),
        "events": [
            json.loads(line) for line in find(r"```json\n(.*?)```", text, re.S).splitlines()
        ],
        "bodies": {
            int(m[1]): bytes.fromhex(m[2])
            for m in re.finditer(r"^body\[(\d+)\]  ([0-9a-f]+)$", text, re.M)
        },
        "dump": bytes.fromhex(
            "".join(m[1] for m in re.finditer(r"^((?:[0-9a-f]{2} ?)+)\s*\|", text, re.M))
        ),
        "steps": re.findall(r"= ([0-9a-f]{64})$", text, re.M),
        "ledger_id": find(r"ledger id `([0-9a-f]{32})`", text),
    }


def test_worked_example_recomputes_from_the_document_alone():
    ex = example()
    key, events, bodies = ex["key"], ex["events"], ex["bodies"]
    assert key == bytes(range(32))
    assert kid_of(key) == ex["kid"]
    assert [e["seq"] for e in events] == list(range(len(events))) == sorted(bodies)
    b3, mac = bytes(32), bytes(32)
    for ev in events:
        body = body_of(ev)
        assert body == bodies[ev["seq"]], f"body[{ev['seq']}]"
        assert body[0] == 0x87
        b3, mac = chain(b3, mac, body, key)
        assert (b3.hex(), mac.hex()) == (ev["b3"], ev["mac"]), f"chain at seq {ev['seq']}"
        assert ev["kid"] == ex["kid"]
        assert ev["id"] == f"ev-{ex['ledger_id'][:16]}-{ev['seq']}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", ev["ts"])
    genesis = events[0]
    assert genesis["type"] == "ledger.genesis"
    assert genesis["payload"]["ledger_id"] == ex["ledger_id"]
    assert genesis["payload"]["format"] == "cap-ledger/1"
    # the byte-by-byte dump is body[1], and the two spelled-out chain steps are event 1's
    assert ex["dump"] == bodies[1]
    assert ex["steps"] == [events[1]["b3"], events[1]["mac"]]
    assert f"BLAKE3({events[0]['b3']} || body[1])" in DOC
    assert f"HMAC-SHA256(key, {events[0]['mac']} || b3[1])" in DOC


def test_the_ledger_writes_what_the_document_says():
    ex = example()
    assert kid_for_key(ex["key"]) == ex["kid"]
    for ev in ex["events"]:
        body = encode_body(
            *(ev[f] for f in ("seq", "id", "ts", "type", "actor", "payload")), ev["kid"]
        )
        assert body == ex["bodies"][ev["seq"]]
        record = bytes.fromhex(ev["b3"]) + bytes.fromhex(ev["mac"]) + body
        assert decode_record(record).to_json() == ev


def test_genesis_payload_is_the_documented_one(ledger):
    doc = json.loads(find(r"```json\n(.*?)\n```", section("Genesis"), re.S))
    genesis = ledger.log.get(0)
    assert genesis.type == "ledger.genesis"
    assert re.fullmatch(r"[0-9a-f]{32}", genesis.payload["ledger_id"])
    assert {**doc, "ledger_id": genesis.payload["ledger_id"]} == genesis.payload


def _table_bound(text: str) -> int:
    assert re.fullmatch(r"-?[\d^+-]+", text), text
    return int(eval(text.replace("^", "**"), {"__builtins__": {}}))


def test_integer_table_matches_msgpack():
    rows = re.findall(r"^ *\| (\S+) \.\. (\S+) \| [^|]+ \| `([0-9a-f]{2})(.*?)\|$", DOC, re.M)
    assert len(rows) == 10
    bounds = sorted((_table_bound(lo), _table_bound(hi)) for lo, hi, _, _ in rows)
    assert bounds[0][0] == -(2**63) and bounds[-1][1] == 2**64 - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(bounds))  # no gap
    for lo_text, hi_text, first, rest in rows:
        lo, hi = _table_bound(lo_text), _table_bound(hi_text)
        for value in (lo, hi):
            packed = msgpack.packb(value)
            if rest.startswith("`.."):  # a fixint range: the value is its own byte
                last = find(r"`([0-9a-f]{2})`", rest)
                assert int(first, 16) <= packed[0] <= int(last, 16)
                assert len(packed) == 1
            else:
                width = rest.count("X") // 2 or int(find(r"(\d+) bytes", rest))
                assert packed[0] == int(first, 16), (value, packed.hex())
                assert len(packed) == 1 + width


def test_a_real_ledger_verifies_with_the_documented_layout(ledger, keys, data_dir):
    ledger.log.append("attestation.issue", {"subject": "alice", "score": 7}, "cli:alice")
    ledger.log.append_many(
        [Append("ubl.entry", {"n": n, "tags": ["x"] * n, "note": "ü" * n}) for n in range(40)]
    )
    ledger.close()
    key = keys.current()[1]
    env = lmdb.open(str(data_dir.lmdb), max_dbs=32, readonly=True, lock=False)
    events, meta = env.open_db(b"events", create=False), env.open_db(b"meta", create=False)
    with env.begin() as txn:
        ledger_id = txn.get(b"ledger_id", db=meta).decode()
        assert txn.get(b"format", db=meta) == b"cap-ledger/1"
        assert txn.get(b"kid", db=meta).decode() == kid_of(key)
        head = txn.get(b"head", db=meta)
        b3, mac = bytes(32), bytes(32)
        n = 0
        for k, record in txn.cursor(db=events):
            seq = struct.unpack(">Q", k)[0]
            assert seq == n
            body = record[64:]
            fields = msgpack.unpackb(body)
            assert list(fields) == list(FIELDS)
            assert fields["seq"] == seq
            assert fields["id"] == f"ev-{ledger_id[:16]}-{seq}"
            assert fields["kid"] == kid_of(key)
            assert body_of(fields) == body  # stored bodies are canonical
            b3, mac = chain(b3, mac, body, key)
            assert record[:64] == b3 + mac
            n += 1
    env.close()
    assert n == 42
    assert head == struct.pack(">Q", n - 1) + b3 + mac


@pytest.mark.parametrize("value", [1.5, float("nan")])
def test_floats_have_no_encoding(ledger, value):
    from ledger.errors import BadInput

    with pytest.raises(BadInput):
        ledger.log.append("test.float", {"x": value})
