"""``/v1/events``: read the log a page at a time, append user events, follow it live (SSE)."""

from __future__ import annotations

import json
import re

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import EVENT, JSON_OBJECT, LIMIT, SEQ, SEQ_MAX, json_object, nullable
from api.http.state import Services, inputs, principal, services
from ledger.errors import BadInput
from ledger.events import RESERVED_PREFIXES, Event
from ledger.log import Append
from ledger.user_events import TYPE_PATTERN, validate_user_event

__all__ = ["group"]

group = RouteGroup("events")

AFTER = Param(
    "after",
    "query",
    {"type": "integer", "minimum": -1, "maximum": SEQ_MAX},
    "only events with seq > AFTER",
)

EVENT_PAGE = Named(
    "EventPage",
    json_object(
        {
            "events": {"type": "array", "items": EVENT},
            "next": nullable(SEQ),
        }
    ),
)
_REPLAY_CHUNK = 512
USER_TYPE = {
    "description": "an event type outside the reserved prefixes " + " ".join(RESERVED_PREFIXES),
    "type": "string",
    "pattern": TYPE_PATTERN,
    "not": {"pattern": "^(" + "|".join(re.escape(p) for p in RESERVED_PREFIXES) + ")"},
}


@group.route(
    "GET",
    "/v1/events",
    summary="events in seq order, a page at a time",
    role="reader",
    params=[
        AFTER,
        LIMIT,
        Param(
            "type",
            "query",
            {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 129}},
            "only these types (repeatable; a trailing * matches a prefix)",
        ),
    ],
    replies=[Reply(200, "a page; pass `next` as `after` for the following one", EVENT_PAGE)],
)
async def list_events(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger log`` prints; ``next`` is null on the last page."""
    q = inputs(request)
    svc = services(request)
    limit = q["limit"]

    def page() -> list[Event]:
        return list(svc.ledger.log.events(q.get("after", -1), limit + 1, q.get("type", ())))

    events = await svc.off_loop(page)
    more = len(events) > limit
    events = events[:limit]
    return web.json_response(
        {
            "events": [ev.to_json() for ev in events],
            "next": events[-1].seq if more else None,
        }
    )


@group.route(
    "POST",
    "/v1/events",
    summary="append a user event (any type outside the reserved prefixes)",
    role="writer",
    body=Body(
        "application/json",
        json_object({"type": USER_TYPE, "payload": JSON_OBJECT}, extra=False),
    ),
    replies=[Reply(201, "the durable event (with its seq)", EVENT)],
)
async def append_event(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger append`` does; returns once the event is on disk."""
    body = inputs(request)["body"]
    payload = validate_user_event(body["type"], body["payload"])
    svc = services(request)
    (event,) = await svc.append([Append(body["type"], payload, principal(request).actor)])
    return web.json_response(event.to_json(), status=201)


def _resume_point(request: web.Request, after: int | None, head: int) -> int:
    """Last-Event-ID (a reconnecting client) wins over ``after``; neither: from the head."""
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None and last_id.strip():
        try:
            seq = int(last_id.strip(), 10)
        except ValueError:
            raise BadInput("E-BAD-INPUT", "Last-Event-ID must be an event seq") from None
        if not -1 <= seq <= SEQ_MAX:
            raise BadInput("E-BAD-INPUT", "Last-Event-ID must be an event seq")
        return seq
    return head if after is None else after


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def _send(resp: EventSourceResponse, ev: Event) -> None:
    await resp.send(json.dumps(ev.to_json(), ensure_ascii=False), id=str(ev.seq))


async def _replay(svc: Services, resp: EventSourceResponse, last: int, upto: int | None) -> int:
    """Send the logged events after ``last`` (up to ``upto``), a chunk at a time, reading
    in short transactions off the loop. Returns the last seq sent."""
    log = svc.ledger.log
    while upto is None or last < upto:
        n = _REPLAY_CHUNK if upto is None else min(_REPLAY_CHUNK, upto - last)
        batch = await svc.off_loop(lambda a=last, k=n: list(log.events(a, k)))
        if not batch:
            return last
        for ev in batch:
            await _send(resp, ev)
            last = ev.seq
    return last


@group.route(
    "GET",
    "/v1/events/stream",
    summary="Server-Sent Events of new events as they commit",
    role="reader",
    params=[
        AFTER,
        Param(
            "Last-Event-ID",
            "header",
            {"type": "string"},
            "resume after this seq (sent by reconnecting EventSource clients)",
        ),
    ],
    replies=[
        Reply(
            200,
            "an endless text/event-stream: `id` is the seq, `data` the event's JSON; "
            "comment lines are heartbeats",
            {"type": "string"},
            media="text/event-stream",
        )
    ],
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Replays from the log after the resume point, then switches to live events without a
    gap or a duplicate. A client that cannot keep up is disconnected (it resumes with
    Last-Event-ID) rather than slowing the writer."""
    svc = services(request)
    log = svc.ledger.log
    last = _resume_point(request, inputs(request).get("after"), log.head().seq)
    resp = EventSourceResponse(
        ping_interval=svc.config.heartbeat_s, send_timeout=svc.config.stream_send_timeout_s
    )
    await resp.prepare(request)
    async with resp:
        # Subscribe before catching up, so whatever commits meanwhile is kept. A client too
        # slow for its buffer has its connection aborted, which also ends a blocked send.
        sub = svc.hub.subscribe(on_drop=lambda: _abort(request))
        try:
            last = await _replay(svc, resp, last, None)
            while not sub.closed and resp.is_connected():
                batch = await sub.take(svc.config.heartbeat_s)
                if sub.dropped:
                    break
                if not batch:  # quiet, or nudged: read what other processes have written
                    last = await _replay(svc, resp, last, None)
                    continue
                for ev in batch:
                    if ev.seq <= last:
                        continue  # already sent while catching up
                    if ev.seq > last + 1:  # written by another process: fill from the log
                        last = await _replay(svc, resp, last, ev.seq - 1)
                    await _send(resp, ev)
                    last = ev.seq
        except ConnectionResetError:
            pass  # the client went away (or was dropped); it resumes with Last-Event-ID
        finally:
            if sub.dropped:
                svc.metrics.stream_clients_dropped.inc()
            svc.hub.unsubscribe(sub)
    return resp
