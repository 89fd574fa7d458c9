from __future__ import annotations

import hmac
import io
import json
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from ledger.audit_export import (
    MAX_LINE_BYTES,
    ExportKey,
    check_line,
    export_lines,
    read_lines,
    verify_lines,
)
from ledger.canonical import canonical_json
from ledger.chain import next_b3
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from ledger.events import encode_body
from ledger.timeline import (
    first_seq_at_or_after,
    last_seq_at_or_before,
    parse_instant,
    resolve_bound,
)
from tests.conftest import cli_env, run_cli
from tests.strategies import json_objects

XKEY = ExportKey.of(b"\x42" * 32)


def _export(ledger, start=0, stop=None) -> list[bytes]:
    return list(export_lines(ledger.log, XKEY, start, stop))


@pytest.fixture
def filled(ledger):
    for i in range(6):
        ledger.log.append("att.issue", {"i": i, "name": 'Zoë \u2028 "quoted"\n'})
    return ledger


def test_export_verifies_and_lines_carry_chain_values(filled):
    lines = _export(filled)
    assert len(lines) == 7 and all(line.endswith(b"\n") for line in lines)
    report = verify_lines(lines, XKEY)
    assert (report.lines, report.first, report.last) == (7, 0, 6)
    docs = [json.loads(line) for line in lines]
    events = list(filled.log.events())
    for doc, prev, ev in zip(docs[1:], events[:-1], events[1:], strict=True):
        assert doc["b3"] == ev.b3.hex() and doc["mac"] == ev.mac.hex()
        assert doc["prev_b3"] == prev.b3.hex() and doc["prev_mac"] == prev.mac.hex()
    assert docs[0]["prev_b3"] == "00" * 32


def test_the_line_hmac_is_over_the_line_without_xhmac(filled):
    line = _export(filled)[3].rstrip(b"\n")
    doc = json.loads(line)
    tag = doc.pop("xhmac")
    assert canonical_json(doc)[:-1] == line[: line.index(b',"xhmac"')]
    assert hmac.digest(XKEY.key, canonical_json(doc), "sha256").hex() == tag


def test_a_single_line_verifies_alone_and_fails_when_edited(filled):
    line = _export(filled)[4]
    assert verify_lines([line], XKEY).lines == 1
    doc = json.loads(line)
    edits = [
        line.replace(b'"i":3', b'"i":4'),  # the content
        line.replace(b'"seq":4', b'"seq":5'),
        line.replace(b'{"actor"', b'{ "actor"'),  # even meaningless whitespace
        line.replace(doc["xhmac"].encode(), doc["xhmac"][::-1].encode()),
        line.replace(doc["b3"].encode(), doc["prev_b3"].encode()),
        line[:-10] + b"\n",  # truncated
        b"{}\n",
    ]
    for edited in edits:
        assert edited != line
        with pytest.raises(CheckFailed) as info:
            verify_lines([edited], XKEY)
        assert info.value.code == "E-SIGNATURE-INVALID", edited


def test_an_edit_by_the_export_key_holder_is_caught_by_the_hash_chain(filled):
    lines = _export(filled)
    doc = json.loads(lines[2])
    del doc["xhmac"]
    doc["payload"] = {"i": 1000}
    signed = canonical_json(doc)
    forged = signed[:-1] + b',"xhmac":"' + XKEY.tag(signed).encode() + b'"}\n'
    with pytest.raises(CheckFailed) as info:
        verify_lines([forged], XKEY)
    assert info.value.code == "E-CHAIN-BROKEN"
    # Recomputing b3 too makes the line consistent alone, but the next one no longer follows.
    body = encode_body(
        doc["seq"], doc["id"], doc["ts"], doc["type"], doc["actor"], doc["payload"], doc["kid"]
    )
    doc["b3"] = next_b3(bytes.fromhex(doc["prev_b3"]), body).hex()
    signed = canonical_json(doc)
    forged = signed[:-1] + b',"xhmac":"' + XKEY.tag(signed).encode() + b'"}\n'
    assert verify_lines([forged], XKEY).lines == 1
    with pytest.raises(CheckFailed) as info:
        verify_lines([*lines[:2], forged, *lines[3:]], XKEY)
    assert info.value.code == "E-CHAIN-BROKEN" and info.value.details["line"] == 4


@pytest.mark.parametrize(
    "mangle",
    [
        lambda ls: [*ls[:2], *ls[3:]],  # a line dropped
        lambda ls: [*ls[:3], ls[2], *ls[3:]],  # a line repeated
        lambda ls: [ls[0], ls[2], ls[1], *ls[3:]],  # swapped
    ],
)
def test_missing_repeated_or_reordered_lines(filled, mangle):
    with pytest.raises(CheckFailed) as info:
        verify_lines(mangle(_export(filled)), XKEY)
    assert info.value.code == "E-CHAIN-BROKEN"


