"""``/v1/registry/entries``: add (multipart, optional self-verification), list (as-of,
filters, cursor), show, and exec (re-run the verifier, record the verdict).

Verifier runs go to a bounded sandbox pool (:class:`ledger.sandbox.VerifierPool`), off the
event loop; uploads are spooled to scratch files, never held whole in memory.
"""

from __future__ import annotations

import tempfile
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import LIMIT, SEQ, json_object, nullable
from api.http.state import Services, inputs, principal, services
from ledger.blobtiers import CHUNK
from ledger.errors import BadInput, EnvironmentProblem, NotFound
from ledger.keys import load_private_key
from ledger.registry import Package
from ledger.registry_entry import SELFVERIFY_STATUSES
from ledger.sandbox.limits import _BOUNDS, LIMIT_NAMES, Limits
from projections.registry import RegistryView

__all__ = ["group"]

group = RouteGroup("registry")

_ENTRY_ID = {"type": "string", "minLength": 1, "maxLength": 256}
_HEX = {"type": ["string", "null"]}
ENTRY = Named(
    "RegistryEntry",
    json_object(
        {
            "id": {"type": "string"},
            "created_at": nullable({"type": "string"}),
            "manifest_hash": _HEX,
            "proof_hash": _HEX,
            "blob_manifest": _HEX,
            "blob_proof": _HEX,
            "blob_wasm": _HEX,
            "blob_abi": _HEX,
            "verifier_name": nullable({"type": "string"}),
            "verifier_version": nullable({"type": "string"}),
            "selfverify_status": {"enum": [*SELFVERIFY_STATUSES, None]},
            "selfverify_at": nullable({"type": "string"}),
            "signature": nullable({"type": "string"}),
            "public_key": nullable({"type": "string"}),
        },
        ["id", "selfverify_status"],
    ),
)
VERDICT = Named(
    "SelfVerifyResult",
    json_object(
        {
            "status": {"enum": ["ok", "fail"]},
            "code": nullable({"type": "string"}),
            "message": {"type": "string"},
            "fuel_used": nullable({"type": "integer"}),
            "duration_us": {"type": "integer"},
        },
        ["status", "code", "message"],
    ),
)
_PARTS = {"manifest": "manifest", "proof": "proof", "verifier": "wasm", "abi": "abi"}
# The sandbox's own bounds, so a schema-valid limit is one the sandbox accepts.
_LIMITS = {n: {"type": "integer", "minimum": lo, "maximum": hi} for n, (lo, hi) in _BOUNDS.items()}
# Limits mean something only for a run: they require selfverify.
_LIMITS_NEED_SELFVERIFY = {
    n: {"required": ["selfverify"], "properties": {"selfverify": {"const": True}}}
    for n in LIMIT_NAMES
}


def _verifier(svc: Services, fields: dict[str, str]) -> Any:
    """The sandbox runner under the service's defaults and the request's (lower or
    higher, within the sandbox's bounds) limits."""
    from ledger.selfverify import SelfVerifier  # wasmtime loads only when needed

    options: dict[str, int | None] = {}
    for name in LIMIT_NAMES:
        raw = fields.get(name)
        if raw is None:
            continue
        try:
            options[name] = int(raw, 10)
        except ValueError:
            raise BadInput("E-BAD-INPUT", f"{name} must be an integer") from None
    return SelfVerifier(Limits.from_options(**options), cache_dir=svc.ledger.data.cache / "wasm")


def _flag(fields: dict[str, str], name: str) -> bool:
    raw = fields.get(name, "false").strip().lower()
    if raw not in ("true", "false", "1", "0", ""):
        raise BadInput("E-BAD-INPUT", f"{name} must be true or false")
    return raw in ("true", "1")


