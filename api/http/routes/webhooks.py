"""``/v1/webhooks``: subscriptions to signed deliveries (admin). The service generates the
secret, keeps it in a 0600 file under the data directory and shows it once."""

from __future__ import annotations

from aiohttp import web

from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import LIMIT, SEQ, json_object, nullable
from api.http.state import inputs, principal, services
from ledger.errors import NotFound
from ledger.webhooks import (
    add_subscription,
    iter_pending,
    list_subscriptions,
    managed_secret,
    new_secret_file,
    pending_count,
    remove_subscription,
)

__all__ = ["group"]

group = RouteGroup("webhooks")

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_TYPE = {"type": "string", "pattern": r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\*?)$"}
SUBSCRIPTION = Named(
    "Webhook",
    json_object(
        {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "types": {"type": "array", "items": {"type": "string"}},
            "secret_ref": {"type": "string"},
            "secret_id": {"type": "string"},
            "created_seq": SEQ,
            "created_at": {"type": "string"},
            "pending": SEQ,
        }
    ),
)
DELIVERY = json_object(
    {
        "subscription": {"type": "string"},
        "seq": SEQ,
        "attempts": SEQ,
        "next_at_ms": SEQ,
        "last_error": nullable({"type": "string"}),
    }
)


@group.route(
    "GET",
    "/v1/webhooks",
    summary="active subscriptions with their queue depth",
    role="admin",
    replies=[
        Reply(
            200,
            "the subscriptions",
            json_object({"webhooks": {"type": "array", "items": SUBSCRIPTION}}),
        )
    ],
)
async def list_webhooks(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent webhooks list`` prints."""
    store = services(request).ledger.store
    subs = list_subscriptions(store)
    return web.json_response(
        {"webhooks": [{**s.to_json(), "pending": pending_count(store, s.id)} for s in subs]}
    )


@group.route(
    "POST",
    "/v1/webhooks",
    summary="subscribe a URL to event types; the response shows the secret once",
    role="admin",
    body=Body(
        "application/json",
        json_object(
            {
                "url": {"type": "string", "pattern": "^https?://[^/@\\s]+(/\\S*)?$"},
                "types": {"type": "array", "items": _TYPE, "minItems": 1, "maxItems": 64},
                "name": _NAME,
            },
            ["url", "types"],
            extra=False,
        ),
    ),
    replies=[
        Reply(
            201,
            "subscribed; `secret` is shown this once (only its fingerprint is recorded)",
            json_object(
                {
                    "id": {"type": "string"},
                    "url": {"type": "string"},
                    "types": {"type": "array", "items": {"type": "string"}},
                    "secret_id": {"type": "string"},
                    "secret": {"type": "string"},
                    "seq": SEQ,
                }
            ),
        ),
        Reply(409, "a webhook with that name exists (E-CONFLICT)"),
    ],
)
async def add_webhook(request: web.Request) -> web.StreamResponse:
    """A ``ledger.webhook.add`` event naming the secret's file, never the secret."""
    body = inputs(request)["body"]
    svc = services(request)
    secret, path, name = new_secret_file(svc.ledger.data, body.get("name"))
    try:
        event = await svc.off_loop(
            lambda: add_subscription(
                svc.ledger.log,
                url=body["url"],
                secret_file=path,
                types=body["types"],
                name=name,
                actor=principal(request).actor,
            )
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    p = event.payload
    return web.json_response(
        {
            "id": p["id"],
            "url": p["url"],
            "types": p["types"],
            "secret_id": p["secret_id"],
            "secret": secret,
            "seq": event.seq,
        },
        status=201,
    )


@group.route(
    "DELETE",
    "/v1/webhooks/{name}",
    summary="unsubscribe (its queued deliveries are dropped)",
    role="admin",
    params=[Param("name", "path", _NAME)],
    replies=[Reply(200, "removed", json_object({"id": {"type": "string"}, "seq": SEQ}))],
)
async def remove_webhook(request: web.Request) -> web.StreamResponse:
    """A ``ledger.webhook.remove`` event; a secret the service generated is deleted too."""
    name = inputs(request)["name"]
    svc = services(request)
    subs = {s.id: s for s in list_subscriptions(svc.ledger.store)}
    event = await svc.off_loop(remove_subscription, svc.ledger.log, name, principal(request).actor)
    generated = managed_secret(svc.ledger.data, subs[name].secret_ref) if name in subs else None
    if generated is not None:
        generated.unlink(missing_ok=True)
    return web.json_response({"id": name, "seq": event.seq})


@group.route(
    "GET",
    "/v1/webhooks/{name}/pending",
    summary="queued deliveries of a subscription, oldest first",
    role="admin",
    params=[Param("name", "path", _NAME), LIMIT],
    replies=[
        Reply(200, "the queue head", json_object({"pending": {"type": "array", "items": DELIVERY}}))
    ],
)
async def pending_webhook(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent webhooks status`` prints."""
    q = inputs(request)
    store = services(request).ledger.store
    if q["name"] not in {s.id for s in list_subscriptions(store)}:
        raise NotFound("E-NOT-FOUND", f"no webhook named {q['name']!r}")
    rows = [d.to_json() for d in iter_pending(store, q["name"], q["limit"])]
    return web.json_response({"pending": rows})
