"""``/v1/tokens``: what ``cap-agent tokens create|list|revoke`` does, for admins."""

from __future__ import annotations

from aiohttp import web

from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import SEQ, json_object, nullable
from api.http.state import inputs, principal, services
from ledger.tokens import ROLES, IssuedToken, create_token_append, revoke_token_append
from projections.tokens import list_tokens

__all__ = ["group"]

group = RouteGroup("tokens")

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
TOKEN = Named(
    "Token",
    json_object(
        {
            "name": {"type": "string"},
            "role": {"enum": list(ROLES)},
            "token_id": {"type": "string"},
            "created_at": {"type": "string"},
            "created_seq": SEQ,
            "revoked": {"type": "boolean"},
            "revoked_seq": nullable(SEQ),
        }
    ),
)
ISSUED = Named(
    "IssuedToken",
    json_object(
        {
            "name": {"type": "string"},
            "role": {"enum": list(ROLES)},
            "token_id": {"type": "string"},
            "token": {"type": "string"},
            "seq": SEQ,
        }
    ),
)


@group.route(
    "GET",
    "/v1/tokens",
    summary="issued tokens (never their secrets)",
    role="admin",
    params=[Param("all", "query", {"type": "boolean", "default": False}, "include revoked")],
    replies=[Reply(200, "the tokens", json_object({"tokens": {"type": "array", "items": TOKEN}}))],
)
async def list_tokens_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent tokens list`` prints."""
    show_all = inputs(request)["all"]
    records = list_tokens(services(request).ledger.store)
    return web.json_response({"tokens": [r.to_json() for r in records if show_all or r.active]})


@group.route(
    "POST",
    "/v1/tokens",
    summary="issue a token; the response is the only time it is shown",
    role="admin",
    body=Body(
        "application/json",
        json_object({"name": _NAME, "role": {"enum": list(ROLES)}}, extra=False),
    ),
    replies=[
        Reply(201, "the new token (keep it: only its hash is stored)", ISSUED),
        Reply(409, "an active token has that name (E-CONFLICT)"),
    ],
)
async def create_token_route(request: web.Request) -> web.StreamResponse:
    """A ``token.create`` event carrying the token's hash, never the token."""
    body = inputs(request)["body"]
    svc = services(request)
    append, secret = create_token_append(
        svc.ledger.store, body["name"], body["role"], principal(request).actor
    )
    (event,) = await svc.append([append])
    return web.json_response(IssuedToken(secret, event).to_json(), status=201)


@group.route(
    "DELETE",
    "/v1/tokens/{name}",
    summary="revoke the active token with this name",
    role="admin",
    params=[Param("name", "path", _NAME)],
    replies=[
        Reply(409, "that is the token making the request (E-CONFLICT)"),
        Reply(
            200,
            "revoked",
            json_object({"name": {"type": "string"}, "token_id": {"type": "string"}, "seq": SEQ}),
        ),
    ],
)
async def revoke_token_route(request: web.Request) -> web.StreamResponse:
    """A ``token.revoke`` event; the token stops working for the very next request."""
    name = inputs(request)["name"]
    svc = services(request)
    who = principal(request)
    (event,) = await svc.append(
        [revoke_token_append(svc.ledger.store, name, who.actor, caller_token_id=who.token_id)]
    )
    return web.json_response(
        {"name": name, "token_id": event.payload["token_id"], "seq": event.seq}
    )
