"""``/v1/ledger/head`` and ``/v1/ledger/verify``: the chain's state and its audit."""

from __future__ import annotations

from aiohttp import web

from api.http.declare import Body, Named, Reply, RouteGroup
from api.http.schemas import HEAD, HEX32, SEQ, json_object
from api.http.state import inputs, services

__all__ = ["group"]

group = RouteGroup("ledger")

VERIFY_REPORT = Named(
    "VerifyReport",
    json_object(
        {
            "ok": {"const": True},
            "from": SEQ,
            "to": SEQ,
            "count": SEQ,
            "head": json_object({"seq": SEQ, "b3": HEX32, "mac": HEX32}),
            "kids": {"type": "array", "items": {"type": "string"}},
        }
    ),
)


@group.route(
    "GET",
    "/v1/ledger/head",
    summary="the last event's seq and both chain values",
    role="reader",
    replies=[Reply(200, "the head", HEAD)],
)
async def ledger_head(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger head`` prints."""
    log = services(request).ledger.log
    return web.json_response({"ledger_id": log.ledger_id, **log.head().to_json()})


@group.route(
    "POST",
    "/v1/ledger/verify",
    summary="recompute both chains (names the first bad seq)",
    role="auditor",
    body=Body(
        "application/json",
        json_object({"from": SEQ, "to": SEQ}, [], extra=False),
        "range to check (default: all)",
        required=False,
    ),
    replies=[
        Reply(200, "both chains check out", VERIFY_REPORT),
        Reply(422, "the chain is broken (E-CHAIN-BROKEN, details.seq) or a key is wrong"),
    ],
)
async def ledger_verify(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger verify`` does, run on a worker thread off the event loop."""
    body = inputs(request)["body"]
    svc = services(request)
    report = await svc.off_loop(svc.ledger.log.verify, body.get("from", 0), body.get("to"))
    return web.json_response(report.to_json())
