"""``/v1/events``: pages with a ``next`` cursor, type filters, durable appends, bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import bearer
from tests.strategies import json_objects, user_event_types


async def test_pages_cover_the_log_exactly_once(client, ledger, tokens):
    for i in range(23):
        ledger.log.append("test.ev", {"i": i})
    head = ledger.log.head().seq
    seen: list[int] = []
    after = -1
    pages = 0
    while True:
        resp = await client.get(
            "/v1/events", params={"after": after, "limit": 5}, headers=bearer(tokens["reader"])
        )
        assert resp.status == 200
        doc = await resp.json()
        seen += [e["seq"] for e in doc["events"]]
        pages += 1
        if doc["next"] is None:
            break
        after = doc["next"]
    assert seen == list(range(head + 1))
    assert pages == (head + 1 + 4) // 5


async def test_type_filter_and_prefix(client, ledger, tokens):
    ledger.log.append("a.one", {})
    ledger.log.append("b.two", {})
    ledger.log.append("a.three", {})
    resp = await client.get("/v1/events?type=a.*", headers=bearer(tokens["reader"]))
    assert [e["type"] for e in (await resp.json())["events"]] == ["a.one", "a.three"]
    resp = await client.get("/v1/events?type=b.two&type=a.one", headers=bearer(tokens["reader"]))
    assert [e["type"] for e in (await resp.json())["events"]] == ["a.one", "b.two"]


@pytest.mark.parametrize(
    "query",
    ["after=x", "after=-2", "limit=0", "limit=1001", "limit=1.5", "after=", "type="],
)
async def test_bad_query_is_400(client, tokens, query):
    resp = await client.get(f"/v1/events?{query}", headers=bearer(tokens["reader"]))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_append_returns_only_durable_event_with_its_seq(client, ledger, tokens):
    resp = await client.post(
        "/v1/events",
        json={"type": "attestation.issue", "payload": {"subject": "alice", "score": 7}},
        headers=bearer(tokens["writer"]),
    )
    assert resp.status == 201
    doc = await resp.json()
    stored = ledger.log.get(doc["seq"])
    assert stored.to_json() == doc
    assert stored.actor == "token:t-writer"
    assert ledger.log.verify().count == doc["seq"] + 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(type_=user_event_types, payload=json_objects)
async def test_append_round_trips_any_json_object(client, ledger, tokens, type_, payload):
    resp = await client.post(
        "/v1/events", json={"type": type_, "payload": payload}, headers=bearer(tokens["writer"])
    )
    assert resp.status == 201
    doc = await resp.json()
    assert doc["payload"] == payload
    assert ledger.log.get(doc["seq"]).payload == payload


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"type": "a.b", "payload": {"x": 1.5}}', "floats"),
        (b'{"type": "a.b", "payload": {}, "payload": {}}', "duplicate"),
        (b'{"type": "ledger.fake", "payload": {}}', "reserved"),
        (b'{"type": "a.b", "payload": []}', "payload"),
        (b'{"type": "a.b"}', "payload"),
        (b'{"type": "a.b", "payload": {}, "extra": 1}', "extra"),
        (b"[]", "object"),
        (b"", "JSON"),
    ],
)
async def test_append_bad_json_is_400(client, ledger, tokens, body, why):
    head = ledger.log.head().seq
    resp = await client.post(
        "/v1/events",
        data=body,
        headers={**bearer(tokens["writer"]), "Content-Type": "application/json"},
    )
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "E-BAD-INPUT"
    assert why.lower() in err["message"].lower()
    assert ledger.log.head().seq == head


async def test_append_body_over_the_limit_is_413(make_client, ledger, tokens):
    client = await make_client(max_json_bytes=1024)
    big = json.dumps({"type": "a.b", "payload": {"x": "y" * 2048}})
    resp = await client.post("/v1/events", data=big, headers=bearer(tokens["writer"]))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_concurrent_appends_each_get_their_own_durable_seq(client, ledger, tokens):
    import asyncio

    async def one(i: int) -> int:
        resp = await client.post(
            "/v1/events",
            json={"type": "load.ev", "payload": {"i": i}},
            headers=bearer(tokens["writer"]),
        )
        assert resp.status == 201
        return (await resp.json())["seq"]

    seqs = await asyncio.gather(*(one(i) for i in range(64)))
    assert len(set(seqs)) == 64
    payloads = {ledger.log.get(s).payload["i"] for s in seqs}
    assert payloads == set(range(64))
