"""``/v1/audit/*``: replay, the HMAC'd JSONL export and its verification."""

from __future__ import annotations

from itertools import islice

from aiohttp import web

from api.http.bodies import spool_body
from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import SEQ, json_object, nullable
from api.http.state import inputs, services
from ledger.audit_export import ExportKey, export_lines, read_lines, verify_lines
from ledger.errors import BadInput, CheckFailed, NotFound
from ledger.timeline import last_seq_at_or_before, parse_instant, resolve_bound
from projections.replay import audit_replay

__all__ = ["group"]

group = RouteGroup("compliance")

_BOUND = {"type": "string", "pattern": "^([0-9]{1,19}|[0-9]{4}-.{1,40})$"}
_EXPORT_CHUNK = 1000
_MAX_UPLOAD = 1 << 30
REPLAY_REPORT = Named(
    "ReplayReport",
    json_object(
        {
            "format": {"const": "cap-audit-replay/1"},
            "ok": {"type": "boolean"},
            "ledger_id": {"type": "string"},
            "head": SEQ,
            "to": SEQ,
            "as_of": nullable({"type": "string"}),
            "events": SEQ,
            "chains": {"const": "ok"},
            "kids": {"type": "array", "items": {"type": "string"}},
            "compared_with_live": {"type": "boolean"},
            "differences": SEQ,
            "tables": {"type": "array", "items": {"type": "object"}},
            "seconds": {"type": "number"},
            "events_per_second": nullable({"type": "integer"}),
        }
    ),
)
EXPORT_REPORT = Named(
    "ExportReport",
    json_object(
        {
            "ok": {"const": True},
            "format": {"const": "cap-audit-jsonl/1"},
            "lines": SEQ,
            "from": SEQ,
            "to": SEQ,
            "export_kid": {"type": "string"},
        }
    ),
)


@group.route(
    "POST",
    "/v1/audit/replay",
    summary="verify both chains, rebuild every projection aside and compare with the live ones",
    role="auditor",
    body=Body(
        "application/json",
        json_object(
            {
                "to": SEQ,
                "as_of": {"type": "string", "maxLength": 64, "description": "RFC 3339 time"},
            },
            [],
            extra=False,
        ),
        "replay to a seq or to the last event at or before a time (default: the head)",
        required=False,
    ),
    replies=[
        Reply(200, "the replay report (ok)", REPLAY_REPORT),
        Reply(
            422,
            "the chain is broken (E-CHAIN-BROKEN) or projection rows differ from the replayed "
            "log (E-HASH-MISMATCH; details.report names them)",
        ),
        Reply(404, "no event at or before as_of (E-NOT-FOUND)"),
    ],
)
async def replay_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent audit replay`` does, on a worker thread."""
    body = inputs(request)["body"]
    if "to" in body and "as_of" in body:
        raise BadInput("E-BAD-INPUT", "to and as_of exclude each other")
    svc = services(request)
    stop = body.get("to")
    if "as_of" in body:
        when = parse_instant(body["as_of"])
        stop = await svc.off_loop(last_seq_at_or_before, svc.ledger.log, when)
        if stop is None:
            raise NotFound("E-NOT-FOUND", f"no event at or before {body['as_of']}")
    report = await svc.off_loop(lambda: audit_replay(svc.ledger, to=stop))
    doc = {**report.to_json(), "as_of": body.get("as_of")}
    if not report.ok:
        raise CheckFailed(
            "E-HASH-MISMATCH",
            f"{report.differences} projection row(s) differ from the replayed log",
            report=doc,
        )
    return web.json_response(doc)


def _export_key(request: web.Request) -> ExportKey:
    """``serve --export-key-file``, else ``$CAP_AUDIT_EXPORT_KEY``, else the data directory's."""
    svc = services(request)
    return ExportKey.resolve(svc.config.export_key_file, svc.ledger.data.export_key_file)


@group.route(
    "GET",
    "/v1/audit/export",
    summary="one HMAC'd JSON line per event (docs/AUDIT.md), streamed",
    role="auditor",
    params=[
        Param("from", "query", _BOUND, "first seq, or an RFC 3339 time"),
        Param("to", "query", _BOUND, "last seq, or an RFC 3339 time"),
    ],
    replies=[
        Reply(200, "JSON Lines", {"type": "string"}, media="application/x-ndjson"),
        Reply(503, "the service has no export key (E-KEY)"),
    ],
)
async def export_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent audit export --format jsonl`` writes, under the service's export key."""
    q = inputs(request)
    svc = services(request)
    key = _export_key(request)
    log = svc.ledger.log
    start = await svc.off_loop(lambda: resolve_bound(log, q.get("from"), upper=False)) or 0
    stop = await svc.off_loop(lambda: resolve_bound(log, q.get("to"), upper=True))
    last = log.head().seq if stop is None else min(stop, log.head().seq)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await resp.prepare(request)
    if start <= last:
        lines = export_lines(log, key, start, last)
        while chunk := await svc.off_loop(lambda: list(islice(lines, _EXPORT_CHUNK))):
            await resp.write(b"".join(chunk))
    await resp.write_eof()
    return resp


@group.route(
    "POST",
    "/v1/audit/verify-jsonl",
    summary="check an audit export (or a single line of one)",
    role="auditor",
    body=Body("application/octet-stream", {"type": "string"}, "the export's JSON Lines"),
    replies=[
        Reply(200, "every line and the links between them check out", EXPORT_REPORT),
        Reply(
            422,
            "a line was edited (E-SIGNATURE-INVALID) or lines are missing or out of order "
            "(E-CHAIN-BROKEN); details.line names it",
        ),
        Reply(503, "the service has no export key (E-KEY)"),
    ],
)
async def verify_jsonl_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent audit verify-jsonl`` does, under the service's export key."""
    svc = services(request)
    key = _export_key(request)
    f = await spool_body(request, svc, _MAX_UPLOAD)
    try:
        report = await svc.off_loop(lambda: verify_lines(read_lines(f), key))
    finally:
        f.close()
    return web.json_response(report.to_json())
