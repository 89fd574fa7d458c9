"""``/v1/capsules``: export a sealed TCAP capsule of the chain, and verify one.

A capsule's header carries the BLAKE3 of everything after it, so it can only be sent once
sealed: the export packs into a temporary file off the event loop, then streams it and
removes it. Verification streams the upload to a temporary file (never into memory) and
checks it as ``cap-agent tcap verify`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from aiohttp import web

from api.http.bodies import BodyReader, check_declared_size, send_verified
from api.http.declare import Body, Param, Reply, RouteGroup
from api.http.schemas import SEQ, json_object
from api.http.state import Services, inputs, services
from ledger.blobtiers import CHUNK
from ledger.errors import EnvironmentProblem
from ledger.keys import load_private_key
from projections.tcap import CAPSULE_LIMIT, PackOptions, pack, verify_capsule

__all__ = ["group"]

group = RouteGroup("capsules")
_TCAP = "application/vnd.cap.tcap"
_BYTES = {"type": "string", "format": "binary"}


def _scratch(svc: Services, suffix: str) -> Path:
    """A fresh path in the data directory's cache for one request's capsule file."""
    root = svc.ledger.data.cache / "http"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{secrets.token_hex(8)}{suffix}"


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


@group.route(
    "GET",
    "/v1/capsules",
    summary="a sealed .tcap capsule of the selected events (streamed)",
    role="auditor",
    params=[
        Param("from", "query", SEQ, "first seq (inclusive)"),
        Param("to", "query", SEQ, "last seq (inclusive; default: the head as the export starts)"),
        Param(
            "type",
            "query",
            {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 129}},
            "only these event types (repeatable; a trailing * matches a prefix)",
        ),
        Param("format", "query", {"enum": ["jsonl", "cbor"], "default": "jsonl"}, "wire"),
        Param("compression", "query", {"enum": ["none", "zstd"], "default": "none"}, "blocks"),
    ],
    replies=[
        Reply(200, "the capsule, sealed by the service's signing key", _BYTES, media=_TCAP),
        Reply(422, "the selection is larger than one capsule (E-CAPSULE-TOO-LARGE)"),
    ],
)
async def export_capsule(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent tcap pack`` writes (without ``--split``), signed with the key the
    service was started with."""
    q = inputs(request)
    svc = services(request)
    if svc.config.signing_key is None:
        raise EnvironmentProblem("E-KEY", "the service was started without a signing key")
    opts = PackOptions(
        start=q.get("from"),
        stop=q.get("to"),
        types=tuple(q.get("type", ())),
        wire=q["format"],
        compression=q["compression"],
    )
    opts.check()
    signer = load_private_key(svc.config.signing_key)
    out = _scratch(svc, ".tcap")
    try:
        (sealed,) = await svc.off_loop(pack, svc.ledger.log, out, signer, opts)
        first, last = sealed.first_height, sealed.last_height
        resp = web.StreamResponse(
            headers={
                "Content-Type": _TCAP,
                "Content-Disposition": f'attachment; filename="ledger-{first}-{last}.tcap"',
                "X-Capsule-B3": sealed.capsule_b3.hex(),
            }
        )
        resp.content_length = sealed.size
        await resp.prepare(request)
        await send_verified(resp, _file_chunks(out), svc.io)
        return resp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)


@group.route(
    "POST",
    "/v1/capsules/verify",
    summary="verify a capsule sent as the request body",
    role="reader",
    body=Body(
        "application/octet-stream", _BYTES, f"the .tcap file (at most {CAPSULE_LIMIT} bytes)"
    ),
    replies=[
        Reply(
            200,
            "header, seal, body, manifest, index and chain all check out",
            json_object(
                {
                    "ok": {"const": True},
                    "capsule_b3": {"type": "string"},
                    "signer": {"type": "string"},
                    "blocks": {"type": "integer"},
                },
                ["ok", "capsule_b3", "signer", "blocks"],
            ),
        ),
        Reply(422, "corrupt or badly signed (E-CAPSULE-CORRUPT, E-SIGNATURE-INVALID)"),
    ],
)
async def verify_capsule_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent tcap verify`` prints with ``--json``, for an uploaded capsule."""
    svc = services(request)
    check_declared_size(request, CAPSULE_LIMIT)
    reader = BodyReader(request, asyncio.get_running_loop(), CAPSULE_LIMIT)
    path = _scratch(svc, ".upload.tcap")

    def receive_and_verify() -> dict[str, object]:
        with path.open("xb") as f:
            shutil.copyfileobj(cast(BinaryIO, reader), f, CHUNK)
        doc = verify_capsule(path).to_json()
        doc.pop("path", None)  # a scratch file name means nothing to the caller
        return doc

    try:
        doc = await svc.off_loop(receive_and_verify)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return web.json_response(doc)