def test_wrong_export_key_is_e_key(filled):
    with pytest.raises(EnvironmentProblem) as info:
        verify_lines(_export(filled), ExportKey.of(b"\x43" * 32))
    assert info.value.code == "E-KEY"
    assert "42" * 8 not in info.value.message and "43" * 8 not in info.value.message


def test_bad_files(filled):
    with pytest.raises(BadInput):
        verify_lines([], XKEY)
    with pytest.raises(CheckFailed):
        verify_lines([b"\n"], XKEY)
    with pytest.raises(CheckFailed):
        check_line(b"x" * (MAX_LINE_BYTES + 1), XKEY)
    huge = io.BytesIO(b"y" * (MAX_LINE_BYTES * 3))
    first = next(read_lines(huge))
    assert len(first) == MAX_LINE_BYTES + 1  # never reads a whole unbounded line
    with pytest.raises(CheckFailed):
        verify_lines(read_lines(io.BytesIO(b"y" * (MAX_LINE_BYTES * 3))), XKEY)


def test_ranges_link_to_the_event_before(filled):
    part = _export(filled, 3, 5)
    assert [json.loads(line)["seq"] for line in part] == [3, 4, 5]
    assert json.loads(part[0])["prev_b3"] == filled.log.get(2).b3.hex()
    assert part == _export(filled)[3:6]  # the same bytes as in a full export
    assert verify_lines(part, XKEY).first == 3


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=json_objects)
def test_any_payload_exports_to_a_verifiable_line(ledger, payload):
    ev = ledger.log.append("prop.any", payload)
    line = next(export_lines(ledger.log, XKEY, ev.seq, ev.seq))
    assert check_line(line, XKEY)["payload"] == payload


def test_timeline_lookups(filled):
    events = list(filled.log.events())
    first, last = (datetime.fromisoformat(e.ts) for e in (events[1], events[-1]))
    log = filled.log
    assert last_seq_at_or_before(log, datetime.fromisoformat(events[0].ts)) == 0
    assert last_seq_at_or_before(log, last + timedelta(days=1)) == 6
    assert last_seq_at_or_before(log, datetime.fromisoformat("2000-01-01T00:00:00+00:00")) is None
    assert first_seq_at_or_after(log, first) == 1
    assert first_seq_at_or_after(log, last + timedelta(seconds=1)) is None
    assert resolve_bound(log, events[2].ts, upper=True) == 2
    assert resolve_bound(log, events[2].ts, upper=False) == 2
    assert resolve_bound(log, "4", upper=True) == 4
    assert resolve_bound(log, "1999-01-01T00:00:00Z", upper=True) == -1
    assert resolve_bound(log, "2999-01-01T00:00:00+02:00", upper=False) == 7
    for bad in ("yesterday", "2025-01-01T00:00:00", "-3"):
        with pytest.raises(BadInput):
            parse_instant(bad) if bad != "-3" else resolve_bound(log, bad, upper=True)


def test_cli_export_and_verify(cli, tmp_path):
    key = tmp_path / "x.key"
    key.write_text("ab" * 32)
    payload = tmp_path / "p.json"
    payload.write_text('{"v": "é"}')
    for _ in range(4):
        assert cli("ledger", "append", "--type", "a.b", "--payload-file", str(payload)).code == 0
    out = tmp_path / "audit.jsonl"
    res = cli("--json", "audit", "export", "--export-key-file", str(key), "--out", str(out))
    assert res.code == 0, res.err
    assert res.json()["lines"] == 5
    res = cli("--json", "audit", "verify-jsonl", str(out), "--export-key-file", str(key))
    assert res.code == 0, res.err
    assert res.json()["lines"] == 5
    # stdout export, a range, and the key from the environment
    env = cli_env(cli.root, CAP_AUDIT_EXPORT_KEY="ab" * 32)
    res = run_cli("audit", "export", "--from", "2", "--to", "3", env=env)
    assert res.code == 0 and len(res.out.splitlines()) == 2
    one = res.out.splitlines()[1].encode() + b"\n"
    (tmp_path / "one.jsonl").write_bytes(one)
    assert run_cli("audit", "verify-jsonl", str(tmp_path / "one.jsonl"), env=env).code == 0
    (tmp_path / "one.jsonl").write_bytes(one.replace(b'"v":"\xc3\xa9"', b'"v":"e"'))
    res = run_cli("audit", "verify-jsonl", str(tmp_path / "one.jsonl"), env=env)
    assert res.code == 1 and "error[E-SIGNATURE-INVALID]: line 1" in res.err
    res = cli("audit", "verify-jsonl", str(out))
    assert res.code == 4 and "E-KEY" in res.err
    res = cli("audit", "verify-jsonl", str(tmp_path / "nope"), "--export-key-file", str(key))
    assert res.code == 2 and "E-BAD-INPUT" in res.err
