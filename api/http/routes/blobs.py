"""``/v1/blobs``: put (streamed, size-limited), get/head (ETag, Range, verified), list, GC."""

from __future__ import annotations

import asyncio
from typing import Any, BinaryIO, cast

from aiohttp import web

from api.http.bodies import BodyReader, check_declared_size, send_verified
from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import HEX32, LIMIT, SEQ, json_object, nullable
from api.http.state import inputs, principal, services
from ledger.blob_gc import DEFAULT_MIN_AGE, collect_garbage
from ledger.blobs import DEFAULT_MEDIA_TYPE, check_blob_id, check_media_type
from ledger.errors import CapError
from ledger.logs import get_logger
from projections.blobs import BlobsView

__all__ = ["group"]

group = RouteGroup("blobs")
_log = get_logger("cap.http.blobs")

BLOB = Named(
    "Blob",
    json_object(
        {
            "blob_id": HEX32,
            "size": {"type": "integer", "minimum": 0},
            "media_type": {"type": "string"},
            "refcount": {"type": "integer", "minimum": 0},
            "sha3_256": HEX32,
            "created_at": {"type": "string"},
        }
    ),
)
BLOB_PUT = Named(
    "BlobPut",
    {"allOf": [BLOB, json_object({"seq": SEQ})]},
)
BLOB_ID = Param("id", "path", HEX32, "the blob id (BLAKE3 hex of the bytes)")
_BYTES = {"type": "string", "format": "binary"}
_BLOB_HEADERS: dict[str, dict[str, Any]] = {
    "ETag": {"description": "the blob id, quoted", "schema": {"type": "string"}},
    "Accept-Ranges": {"schema": {"type": "string"}},
}


