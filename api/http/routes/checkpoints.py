"""``/v1/ledger/checkpoints`` and ``/v1/ledger/rotate-key``: signed checkpoints, key rotation."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.routes.ledger import VERIFY_REPORT
from api.http.schemas import (
    ED25519_PUBKEY,
    EVENT,
    HEX32,
    LIMIT,
    SEQ,
    SEQ_MAX,
    json_object,
    nullable,
    pubkey_param,
)
from api.http.state import inputs, principal, services
from ledger.checkpoint import CHECKPOINT_FORMAT, Checkpoint, append_checkpoint, verify_checkpoints
from ledger.errors import BadInput, EnvironmentProblem
from ledger.keys import Keyring, load_hmac_key_file, load_private_key
from ledger.rotation import rotate_key
from projections.checkpoints import list_checkpoints

__all__ = ["group"]

group = RouteGroup("compliance")

CHECKPOINT = Named(
    "Checkpoint",
    json_object(
        {
            "b3": HEX32,
            "format": {"const": CHECKPOINT_FORMAT},
            "ledger_id": {"type": "string"},
            "public_key": {"type": "string"},
            "seq": SEQ,
            "signature": {"type": "string"},
            "ts": {"type": "string"},
        },
        extra=False,
    ),
)
RECORDED = json_object({"checkpoint": CHECKPOINT, "event_seq": SEQ})


@group.route(
    "GET",
    "/v1/ledger/checkpoints",
    summary="the signed checkpoints the ledger recorded, oldest first",
    role="auditor",
    params=[
        Param(
            "after",
            "query",
            {"type": "integer", "minimum": -1, "maximum": SEQ_MAX},
            "only checkpoints of seq > AFTER",
        ),
        LIMIT,
    ],
    replies=[
        Reply(
            200,
            "a page; pass `next` as `after` for the following one",
            json_object(
                {"checkpoints": {"type": "array", "items": RECORDED}, "next": nullable(SEQ)}
            ),
        )
    ],
)
async def list_checkpoints_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger checkpoints`` prints. Auditors keep their own copies: these
    are what the operator's ledger says it signed."""
    q = inputs(request)
    svc = services(request)
    limit = q["limit"]
    rows = await svc.off_loop(
        lambda: list(list_checkpoints(svc.ledger.store, q.get("after", -1), limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return web.json_response(
        {"checkpoints": rows, "next": rows[-1]["checkpoint"]["seq"] if more else None}
    )


@group.route(
    "POST",
    "/v1/ledger/checkpoints",
    summary="sign the head now with the service's key and record it",
    role="admin",
    replies=[
        Reply(201, "the signed checkpoint and the event recording it", RECORDED),
        Reply(503, "the service has no signing key (E-KEY)"),
    ],
)
async def create_checkpoint_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger checkpoint --signing-key K`` does, with ``serve --signing-key``."""
    svc = services(request)
    key_path = svc.config.signing_key
    if key_path is None:
        raise EnvironmentProblem("E-KEY", "the service has no signing key (serve --signing-key)")
    keypair = await svc.off_loop(load_private_key, key_path)
    cp, event = await svc.off_loop(
        append_checkpoint, svc.ledger.log, keypair, principal(request).actor
    )
    return web.json_response({"checkpoint": cp.to_json(), "event_seq": event.seq}, status=201)


@group.route(
    "POST",
    "/v1/ledger/checkpoints/verify",
    summary="prove the log still extends signed checkpoints (and both chains recompute)",
    role="auditor",
    body=Body(
        "application/json",
        json_object(
            {
                "checkpoints": {"type": "array", "items": CHECKPOINT, "minItems": 1},
                "pubkey": {
                    **ED25519_PUBKEY,
                    "description": "the signer's Ed25519 public key, base64",
                },
            },
            extra=False,
        ),
    ),
    replies=[
        Reply(200, "every checkpoint holds", VERIFY_REPORT),
        Reply(
            422,
            "a signature does not verify (E-SIGNATURE-INVALID) or the history was rewritten "
            "or truncated (E-CHAIN-BROKEN, details.seq)",
        ),
    ],
)
async def verify_checkpoints_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger verify --checkpoint F --pubkey PK`` does."""
    body = inputs(request)["body"]
    pubkey = pubkey_param(body["pubkey"])
    cps = [Checkpoint.from_json(doc) for doc in body["checkpoints"]]
    svc = services(request)
    report = await svc.off_loop(verify_checkpoints, svc.ledger.log, cps, pubkey)
    return web.json_response(report.to_json())


@group.route(
    "POST",
    "/v1/ledger/rotate-key",
    summary="switch the HMAC chain key (key.rotate, MAC'd by the old key)",
    role="admin",
    body=Body(
        "application/json",
        json_object(
            {"new_key_file": {"type": "string", "minLength": 1, "maxLength": 4096}}, extra=False
        ),
        "a key file (hex, >= 32 bytes) on the service's host; the key never travels",
    ),
    replies=[
        Reply(
            200,
            "rotated; the running service writes with the new key",
            json_object(
                {
                    "event": EVENT,
                    "old_kid": {"type": "string"},
                    "new_kid": {"type": "string"},
                    "next": {"type": "string"},
                }
            ),
        ),
        Reply(409, "the new key is the current one (E-CONFLICT)"),
    ],
)
async def rotate_key_route(request: web.Request) -> web.StreamResponse:
    """What ``cap-agent ledger rotate-key`` does. The service keeps both keys in memory and
    goes on appending under the new kid; configure the new key before the next start."""
    body = inputs(request)["body"]
    svc = services(request)
    log = svc.ledger.log
    try:
        new_key = await svc.off_loop(load_hmac_key_file, Path(body["new_key_file"]))
    except EnvironmentProblem as exc:  # the caller named a bad file: their input
        raise BadInput("E-KEY", exc.message) from None
    if not isinstance(log.keys, Keyring):  # hold old and new: appends go on after the switch
        log.keys = Keyring([log.keys.get(log.current_kid())])
    old_kid = log.current_kid()
    event = await svc.off_loop(rotate_key, log, new_key, principal(request).actor)
    return web.json_response(
        {
            "event": event.to_json(),
            "old_kid": old_kid,
            "new_kid": event.payload["new_kid"],
            "next": "configure the new key (CAP_LEDGER_HMAC_KEY or --hmac-key-file) before the "
            "next start, and keep the old one in a keyring to verify older events",
        }
    )
