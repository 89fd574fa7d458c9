"""Bearer-token authentication and role checks, driven by each route's declared role.

The token is looked up by its public id and compared by hash in constant time
(:func:`ledger.tokens.authenticate`); it is never logged or echoed. 401 for a missing,
unknown or revoked token; 403 when the token's role is below the route's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.http.declare import Route
from api.http.inputs import RouteInputs
from api.http.state import INPUTS, PRINCIPAL, ROUTE, services
from ledger.errors import Forbidden
from ledger.store import Store
from ledger.tokens import Principal, authenticate, role_allows

__all__ = ["ROUTES", "bearer_token", "dispatch_middleware"]

ROUTES = web.AppKey("routes", dict)  # aiohttp route object -> its RouteInputs


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def check_role(store: Store, request: web.Request, route: Route) -> Principal:
    """The caller, if its token is valid and its role reaches the route's."""
    assert route.role is not None
    who = authenticate(store, bearer_token(request))
    if not role_allows(who.role, route.role):
        raise Forbidden(
            "E-FORBIDDEN", f"this needs role {route.role} or higher; token has {who.role}"
        )
    return who


@web.middleware
async def dispatch_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Authenticate, authorize and parse the declared inputs before the handler runs."""
    compiled: RouteInputs | None = request.app[ROUTES].get(request.match_info.route)
    if compiled is None:  # aiohttp's own 404/405 routes
        return await handler(request)
    route = compiled.route
    request[ROUTE] = route
    if route.role is not None:
        request[PRINCIPAL] = check_role(services(request).ledger.store, request, route)
    values = compiled.query(request)
    if compiled.body is not None:
        values["body"] = await compiled.json(request)
    request[INPUTS] = values
    return await handler(request)
