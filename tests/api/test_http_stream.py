"""``/v1/events/stream``: live events, resume after a disconnect without loss or duplicate,
heartbeats, events written by other processes, and slow clients dropped."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import httpx
import pytest
from httpx_sse import aconnect_sse

from api.http.state import SERVICES
from ledger.log import Append
from tests.api.conftest import bearer
from tests.conftest import TEST_KEY, cli_env, run_cli


@asynccontextmanager
async def sse(client, token: str, headers: dict[str, str] | None = None, **kw):
    """An independent SSE client (httpx + httpx-sse) against the live test server."""
    url = str(client.server.make_url("/v1/events/stream"))
    headers = {**bearer(token), **(headers or {})}
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_sse(http, "GET", url, headers=headers, **kw) as source,
    ):
        assert source.response.status_code == 200
        yield source


async def take(source, n: int) -> list[dict]:
    out = []
    async for msg in source.aiter_sse():
        doc = json.loads(msg.data)
        assert msg.id == str(doc["seq"])
        out.append(doc)
        if len(out) == n:
            break
    return out


async def append(ledger, n: int, type_: str = "test.ev") -> list[int]:
    seqs = []
    for i in range(n):
        ev = await asyncio.to_thread(ledger.log.append, type_, {"i": i})
        seqs.append(ev.seq)
    return seqs


async def test_live_events_arrive_in_order(client, ledger, tokens):
    async with sse(client, tokens["reader"]) as source:
        writer = asyncio.create_task(append(ledger, 5))
        got = await asyncio.wait_for(take(source, 5), 10)
    assert [e["seq"] for e in got] == await writer
    assert got[0] == ledger.log.get(got[0]["seq"]).to_json()


async def test_resume_after_disconnect_loses_nothing(client, ledger, tokens):
    start = ledger.log.head().seq
    async with sse(client, tokens["reader"], params={"after": start}) as source:
        await append(ledger, 3)
        first = await asyncio.wait_for(take(source, 3), 10)
    # disconnected: the ledger moves on
    missed = await append(ledger, 7)
    last_id = str(first[-1]["seq"])
    async with sse(client, tokens["reader"], headers={"Last-Event-ID": last_id}) as source:
        writer = asyncio.create_task(append(ledger, 2))
        second = await asyncio.wait_for(take(source, 9), 10)
    seqs = [e["seq"] for e in first + second]
    assert seqs == list(range(start + 1, start + 13))
    assert [e["seq"] for e in second][:7] == missed
    await writer


async def test_catch_up_switches_to_live_without_gap_or_duplicate(client, ledger, tokens):
    start = ledger.log.head().seq
    await append(ledger, 50)
    writer = asyncio.create_task(append(ledger, 150))  # still appending while we catch up
    async with sse(client, tokens["reader"], params={"after": start}) as source:
        got = await asyncio.wait_for(take(source, 200), 30)
    await writer
    assert [e["seq"] for e in got] == list(range(start + 1, start + 201))
    assert got[-1]["seq"] == ledger.log.head().seq


@pytest.mark.parametrize("heartbeat_s", [0.2, 60.0])
async def test_events_from_another_process_are_streamed(
    make_client, ledger, tokens, tmp_path, heartbeat_s
):
    """With a long heartbeat the event still arrives at once: the hub follows the head
    (another worker of the service or a CLI append commits without telling this one)."""
    client = await make_client(heartbeat_s=heartbeat_s)
    payload = tmp_path / "p.json"
    payload.write_text('{"from": "cli"}')
    env = cli_env(ledger.data.root, CAP_LEDGER_HMAC_KEY=TEST_KEY.hex())
    async with sse(client, tokens["reader"]) as source:
        res = await asyncio.to_thread(
            run_cli,
            "ledger",
            "append",
            "--type",
            "cli.ev",
            "--payload-file",
            str(payload),
            env=env,
        )
        assert res.code == 0, res.err
        (got,) = await asyncio.wait_for(take(source, 1), 10 if heartbeat_s < 1 else 5)
    assert got["type"] == "cli.ev"
    assert got["payload"] == {"from": "cli"}


async def test_heartbeats_keep_a_quiet_stream_alive(make_client, tokens):
    client = await make_client(heartbeat_s=0.1)
    resp = await client.get("/v1/events/stream", headers=bearer(tokens["reader"]))
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    line = await asyncio.wait_for(resp.content.readline(), 5)
    assert line.startswith(b": ping")
    resp.close()


async def test_bad_last_event_id_is_400(client, tokens):
    resp = await client.get(
        "/v1/events/stream", headers={**bearer(tokens["reader"]), "Last-Event-ID": "seven"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_slow_client_is_dropped_and_the_writer_is_not_slowed(make_client, ledger, tokens):
    client = await make_client(stream_queue=8)
    svc = client.app[SERVICES]
    resp = await client.get("/v1/events/stream", headers=bearer(tokens["reader"]))
    assert resp.status == 200
    # this client never reads: the socket fills, then its buffer, then it is dropped
    blob = "x" * (64 << 10)
    started = time.monotonic()
    for i in range(100):
        batch = [Append("big.ev", {"i": i, "j": j, "b": blob}) for j in range(4)]
        await asyncio.to_thread(ledger.log.append_many, batch)
    wrote_for = time.monotonic() - started
    for _ in range(100):
        if svc.hub.clients == 0:
            break
        await asyncio.sleep(0.05)
    assert svc.hub.clients == 0
    assert svc.metrics.stream_clients_dropped._value.get() == 1
    assert ledger.log.head().seq >= 400
    assert wrote_for < 60  # every append completed while the client sat there
    resp.close()