async def _spool_parts(
    request: web.Request, limit: int
) -> tuple[dict[str, BinaryIO], dict[str, str]]:
    """Read the multipart body: the four files into spooled temporary files (memory up to
    one chunk each, then disk), the small fields as text."""
    try:
        reader = await request.multipart()
    except (AssertionError, KeyError, ValueError) as exc:
        raise BadInput("E-BAD-INPUT", f"body must be multipart/form-data ({exc})") from None
    files: dict[str, BinaryIO] = {}
    fields: dict[str, str] = {}
    try:
        try:
            await _read_parts(reader, files, fields, limit)
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            # aiohttp's multipart reader refuses a broken body with these
            raise BadInput("E-BAD-INPUT", f"malformed multipart body: {exc}") from None
    except BaseException:
        for f in files.values():
            f.close()
        raise
    missing = [p for p in _PARTS if p not in files]
    if missing:
        for f in files.values():
            f.close()
        raise BadInput("E-BAD-INPUT", f"multipart body lacks {', '.join(missing)}")
    return files, fields


async def _read_parts(
    reader: MultipartReader, files: dict[str, BinaryIO], fields: dict[str, str], limit: int
) -> None:
    """Fill ``files`` (spooled) and ``fields`` from the parts, in whatever order they come."""
    while True:
        part = await reader.next()
        if part is None:
            return
        if not isinstance(part, BodyPartReader) or not part.name:
            raise BadInput("E-BAD-INPUT", "every multipart part needs a name")
        name = part.name
        if name in files or name in fields:
            raise BadInput("E-BAD-INPUT", f"multipart part {name!r} appears twice")
        if name in _PARTS:
            spool = tempfile.SpooledTemporaryFile(CHUNK)  # noqa: SIM115 (closed below)
            files[name] = spool  # type: ignore[assignment]
            size = 0
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
                spool.write(chunk)
            spool.seek(0)
        elif name in ("selfverify", *LIMIT_NAMES):
            fields[name] = (await part.read(decode=True))[:64].decode("utf-8", "replace")
        else:
            raise BadInput("E-BAD-INPUT", f"unknown multipart part {name!r}")


