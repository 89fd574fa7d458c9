"""The writer process's protocol, in one process: a socket pair, the writer's loop on one
end and a worker's client on the other."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from api.http.writer import WriterClient, serve_writer
from api.services import blob_store
from ledger.errors import BadInput, EnvironmentProblem
from ledger.ledger import Ledger


@contextlib.asynccontextmanager
async def writer_and_client(led: Ledger):
    mine, theirs = socket.socketpair()
    serving = asyncio.create_task(serve_writer(led, [mine]))
    client = WriterClient(theirs)
    await client.start()
    try:
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(serving, 10)  # the writer returns once its worker is gone


async def test_concurrent_puts_share_commits_and_each_gets_its_event(ledger):
    commits: list[int] = []
    ledger.log.add_listener(lambda events: commits.append(len(events)))
    store = blob_store(ledger)
    staged = [store.stage_bytes(b"put %d" % i) for i in range(64)]
    async with writer_and_client(ledger) as client:
        events = await asyncio.gather(*(client.put_blob(s, "text/plain", "w") for s in staged))
    assert [e.payload["blob_id"] for e in events] == [s.blob_id for s in staged]
    assert len({e.seq for e in events}) == 64
    for e, s in zip(events, staged, strict=True):
        assert ledger.log.get(e.seq) == e  # the event the worker got is the committed one
        assert b"".join(store.chunks(s.blob_id)) == s.data  # the bytes went with it
    assert sum(commits) == 64 and len(commits) < 64  # group commit across the requests


async def test_an_error_in_the_writer_reaches_the_worker_with_its_class_and_code(ledger):
    head = ledger.log.head().seq
    staged = blob_store(ledger).stage_bytes(b"x")
    async with writer_and_client(ledger) as client:
        with pytest.raises(BadInput) as err:  # the writer checks what it is sent, too
            await client.put_blob(staged, "no-slash", "w")
        ok = await client.put_blob(staged, "text/plain", "w")  # the connection lives on
    assert err.value.code == "E-BAD-INPUT" and "no-slash" in err.value.message
    assert ok.seq == head + 1  # the refused put wrote nothing


async def test_writer_gone_is_e_storage_for_the_put_in_flight_and_the_next(ledger):
    mine, theirs = socket.socketpair()
    client = WriterClient(theirs)
    await client.start()
    staged = blob_store(ledger).stage_bytes(b"y")
    in_flight = asyncio.create_task(client.put_blob(staged, "text/plain", "w"))
    await asyncio.sleep(0.05)
    mine.close()  # the writer process died without answering
    with pytest.raises(EnvironmentProblem) as err:
        await asyncio.wait_for(in_flight, 10)
    assert err.value.code == "E-STORAGE" and "may or may not" in err.value.message
    with pytest.raises(EnvironmentProblem):
        await client.put_blob(staged, "text/plain", "w")
    await client.close()
