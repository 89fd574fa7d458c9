"""Parallel verify gives exactly the single pass's answer: same report, same first bad seq."""

from __future__ import annotations

import itertools

import pytest

from ledger.errors import CheckFailed
from ledger.log import Append, seq_key
from ledger.parallel_verify import _segments, verify_log

N = 3000


@pytest.fixture
def big(ledger):
    for k in range(0, N, 1000):
        ledger.log.append_many([Append("test.ev", {"i": i}) for i in range(k, k + 1000)])
    return ledger


def flip(led, seq: int, offset: int = -1) -> None:
    with led.store.write() as txn:
        rec = bytearray(txn.get(seq_key(seq), db=led.store.db("events")))
        rec[offset] ^= 0x40
        txn.put(seq_key(seq), bytes(rec), db=led.store.db("events"))


def first_bad(fn) -> int:
    with pytest.raises(CheckFailed) as info:
        fn()
    return int(info.value.details["seq"])


def test_segments_cover_the_range_exactly():
    for start, last, n in [(0, 9, 2), (5, 5, 1), (0, 3000, 3), (17, 1000, 4)]:
        segs = _segments(start, last, n)
        assert len(segs) == n and segs[0][0] == start and segs[-1][1] == last
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(segs))


def test_same_report_as_a_single_pass(big):
    single = big.log.verify()
    parallel = verify_log(big.log, workers=3, min_events=1)
    assert parallel == single
    assert verify_log(big.log, 100, 2500, workers=2, min_events=1) == big.log.verify(100, 2500)


@pytest.mark.parametrize("where", [5, 1499, 1500, 1501, 2999, 3000])
def test_same_first_bad_seq_wherever_the_damage_is(big, where):
    """Damage in the worker's segment, at the segment boundary, or in this process's."""
    flip(big, where)
    assert first_bad(lambda: verify_log(big.log, workers=2, min_events=1)) == where
    assert first_bad(big.log.verify) == where


def test_the_earliest_damage_wins_across_segments(big):
    flip(big, 2600)
    flip(big, 700, offset=3)
    assert first_bad(lambda: verify_log(big.log, workers=2, min_events=1)) == 700


def test_head_checks_still_apply(big):
    with big.store.write() as txn:
        txn.delete(seq_key(N), db=big.store.db("events"))
    assert first_bad(lambda: verify_log(big.log, workers=2, min_events=1)) == N


def test_small_logs_are_verified_in_process(ledger):
    assert verify_log(ledger.log, workers=4).count == 1