@group.route(
    "POST",
    "/v1/registry/entries",
    summary="store a proof package and append a signed entry (optionally self-verified)",
    role="writer",
    body=Body(
        "multipart/form-data",
        json_object(
            {
                "manifest": {"type": "string", "format": "binary"},
                "proof": {"type": "string", "format": "binary"},
                "verifier": {"type": "string", "format": "binary"},
                "abi": {"type": "string", "format": "binary"},
                "selfverify": {"type": "boolean"},
                **_LIMITS,
            },
            ["manifest", "proof", "verifier", "abi"],
            extra=False,
        )
        | {"dependentSchemas": _LIMITS_NEED_SELFVERIFY},
        "the package's four files; selfverify runs the verifier first and signs its verdict",
    ),
    replies=[
        Reply(
            201,
            "the entry (durable), its event's seq and, with selfverify, the verdict",
            {"allOf": [ENTRY, json_object({"seq": SEQ}, ["seq"])]},
        ),
        Reply(409, "this exact entry already exists (E-CONFLICT)"),
        Reply(422, "the ABI file is malformed (E-ABI-INVALID)"),
    ],
)
async def add_entry(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent registry add [--selfverify]`` does, signed with the service's key;
    a failing self-verification is recorded in the entry (status fail) like the CLI's."""
    svc = services(request)
    if svc.config.signing_key is None:
        raise EnvironmentProblem("E-KEY", "the service was started without a signing key")
    files, fields = await _spool_parts(request, svc.config.max_blob_bytes)
    try:
        selfverify = _flag(fields, "selfverify")
        if not selfverify and any(n in fields for n in LIMIT_NAMES):
            raise BadInput("E-BAD-INPUT", "limit fields apply to selfverify only")
        verifier = _verifier(svc, fields)
        key = load_private_key(svc.config.signing_key)
        package = Package(**{_PARTS[n]: f for n, f in files.items()})
        reg = svc.registry
        actor = principal(request).actor

        def add() -> tuple[dict[str, Any], Any]:
            return reg.add(package, key, actor=actor, selfverify=verifier if selfverify else None)

        if selfverify:
            entry, event = await svc.sandbox.call(add)
        else:
            entry, event = await svc.off_loop(add)
    finally:
        for f in files.values():
            f.close()
    doc = {**entry, "seq": event.seq}
    if verifier.last is not None:
        doc["selfverify"] = verifier.last.to_payload()
        svc.metrics.sandbox_runs.labels(verifier.last.code or "ok").inc()
    return web.json_response(
        doc, status=201, headers={"Location": f"/v1/registry/entries/{entry['id']}"}
    )


@group.route(
    "GET",
    "/v1/registry/entries",
    summary="entries in id order, a page at a time, now or as of an event",
    role="reader",
    params=[
        Param("status", "query", {"enum": list(SELFVERIFY_STATUSES)}, "selfverify_status"),
        Param("verifier_name", "query", {"type": "string", "maxLength": 256}, "only this verifier"),
        Param("as_of", "query", SEQ, "as the registry was right after event AS_OF"),
        LIMIT,
        Param("cursor", "query", _ENTRY_ID, "the `next` of the previous page"),
    ],
    replies=[
        Reply(
            200,
            "a page; `next` is null on the last one",
            json_object(
                {"entries": {"type": "array", "items": ENTRY}, "next": nullable({"type": "string"})}
            ),
        )
    ],
)
async def list_entries(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent registry list`` prints. Unfiltered pages are read on the loop (a
    page is a short cursor walk); filtered or as-of scans run on a worker thread."""
    q = inputs(request)
    svc = services(request)
    view = RegistryView(svc.ledger.store)

    def page() -> tuple[list[dict[str, Any]], str | None]:
        with svc.ledger.store.read() as txn:
            return view.list_entries(
                txn,
                status=q.get("status"),
                verifier_name=q.get("verifier_name"),
                as_of=q.get("as_of"),
                limit=q["limit"],
                cursor=q.get("cursor"),
            )

    scan = any(q.get(k) is not None for k in ("status", "verifier_name", "as_of"))
    rows, nxt = await svc.off_loop(page) if scan else page()
    return web.json_response({"entries": rows, "next": nxt})


@group.route(
    "GET",
    "/v1/registry/entries/{id}",
    summary="one entry, now or as of an event",
    role="reader",
    params=[
        Param("id", "path", _ENTRY_ID, "the entry id"),
        Param("as_of", "query", SEQ, "as it was right after event AS_OF"),
    ],
    replies=[Reply(200, "the entry", ENTRY)],
)
async def show_entry(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent registry show`` prints."""
    q = inputs(request)
    svc = services(request)
    with svc.ledger.store.read() as txn:
        doc = RegistryView(svc.ledger.store).get_entry(txn, q["id"], q.get("as_of"))
    if doc is None:
        when = "" if q.get("as_of") is None else f" as of seq {q['as_of']}"
        raise NotFound("E-NOT-FOUND", f"no registry entry {q['id']!r}{when}")
    return web.json_response(doc)


@group.route(
    "POST",
    "/v1/registry/entries/{id}/exec",
    summary="re-run the entry's verifier on its stored blobs and record the verdict",
    role="writer",
    params=[Param("id", "path", _ENTRY_ID, "the entry id")],
    body=Body(
        "application/json",
        json_object(_LIMITS, [], extra=False),
        "sandbox limits for this run (default: the host's)",
        required=False,
    ),
    replies=[
        Reply(
            200,
            "the verdict (ok or fail with its E- code) and the selfverify.result event's seq",
            {"allOf": [VERDICT, json_object({"seq": SEQ, "entry_id": {"type": "string"}})]},
        )
    ],
)
async def exec_entry(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent registry exec`` does, on the bounded sandbox pool. A verdict of
    fail is still a 200: the run happened and is recorded; its code is in the body."""
    q = inputs(request)
    svc = services(request)
    verifier = _verifier(svc, {k: str(v) for k, v in q["body"].items()})
    reg = svc.registry
    result, event = await svc.sandbox.call(
        verifier.exec_entry, reg, q["id"], actor=principal(request).actor
    )
    svc.metrics.sandbox_runs.labels(result.code or "ok").inc()
    return web.json_response({**result.to_payload(q["id"]), "seq": event.seq})
