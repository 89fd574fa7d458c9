"""``/healthz`` (open), ``/metrics`` and ``/openapi.json``."""

from __future__ import annotations

from aiohttp import web

from api.http.declare import Reply, RouteGroup
from api.http.metrics import CONTENT_TYPE
from api.http.schemas import json_object
from api.http.state import OPENAPI, services

__all__ = ["group"]

group = RouteGroup("system")


@group.route(
    "GET",
    "/healthz",
    summary="liveness: the store answers",
    role=None,
    replies=[Reply(200, "the service is up", json_object({"status": {"const": "ok"}}))],
)
async def healthz(request: web.Request) -> web.StreamResponse:
    """Reads the head once, so a dead store fails the check; open to everyone."""
    services(request).ledger.log.head()
    return web.json_response({"status": "ok"})


@group.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    role="reader",
    replies=[Reply(200, "metrics", {"type": "string"}, media="text/plain")],
)
async def metrics(request: web.Request) -> web.StreamResponse:
    """Events appended, append latency, HTTP requests by route and status, sandbox runs by
    outcome, projection lag."""
    body = await services(request).off_loop(services(request).metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


@group.route(
    "GET",
    "/openapi.json",
    summary="this document (OpenAPI 3.1, generated from the route declarations)",
    role="reader",
    replies=[Reply(200, "the OpenAPI document", {"type": "object"})],
)
async def openapi(request: web.Request) -> web.StreamResponse:
    """Generated at startup from the same declarations the router and validators use."""
    return web.json_response(request.app[OPENAPI])
