from __future__ import annotations

import threading

import pytest

from ledger.errors import BadInput, CheckFailed
from ledger.log import Append


def test_append_is_gapless_and_chained(ledger):
    events = [ledger.log.append("test.ev", {"i": i}) for i in range(5)]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert ledger.log.head().seq == 5
    assert ledger.log.head().b3 == events[-1].b3
    report = ledger.log.verify()
    assert report.count == 6


def test_concurrent_threads_group_commit(ledger):
    out: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(50):
            ev = ledger.log.append("test.ev", {"w": n, "i": i})
            with lock:
                out.append(ev.seq)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == list(range(1, 401))
    assert ledger.log.verify().count == 401


def test_failed_group_consumes_no_seq(ledger):
    def refuse(txn, payload):
        raise BadInput("E-BAD-INPUT", "no")

    with pytest.raises(BadInput):
        ledger.log.append_many([Append("test.a", {}), Append("test.b", {}, precheck=refuse)])
    ev = ledger.log.append("test.c", {})
    assert ev.seq == 1
    ledger.log.verify()


def test_float_payload_refused(ledger):
    with pytest.raises(BadInput):
        ledger.log.append("test.f", {"x": 1.5})
    assert ledger.log.head().seq == 0


def test_verify_names_truncated_tail(ledger):
    for i in range(3):
        ledger.log.append("test.ev", {"i": i})
    from ledger.log import seq_key

    with ledger.store.write() as txn:
        txn.delete(seq_key(3), db=ledger.store.db("events"))
    with pytest.raises(CheckFailed) as info:
        ledger.log.verify()
    assert info.value.code == "E-CHAIN-BROKEN"
    assert info.value.details["seq"] == 3


def test_wrong_key_is_refused_on_open(data_dir):
    from ledger.errors import EnvironmentProblem
    from ledger.keys import StaticKeyProvider
    from ledger.ledger import Ledger

    with pytest.raises(EnvironmentProblem) as info:
        Ledger.open(data_dir, StaticKeyProvider(b"\x01" * 32))
    assert info.value.code == "E-KEY"
    assert "01" * 8 not in str(info.value)
