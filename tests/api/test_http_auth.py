"""Auth for every declared route: 401 without or with a bad token, 403 below the route's
role, and the right role gets past the door. Driven by the declarations themselves, so a new
route is covered the moment it is declared."""

from __future__ import annotations

import re

import pytest

from api.http.app import all_routes
from ledger.errors import Unauthorized
from ledger.tokens import ROLES, authenticate, create_token, revoke_token, role_allows
from tests.api.conftest import bearer

ROUTES = [r for r in all_routes() if r.role is not None]


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "ab" * 32, template)  # fits every path pattern (hex ids)


def _ids(r) -> str:
    return f"{r.method} {r.path}"


async def test_healthz_is_open(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json()) == {"status": "ok"}


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer nonsense",
        "Bearer cap_0123456789abcdef_" + "A" * 43,
    ],
)
async def test_every_route_refuses_missing_or_bad_token(client, route, header):
    headers = {} if header is None else {"Authorization": header}
    resp = await client.request(route.method, _path(route.path), headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    if route.method != "HEAD":  # a HEAD answer has no body
        assert (await resp.json())["error"]["code"] == "E-UNAUTHORIZED"


@pytest.mark.parametrize("route", ROUTES, ids=_ids)
@pytest.mark.parametrize("role", ROLES)
async def test_every_route_checks_the_role(client, tokens, route, role):
    resp = await client.request(route.method, _path(route.path), headers=bearer(tokens[role]))
    if role_allows(role, route.role):
        assert resp.status not in (401, 403)
    else:
        assert resp.status == 403
        if route.method != "HEAD":
            doc = await resp.json()
            assert doc["error"]["code"] == "E-FORBIDDEN"
            assert route.role in doc["error"]["message"]


async def test_revoked_token_stops_working_at_once(client, ledger, tokens):
    assert (await client.get("/v1/ledger/head", headers=bearer(tokens["reader"]))).status == 200
    revoke_token(ledger.log, "t-reader", "test")
    resp = await client.get("/v1/ledger/head", headers=bearer(tokens["reader"]))
    assert resp.status == 401


async def test_right_id_wrong_secret_is_refused(ledger, tokens):
    good = tokens["admin"]
    forged = good[:-1] + ("A" if good[-1] != "A" else "B")
    with pytest.raises(Unauthorized):
        authenticate(ledger.store, forged)
    assert authenticate(ledger.store, good).role == "admin"


async def test_token_secret_is_not_in_the_log(ledger):
    issued = create_token(ledger.log, "someone", "writer", "test")
    raw = b"".join(
        bytes(v) for _, v in ledger.store.env.begin().cursor(db=ledger.store.db("events"))
    )
    assert issued.secret.encode() not in raw
    secret_part = issued.secret.split("_", 2)[2]  # the secret may contain "_"
    assert secret_part.encode() not in raw
    assert issued.event.payload["hash"] != issued.secret
