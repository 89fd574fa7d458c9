"""``/v1/capsules/prove`` and ``/v1/capsules/check-proof``: one event of a capsule with its
Merkle audit path, checked against the capsule's sealed header alone (docs/PROOFS.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aiohttp import web

from api.http.bodies import spool_body
from api.http.declare import Body, Named, Param, Reply, RouteGroup
from api.http.schemas import ED25519_PUBKEY, EVENT, HEX32, SEQ, json_object, pubkey_param
from api.http.state import inputs, services
from projections.tcap import CAPSULE_LIMIT
from projections.tcap.proof import InclusionProof, check_proof, prove

__all__ = ["group"]

group = RouteGroup("compliance")

_SPAN = {"type": "string", "minLength": 1, "maxLength": 256}
PROOF = Named(
    "InclusionProof",
    json_object(
        {
            "format": {"const": "cap-inclusion/1"},
            "header": {"type": "string"},
            "leaf_index": SEQ,
            "tree_size": SEQ,
            "path": {"type": "array", "items": HEX32},
            "block": {"type": "object"},
            "body": {"type": "string"},
        },
        extra=False,
    ),
)


@group.route(
    "POST",
    "/v1/capsules/prove",
    summary="the inclusion proof of one span of the uploaded capsule",
    role="reader",
    params=[Param("span_id", "query", _SPAN, "the event id to prove", required=True)],
    body=Body("application/octet-stream", {"type": "string"}, "a .tcap capsule"),
    replies=[
        Reply(200, "the proof", PROOF),
        Reply(404, "no such span in the capsule (E-NOT-FOUND)"),
        Reply(422, "the capsule is corrupt (E-CAPSULE-CORRUPT)"),
        Reply(503, "the capsule's blocks are encrypted (E-KEY): prove it with the CLI"),
    ],
)
async def prove_route(request: web.Request) -> web.StreamResponse:
    """What ``tcap prove F.tcap SPAN_ID`` prints."""
    svc = services(request)
    span = inputs(request)["span_id"]
    upload = await spool_body(request, svc, CAPSULE_LIMIT)
    with upload, tempfile.TemporaryDirectory(prefix="cap-prove-") as tmp:
        path = Path(tmp) / "upload.tcap"

        def run() -> InclusionProof:
            with path.open("wb") as out:
                while chunk := upload.read(1 << 20):
                    out.write(chunk)
            return prove(path, span)

        proof = await svc.off_loop(run)
    return web.json_response(proof.to_json())


@group.route(
    "POST",
    "/v1/capsules/check-proof",
    summary="check an inclusion proof against its sealed header alone",
    role="reader",
    params=[
        Param("span_id", "query", _SPAN, "require the proof to be for this span"),
        Param(
            "pubkey",
            "query",
            ED25519_PUBKEY,
            "pin the capsule's signer (Ed25519 public key, base64)",
        ),
    ],
    body=Body("application/json", PROOF),
    replies=[
        Reply(
            200,
            "the proof holds",
            json_object(
                {
                    "ok": {"const": True},
                    "span_id": {"type": "string"},
                    "leaf_index": SEQ,
                    "tree_size": SEQ,
                    "merkle_root": HEX32,
                    "capsule_b3": HEX32,
                    "signer": {"type": "string"},
                    "pinned": {"type": "boolean"},
                    "event": EVENT,
                    "warnings": {"type": "array", "items": {"type": "string"}},
                }
            ),
        ),
        Reply(
            422,
            "the proof does not hold (E-HASH-MISMATCH), the seal does not "
            "(E-SIGNATURE-INVALID), the header is corrupt (E-CAPSULE-CORRUPT) or it proves "
            "another span (E-VERIFY-FAILED)",
        ),
    ],
)
async def check_proof_route(request: web.Request) -> web.StreamResponse:
    """What ``tcap check-proof`` does: nothing of the capsule is needed but the header the
    proof carries."""
    q = inputs(request)
    pubkey = pubkey_param(q["pubkey"]) if "pubkey" in q else None
    proof = InclusionProof.from_json(q["body"])
    report = await services(request).off_loop(check_proof, proof, q.get("span_id"), pubkey)
    return web.json_response(report.to_json())
