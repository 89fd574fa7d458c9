"""An appender that gives up (a cancelled future: an HTTP client that went away) while its
group is queued: the writer survives it and keeps committing everyone else's events."""

from __future__ import annotations

import asyncio
import threading

from ledger.log import Append


def test_cancelled_waiter_does_not_stop_the_writer(ledger):
    gate = threading.Event()
    entered = threading.Event()

    def hold(txn, payload):
        entered.set()
        gate.wait(10)
        return payload

    first = ledger.log.submit([Append("test.hold", {}, precheck=hold)])
    assert entered.wait(10)
    second = ledger.log.submit([Append("test.cancelled", {})])
    assert second.cancel()
    gate.set()
    assert first.result(10)[0].seq == 1
    third = ledger.log.append("test.after", {})
    assert third.seq > 1
    assert ledger.log.verify().count == third.seq + 1


async def test_cancelled_async_append_does_not_stop_the_writer(ledger):
    task = asyncio.create_task(
        ledger.log.aappend_many([Append("test.a", {}), Append("test.b", {})])
    )
    await asyncio.sleep(0)
    task.cancel()
    events = await ledger.log.aappend_many([Append("test.c", {})])
    assert events[0].type == "test.c"
    assert ledger.log.get(events[0].seq).type == "test.c"
