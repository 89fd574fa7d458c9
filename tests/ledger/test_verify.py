"""`ledger verify` names the first bad seq for every way a stored log can be damaged."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.datadir import DataDir
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from ledger.keys import StaticKeyProvider
from ledger.ledger import Ledger
from ledger.log import Append, seq_key
from tests.conftest import TEST_KEY
from tests.strategies import json_objects, user_event_types

KEYS = StaticKeyProvider(TEST_KEY)


def raw(led: Ledger, seq: int) -> bytes:
    with led.store.read() as txn:
        return bytes(txn.get(seq_key(seq), db=led.store.db("events")))


def put_raw(led: Ledger, seq: int, record: bytes | None) -> None:
    """Overwrite (or with ``None`` delete) the stored record of ``seq``, as an attacker with
    write access to the LMDB file could."""
    with led.store.write() as txn:
        if record is None:
            txn.delete(seq_key(seq), db=led.store.db("events"))
        else:
            txn.put(seq_key(seq), record, db=led.store.db("events"))


def broken_at(led: Ledger, **kw: Any) -> int:
    with pytest.raises(CheckFailed) as info:
        led.log.verify(**kw)
    assert info.value.code == "E-CHAIN-BROKEN"
    assert f"chain broken at seq {info.value.details['seq']}:" in info.value.message
    seq: int = info.value.details["seq"]
    return seq


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    ledger.log.append_many([Append("test.ev", {"i": i, "pad": "x" * i}) for i in range(1, 11)])
    assert ledger.log.head().seq == 10
    return ledger


# --- properties ---------------------------------------------------------------------------

batches = st.lists(
    st.lists(st.tuples(user_event_types, json_objects), min_size=1, max_size=4),
    min_size=1,
    max_size=5,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_any_sequence_of_appends_verifies(batches: list[list[tuple[str, dict[str, Any]]]]):
    with tempfile.TemporaryDirectory() as tmp:
        Ledger.init(Path(tmp), KEYS)
        with Ledger.open(Path(tmp), KEYS) as led:
            appended = []
            for batch in batches:
                if len(batch) == 1:
                    appended.append(led.log.append(*batch[0]))
                else:
                    appended += led.log.append_many([Append(t, p) for t, p in batch])
            total = sum(len(b) for b in batches)
            assert [e.seq for e in appended] == list(range(1, total + 1))
            report = led.log.verify()
            assert (report.first, report.last, report.count) == (0, total, total + 1)
            stored = list(led.log.events(after=0))
            assert stored == appended
            assert [e.payload for e in stored] == [p for b in batches for _, p in b]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=st.lists(json_objects, min_size=1, max_size=6), data=st.data())
def test_any_flipped_byte_in_any_stored_event_is_found_at_its_seq(payloads, data):
    with tempfile.TemporaryDirectory() as tmp:
        Ledger.init(Path(tmp), KEYS)
        with Ledger.open(Path(tmp), KEYS) as led:
            led.log.append_many([Append("test.ev", p) for p in payloads])
            head = led.log.head().seq
            for _ in range(5):  # several flips per log, each undone before the next
                seq = data.draw(st.integers(0, head), label="seq")
                record = raw(led, seq)
                offset = data.draw(st.integers(0, len(record) - 1), label="offset")
                bit = data.draw(st.integers(0, 7), label="bit")
                damaged = bytearray(record)
                damaged[offset] ^= 1 << bit
                put_raw(led, seq, bytes(damaged))
                assert broken_at(led) == seq
                if seq > 0:  # a range that starts after the damage does not see it...
                    assert broken_at(led, start=seq) == seq  # ...one that includes it does
                put_raw(led, seq, record)
            assert led.log.verify().count == head + 1


# --- each kind of damage, by name ---------------------------------------------------------


def test_deleted_event_in_the_middle(filled):
    put_raw(filled, 4, None)
    assert broken_at(filled) == 4
    with pytest.raises(CheckFailed, match="missing"):
        filled.log.verify()


def test_two_events_swapped(filled):
    a, b = raw(filled, 6), raw(filled, 7)
    put_raw(filled, 6, b)
    put_raw(filled, 7, a)
    assert broken_at(filled) == 6


def test_record_copied_to_another_position(filled):
    put_raw(filled, 8, raw(filled, 3))
    assert broken_at(filled) == 8


def test_truncated_tail_no_longer_matches_the_head(filled):
    put_raw(filled, 10, None)
    put_raw(filled, 9, None)
    assert broken_at(filled) == 9
    with pytest.raises(CheckFailed, match="head says 10"):
        filled.log.verify()


def test_head_record_rewritten_to_an_earlier_event(filled):
    record = raw(filled, 7)
    with filled.store.write() as txn:
        txn.put(b"head", seq_key(7) + record[:64], db=filled.store.db("meta"))
    assert broken_at(filled) == 8  # the events after the head are not silently ignored
    assert filled.log.verify(stop=7).count == 8


def test_head_record_with_wrong_values(filled):
    with filled.store.write() as txn:
        txn.put(b"head", seq_key(10) + bytes(64), db=filled.store.db("meta"))
    assert broken_at(filled) == 10


def test_garbage_record_is_unreadable_not_a_crash(filled):
    put_raw(filled, 5, b"short")
    assert broken_at(filled) == 5
    put_raw(filled, 5, bytes(200))
    assert broken_at(filled) == 5


def test_genesis_of_another_ledger(filled, tmp_path):
    Ledger.init(tmp_path / "other", KEYS)
    with Ledger.open(tmp_path / "other", KEYS) as other:
        foreign = raw(other, 0)
    put_raw(filled, 0, foreign)
    assert broken_at(filled) == 0


def test_range_verification(filled):
    report = filled.log.verify(start=3, stop=6)
    assert (report.first, report.last, report.count) == (3, 6, 4)
    put_raw(filled, 8, raw(filled, 8)[:-1] + b"\x00")
    assert filled.log.verify(start=0, stop=7).count == 8  # the damage is outside the range
    assert broken_at(filled, start=5) == 8
    with pytest.raises(BadInput):
        filled.log.verify(start=11)
    with pytest.raises(BadInput):
        filled.log.verify(start=-1)


def test_wrong_key_is_e_key_and_names_no_key(filled, data_dir):
    filled.close()
    other = bytes(range(1, 33))
    with pytest.raises(EnvironmentProblem) as info:
        Ledger.open(data_dir, StaticKeyProvider(other))
    assert info.value.code == "E-KEY"
    assert TEST_KEY.hex() not in str(info.value) and other.hex() not in str(info.value)


def test_map_grows_from_a_tiny_initial_size(tmp_path):
    """The map starts far too small for what is appended and doubles as needed."""
    data = DataDir(tmp_path / "tiny")
    Ledger.init(data, KEYS, map_size=64 << 10)
    with Ledger.open(data, KEYS, map_size=64 << 10) as led:
        before = led.store.env.info()["map_size"]
        for i in range(20):
            led.log.append_many([Append("test.big", {"i": i, "blob": "z" * 2000})] * 20)
        assert led.store.env.info()["map_size"] > before
        assert led.log.verify().count == 401
    with Ledger.open(data, KEYS) as led:  # reopened: the grown file is read whole
        assert led.log.verify().count == 401
