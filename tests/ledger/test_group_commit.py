"""Group commit: threads and asyncio tasks share synced transactions, each gets its own event,
and one failing group never takes the others down."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ledger.errors import BadInput
from ledger.ledger import Ledger
from ledger.log import Append


async def test_asyncio_tasks_each_get_their_own_event(ledger):
    async def task(n: int) -> list[tuple[int, dict[str, Any]]]:
        got = []
        for i in range(20):
            ev = await ledger.log.aappend("test.async", {"task": n, "i": i}, f"task:{n}")
            got.append((ev.seq, ev.payload))
            assert ev.actor == f"task:{n}"
            assert ev.payload == {"i": i, "task": n}
        return got

    results = await asyncio.gather(*(task(n) for n in range(25)))
    seqs = sorted(seq for got in results for seq, _ in got)
    assert seqs == list(range(1, 501))
    for got in results:  # what each task was handed is what the log holds at that seq
        for seq, payload in got:
            assert ledger.log.get(seq).payload == payload
    assert ledger.log.verify().count == 501


def _hold_writer(ledger: Ledger) -> tuple[threading.Event, threading.Event, Any]:
    """Submit a group whose precheck blocks, so later submissions queue up behind it and
    reach the writer together, in one commit."""
    entered, release = threading.Event(), threading.Event()

    def blocking(txn: Any, payload: dict[str, Any]) -> dict[str, Any]:
        entered.set()
        assert release.wait(10)
        return payload

    fut = ledger.log.submit([Append("test.hold", {}, precheck=blocking)])
    assert entered.wait(10)
    return entered, release, fut


class _Refuses:
    """A stateless consumer that fails on one payload."""

    name = "refuses"

    def apply(self, txn: Any, event: Any) -> None:
        if event.payload.get("boom"):
            raise BadInput("E-BAD-INPUT", "consumer refused")


def test_failing_group_in_a_shared_commit_fails_alone(data_dir, keys):
    consumer = _Refuses()
    with Ledger.open(data_dir, keys, [consumer]) as led:
        _, release, held = _hold_writer(led)
        calls = []

        def counted(txn: Any, payload: dict[str, Any]) -> dict[str, Any]:
            calls.append(1)
            return {**payload, "checked": True}

        futs = [led.log.submit([Append("test.ok", {"n": n})]) for n in range(3)]
        bad = led.log.submit([Append("test.bad", {"boom": True})])
        futs += [led.log.submit([Append("test.ok", {"n": n})]) for n in range(3, 6)]
        pre = led.log.submit([Append("test.pre", {"n": 6}, precheck=counted)])
        release.set()
        assert held.result(10)[0].seq == 1
        with pytest.raises(BadInput):
            bad.result(10)
        seqs = [f.result(10)[0].seq for f in futs]
        assert seqs == [2, 3, 4, 5, 6, 7]  # gapless: the failed group consumed no seq
        ev = pre.result(10)[0]
        assert (ev.seq, ev.payload) == (8, {"checked": True, "n": 6})
        assert calls == [1]  # a precheck never runs twice
        assert led.log.verify().count == 9
        assert [e.type for e in led.log.events(after=0)] == ["test.hold"] + ["test.ok"] * 6 + [
            "test.pre"
        ]


def test_submit_future_and_append_many_are_atomic(ledger):
    events = ledger.log.submit([Append("test.a", {"i": 1}), Append("test.b", {"i": 2})]).result()
    assert [(e.seq, e.type) for e in events] == [(1, "test.a"), (2, "test.b")]

    def refuse(txn: Any, payload: dict[str, Any]) -> dict[str, Any]:
        raise BadInput("E-BAD-INPUT", "no")

    with pytest.raises(BadInput):
        ledger.log.append_many([Append("test.c", {}), Append("test.d", {}, precheck=refuse)])
    assert ledger.log.head().seq == 2


@pytest.mark.parametrize(
    ("payload", "what"),
    [
        ({"a": "\ud800"}, "lone surrogate"),
        ({"a": 1.5}, "floats"),
        ({"a": 2**64}, "64-bit"),
        ({1: "x"}, "keys must be strings"),
        ({"a": b"raw"}, "unsupported"),
        (["not", "a", "map"], "JSON object"),
    ],
)
def test_bad_payloads_fail_in_the_callers_thread(ledger, payload, what):
    with pytest.raises(BadInput) as info:
        ledger.log.append("test.bad", payload)
    assert info.value.code == "E-BAD-INPUT"
    assert what in info.value.message
    assert ledger.log.head().seq == 0


def test_payload_is_a_canonical_copy(ledger):
    mine = {"b": [1, {"d": 2, "c": 3}], "a": True}
    ev = ledger.log.append("test.copy", mine)
    mine["b"][1]["c"] = 99  # changing the caller's object afterwards changes nothing
    assert list(ev.payload) == ["a", "b"]
    assert list(ev.payload["b"][1]) == ["c", "d"]
    assert ev.payload["b"][1]["c"] == 3
    assert ledger.log.get(ev.seq) == ev
    ledger.log.verify()
