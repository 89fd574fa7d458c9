"""One structured JSON access-log line and the request metrics for every request.

Each request gets an id (the client's ``X-Request-Id`` when it is short and plain, else a new
one), echoed in the response. Only the method, route, path, status, timing, size and the
token's *name* are logged: never a header, a query string or a body.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import logging
import os
import re
import secrets
import select
import time
from typing import Any

import structlog
from aiohttp import web

from api.http.declare import Route
from api.http.state import PRINCIPAL, REQUEST_ID, ROUTE, services
from ledger.logs import get_logger

__all__ = ["ACCESS_LOG", "AccessLog", "access_middleware", "echo_request_id"]
_PREPARED = web.RequestKey("prepared_response", web.StreamResponse)
_RID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _Ids:
    """Request ids: a random per-process prefix and a counter (a uuid4 per request cost a
    getrandom call on every request). Re-seeded in each forked worker, so ids stay unique
    across the workers of one service."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_IDS = _Ids()


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _RID.match(given) else _IDS.next()


class AccessLog:
    """The access log: one JSON object a line, written straight to the configured log
    output. Every request writes this line, so it skips structlog's processor chain (a
    tenth of a small read's cost, measured); its fields are fixed and hold no secret (the
    token's name, never the token). The line has what the service's other JSON lines have:
    ``event``, the bound context (``worker``), ``level`` and an ISO 8601 UTC ``timestamp``.

    Lines are buffered, as nginx's ``access_log ... buffer= flush=`` does: a ``write`` per
    line cost each request 15-40 us of CPU with two workers appending to one file
    (measured). They go
    out several to a write, at most ``PIPE_BUF`` bytes, so lines of workers sharing one
    pipe never interleave; at the latest ``FLUSH_S`` after they were logged, and when the
    service stops (:meth:`flush` on cleanup). Built when the app is, after ``serve`` has
    configured logging."""

    FLUSH_S = 0.1
    _WRITE_MAX = select.PIPE_BUF  # 4096 on Linux: the size a pipe writes in one piece

    def __init__(self) -> None:
        self.enabled = get_logger("cap.http.access").bind().is_enabled_for(logging.INFO)
        self._out = structlog.get_config()["logger_factory"]()
        self._context = structlog.contextvars.get_contextvars()
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None

    def request(self, **fields: Any) -> None:
        if not self.enabled:
            return
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        line = {**fields, "event": "http.request", **self._context, "level": "info"}
        line["timestamp"] = now
        text = json.dumps(line)
        if self._size + len(text) + 1 > self._WRITE_MAX:
            self.flush()
        self._lines.append(text)
        self._size += len(text) + 1
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        """Write the buffered lines now (one write; the logger adds the last newline)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            text = "\n".join(self._lines)
            self._lines.clear()
            self._size = 0
            self._out.msg(text)


ACCESS_LOG = web.AppKey("access_log", AccessLog)


def _size(resp: web.StreamResponse | None) -> int | None:
    if resp is None:
        return None
    return resp.body_length if resp.prepared else resp.content_length


async def echo_request_id(request: web.Request, resp: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: every response, streamed or not, names its request."""
    request[_PREPARED] = resp
    rid = request.get(REQUEST_ID)
    if rid is not None:
        resp.headers["X-Request-Id"] = rid


@web.middleware
async def access_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    rid = _request_id(request)
    request[REQUEST_ID] = rid
    start = time.perf_counter()
    status = 500
    resp: web.StreamResponse | None = None
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BaseException:
        # The client went away (or the service is stopping) mid-request: 499, unless the
        # response had started (a stream the client left), which is logged as sent.
        sent = request.get(_PREPARED)
        status = sent.status if sent is not None else 499
        resp = sent
        raise
    finally:
        elapsed = time.perf_counter() - start
        route: Route | None = request.get(ROUTE)
        template = route.path if route is not None else "unmatched"
        metrics = services(request).metrics
        metrics.http_requests.labels(template, request.method, str(status)).inc()
        metrics.http_latency.labels(template).observe(elapsed)
        who = request.get(PRINCIPAL)
        request.app[ACCESS_LOG].request(
            request_id=rid,
            method=request.method,
            route=template,
            path=request.path,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
            bytes_out=_size(resp),
            token_name=who.name if who is not None else None,
            remote=request.remote,
        )
