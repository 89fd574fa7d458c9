"""``/v1/tokens`` (admin): issue, list, revoke; a token cannot revoke itself."""

from __future__ import annotations

from tests.api.conftest import bearer


async def test_issue_use_list_and_revoke(client, tokens):
    admin = bearer(tokens["admin"])
    resp = await client.post("/v1/tokens", json={"name": "bot", "role": "writer"}, headers=admin)
    assert resp.status == 201
    issued = await resp.json()
    assert issued["token"].startswith("cap_")
    bot = bearer(issued["token"])
    resp = await client.post("/v1/events", json={"type": "bot.ev", "payload": {}}, headers=bot)
    assert resp.status == 201
    assert (await resp.json())["actor"] == "token:bot"

    listed = await (await client.get("/v1/tokens", headers=admin)).json()
    assert "bot" in [t["name"] for t in listed["tokens"]]
    assert issued["token"] not in str(listed)

    resp = await client.delete("/v1/tokens/bot", headers=admin)
    assert resp.status == 200
    assert (await resp.json())["token_id"] == issued["token_id"]
    resp = await client.post("/v1/events", json={"type": "bot.ev", "payload": {}}, headers=bot)
    assert resp.status == 401
    listed = await (await client.get("/v1/tokens?all=true", headers=admin)).json()
    assert [t["revoked"] for t in listed["tokens"] if t["name"] == "bot"] == [True]


async def test_duplicate_name_is_409(client, tokens):
    resp = await client.post(
        "/v1/tokens", json={"name": "t-reader", "role": "reader"}, headers=bearer(tokens["admin"])
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "E-CONFLICT"


async def test_a_token_cannot_revoke_itself(client, tokens):
    resp = await client.delete("/v1/tokens/t-admin", headers=bearer(tokens["admin"]))
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "E-CONFLICT"
    assert (await client.get("/v1/tokens", headers=bearer(tokens["admin"]))).status == 200


async def test_revoke_unknown_is_404(client, tokens):
    resp = await client.delete("/v1/tokens/nobody", headers=bearer(tokens["admin"]))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "E-NOT-FOUND"


async def test_bad_token_bodies_are_400(client, tokens):
    admin = bearer(tokens["admin"])
    for body in ({"name": "x", "role": "root"}, {"name": "bad name", "role": "reader"}, {}):
        resp = await client.post("/v1/tokens", json=body, headers=admin)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"
