"""``/v1/ledger/head`` and ``/v1/ledger/verify``."""

from __future__ import annotations

from ledger.log import seq_key
from tests.api.conftest import bearer


async def test_head_matches_the_log(client, ledger, tokens):
    ev = ledger.log.append("test.ev", {})
    resp = await client.get("/v1/ledger/head", headers=bearer(tokens["reader"]))
    doc = await resp.json()
    assert doc == {
        "ledger_id": ledger.log.ledger_id,
        "seq": ev.seq,
        "b3": ev.b3.hex(),
        "mac": ev.mac.hex(),
    }


async def test_verify_all_and_a_range(client, ledger, tokens):
    for i in range(5):
        ledger.log.append("test.ev", {"i": i})
    resp = await client.post("/v1/ledger/verify", headers=bearer(tokens["auditor"]))
    doc = await resp.json()
    assert resp.status == 200
    assert doc["ok"] is True
    assert doc["count"] == ledger.log.head().seq + 1
    resp = await client.post(
        "/v1/ledger/verify", json={"from": 2, "to": 4}, headers=bearer(tokens["auditor"])
    )
    doc = await resp.json()
    assert (doc["from"], doc["to"], doc["count"]) == (2, 4, 3)


async def test_verify_names_the_first_bad_seq(client, ledger, tokens):
    for i in range(4):
        ledger.log.append("test.ev", {"i": i})
    bad = ledger.log.head().seq - 1
    with ledger.store.write() as txn:
        raw = bytearray(txn.get(seq_key(bad), db=ledger.store.db("events")))
        raw[-1] ^= 0x01
        txn.put(seq_key(bad), bytes(raw), db=ledger.store.db("events"))
    resp = await client.post("/v1/ledger/verify", headers=bearer(tokens["auditor"]))
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == "E-CHAIN-BROKEN"
    assert err["details"]["seq"] == bad


async def test_verify_bad_body_is_400(client, tokens):
    for body in (b'{"from": -1}', b'{"from": "a"}', b'{"nope": 1}', b"{"):
        resp = await client.post("/v1/ledger/verify", data=body, headers=bearer(tokens["auditor"]))
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_verify_range_outside_the_log(client, ledger, tokens):
    head = ledger.log.head().seq
    resp = await client.post(
        "/v1/ledger/verify", json={"from": head + 1}, headers=bearer(tokens["auditor"])
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"

    resp = await client.post(
        "/v1/ledger/verify", json={"from": 3, "to": 2}, headers=bearer(tokens["auditor"])
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"
