"""The aiohttp application: routes from their declarations, middlewares, lifecycle hooks."""

from __future__ import annotations

import asyncio
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from api.http.accesslog import ACCESS_LOG, AccessLog, access_middleware, echo_request_id
from api.http.auth import ROUTES, dispatch_middleware
from api.http.background import background_tasks
from api.http.declare import Route
from api.http.errors import error_middleware
from api.http.inputs import RouteInputs
from api.http.metrics import Metrics
from api.http.openapi import build_openapi
from api.http.routes import GROUPS
from api.http.state import OPENAPI, SERVICES, ServiceConfig, Services
from api.http.stream import Hub
from api.http.writer import WriterClient
from ledger.ledger import Ledger

__all__ = ["all_routes", "create_app", "router_path"]


def all_routes() -> list[Route]:
    return [r for g in GROUPS for r in g.routes]


def router_path(route: Route) -> str:
    """The route's path for aiohttp: a path parameter whose schema has an anchored pattern
    only matches that pattern (``/v1/blobs/gc`` is then not ``/v1/blobs/{id}``)."""
    path = route.path
    for p in route.params:
        pattern = p.schema.get("pattern", "")
        if p.where == "path" and pattern.startswith("^") and pattern.endswith("$"):
            path = path.replace("{" + p.name + "}", "{" + p.name + ":" + pattern[1:-1] + "}")
    return path


def _version() -> str:
    try:
        return version("cap-ledger")
    except PackageNotFoundError:
        return "0"


def create_app(
    ledger: Ledger, config: ServiceConfig | None = None, writer: WriterClient | None = None
) -> web.Application:
    """The service over an open ``ledger`` (which the caller opens and closes); ``writer``:
    the end of a writer process's socket pair, where blob puts go (``serve --workers``)."""
    config = config or ServiceConfig()
    app = web.Application(
        middlewares=[access_middleware, error_middleware, dispatch_middleware],
        client_max_size=config.max_json_bytes,
    )
    routes = all_routes()
    table = {}
    for r in routes:
        table[app.router.add_route(r.method, router_path(r), r.handler)] = RouteInputs.compile(r)
    app[ROUTES] = table
    app[ACCESS_LOG] = AccessLog()
    app[OPENAPI] = build_openapi(routes, title="CAP Ledger", version=_version())
    app.on_response_prepare.append(echo_request_id)

    async def start(app: web.Application) -> None:
        hub = Hub(asyncio.get_running_loop(), config.stream_queue)
        hub.follow(lambda: ledger.log.head().seq, config.stream_follow_s)
        svc = Services(ledger, config, Metrics(ledger.log), hub, writer)
        if writer is not None:
            await writer.start()
        ledger.log.add_listener(hub.on_commit)
        ledger.log.add_listener(svc.metrics.on_commit)
        app[SERVICES] = svc

    async def end_streams(app: web.Application) -> None:
        app[SERVICES].hub.close()

    async def cleanup(app: web.Application) -> None:
        svc = app[SERVICES]
        ledger.log.remove_listener(svc.hub.on_commit)
        ledger.log.remove_listener(svc.metrics.on_commit)
        if writer is not None:  # after the drain: no put is in flight any more
            await writer.close()
        await asyncio.get_running_loop().run_in_executor(None, svc.close)
        app[ACCESS_LOG].flush()  # the drained requests' lines

    app.on_startup.append(start)
    app.cleanup_ctx.append(background_tasks(ledger, config))
    app.on_shutdown.append(end_streams)
    app.on_cleanup.append(cleanup)
    return app