@group.route(
    "PUT",
    "/v1/blobs",
    summary="store the request body as a blob (Content-Type is its media type)",
    role="writer",
    body=Body(
        "*/*",
        _BYTES,
        "the bytes, streamed (none: the empty blob); larger than the limit is a 413",
        required=False,
    ),
    replies=[Reply(201, "stored (durable); the blob and its event's seq", BLOB_PUT)],
)
async def put_blob(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent blob put`` does: hashed while streamed (memory stays bounded),
    small blobs kept in LMDB, large ones in the file tier, then one ``blob.put`` event."""
    svc = services(request)
    limit = svc.config.max_blob_bytes
    check_declared_size(request, limit)
    media_type = check_media_type(request.headers.get("Content-Type", DEFAULT_MEDIA_TYPE))
    store = svc.blobs
    size = request.content_length
    if size is not None and size <= min(store.inline_max, svc.config.max_json_bytes):
        staged = store.stage_bytes(await request.read())  # small: hashed on the loop
    else:
        reader = BodyReader(request, asyncio.get_running_loop(), limit)
        staged = await svc.off_loop(lambda: store.stage(cast(BinaryIO, reader)))
    persisted = store.persisted([staged])
    if staged.tier == "lmdb":
        persisted.__enter__()
    else:  # a rename and two fsyncs: off the loop
        await svc.off_loop(persisted.__enter__)
    try:
        event = await svc.put_blob(staged, media_type, principal(request).actor)
    finally:
        persisted.__exit__(None, None, None)
    info = store.info(staged.blob_id)
    return web.json_response(
        {**info.to_json(), "seq": event.seq},
        status=201,
        headers={"Location": f"/v1/blobs/{info.blob_id}", "ETag": f'"{info.blob_id}"'},
    )


def _window(request: web.Request, size: int) -> tuple[int, int] | None:
    """The requested byte range as [start, end), None for the whole blob (aiohttp parses
    the Range header; a malformed one is ignored); 416 when it lies outside the blob."""
    if "Range" not in request.headers:
        return None
    try:
        rng = request.http_range
    except ValueError:  # not a single byte range we can read: ignored, as RFC 9110 allows
        return None
    start, stop, _ = rng.indices(size)
    if rng.start is None and rng.stop is None:
        return None
    if start >= stop:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, stop


@group.route(
    "GET",
    "/v1/blobs/{id}",
    summary="the blob's bytes (ETag = blob id, Range supported, re-hashed while sent)",
    role="reader",
    params=[
        BLOB_ID,
        Param("Range", "header", {"type": "string"}, "one byte range, e.g. bytes=0-1023"),
    ],
    replies=[
        # No schema: the body is whatever bytes the blob holds, in its own media type.
        Reply(200, "the bytes, as the blob's media type", media="*/*", headers=_BLOB_HEADERS),
        Reply(206, "the requested range", media="*/*"),
        Reply(304, "not modified (If-None-Match matched the blob id)", media=""),
        Reply(416, "the range is outside the blob"),
    ],
)
async def get_blob(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent blob get`` does: the bytes are re-hashed on the way out; if they no
    longer match the id the connection is cut before the last chunk (never a complete body
    of wrong bytes), and ``E-BLOB-MISSING`` / ``E-HASH-MISMATCH`` are logged."""
    return await _send_blob(request, body=True)


@group.route(
    "HEAD",
    "/v1/blobs/{id}",
    summary="the blob's headers: size, media type, ETag",
    role="reader",
    params=[BLOB_ID],
    replies=[Reply(200, "the blob exists", media="", headers=_BLOB_HEADERS)],
)
async def head_blob(request: web.Request) -> web.StreamResponse:
    """Like GET without the body."""
    return await _send_blob(request, body=False)


async def _send_blob(request: web.Request, *, body: bool) -> web.StreamResponse:
    svc = services(request)
    store = svc.blobs
    blob_id = check_blob_id(inputs(request)["id"])
    info = store.info(blob_id)
    etag = f'"{blob_id}"'
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-cache"}
    if any(e.value == blob_id for e in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    window = _window(request, info.size) if body else None
    resp = web.StreamResponse(status=200 if window is None else 206, headers=headers)
    resp.content_type = info.media_type.split(";")[0].strip()
    if ";" in info.media_type:
        resp.headers["Content-Type"] = info.media_type
    if window is None:
        resp.content_length = info.size
    else:
        resp.content_length = window[1] - window[0]
        resp.headers["Content-Range"] = f"bytes {window[0]}-{window[1] - 1}/{info.size}"
    await resp.prepare(request)
    if not body:  # HEAD: aiohttp sends the headers only
        await resp.write_eof()
        return resp
    executor = svc.io if info.tier != "lmdb" else None
    try:
        await send_verified(resp, store.chunks(blob_id, info), executor, window)
    except CapError as exc:  # headers are out: the only honest signal left is a cut
        _log.error("blob.read_failed", blob_id=blob_id, code=exc.code, message=exc.message)
        if request.transport is not None:
            request.transport.abort()
    return resp


@group.route(
    "GET",
    "/v1/blobs",
    summary="blobs in id order, a page at a time",
    role="reader",
    params=[
        Param("unreferenced", "query", {"type": "boolean"}, "only blobs no entry references"),
        LIMIT,
        Param("cursor", "query", HEX32, "the `next` of the previous page"),
    ],
    replies=[
        Reply(
            200,
            "a page; `next` is null on the last one",
            json_object({"blobs": {"type": "array", "items": BLOB}, "next": nullable(HEX32)}),
        )
    ],
)
async def list_blobs(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent blob ls`` prints."""
    q = inputs(request)
    svc = services(request)
    with svc.ledger.store.read() as txn:
        rows, nxt = BlobsView(svc.ledger.store).list_blobs(
            txn,
            unreferenced=bool(q.get("unreferenced")),
            limit=q["limit"],
            cursor=q.get("cursor"),
        )
    return web.json_response({"blobs": [r.to_json() for r in rows], "next": nxt})


@group.route(
    "POST",
    "/v1/blobs/gc",
    summary="remove unreferenced blobs older than min_age seconds",
    role="admin",
    body=Body(
        "application/json",
        json_object(
            {
                "dry_run": {"type": "boolean"},
                "min_age": {"type": "integer", "minimum": 0, "maximum": 10**9},
            },
            [],
            extra=False,
        ),
        required=False,
    ),
    replies=[
        Reply(
            200,
            "what was (or, dry run, would be) removed",
            json_object(
                {
                    "dry_run": {"type": "boolean"},
                    "count": {"type": "integer"},
                    "bytes_freed": {"type": "integer"},
                    "removed": {"type": "array"},
                    "seq": nullable(SEQ),
                },
                ["dry_run", "count", "bytes_freed", "removed", "seq"],
            ),
        )
    ],
)
async def gc_blobs(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent blob gc`` does (a ``blob.gc`` event), run off the event loop."""
    body = inputs(request)["body"]
    svc = services(request)
    store = svc.blobs
    actor = principal(request).actor
    report = await svc.off_loop(
        lambda: collect_garbage(
            store,
            min_age=body.get("min_age", DEFAULT_MIN_AGE),
            dry_run=bool(body.get("dry_run", False)),
            actor=actor,
        )
    )
    return web.json_response(report.to_json())
