"""``tokens create|list|revoke``: bearer tokens for the HTTP service."""

from __future__ import annotations

import argparse
from typing import Any

from api.cli.context import Context
from ledger.tokens import ROLES, create_token, revoke_token
from projections.tokens import list_tokens

__all__ = ["register"]


def register(sub: Any) -> None:
    tok = sub.add_parser("tokens", help="bearer tokens for `cap-agent serve`").add_subparsers(
        dest="tokens_cmd", metavar="CMD", required=True
    )
    p = tok.add_parser("create", help="issue a token (printed once; only its hash is kept)")
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=ROLES)
    p.set_defaults(func=cmd_create)

    p = tok.add_parser("list", help="issued tokens (names, roles; never the secrets)")
    p.add_argument("--all", action="store_true", help="include revoked tokens")
    p.set_defaults(func=cmd_list)

    p = tok.add_parser("revoke", help="revoke the active token with this name")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_revoke)


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    issued = create_token(ctx.ledger().log, args.name, args.role, ctx.actor)
    doc = issued.to_json()
    ctx.emit(
        doc,
        f"{doc['token']}\n"
        f"(token {doc['name']!r}, role {doc['role']}: shown this once, only its hash is kept)",
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    records = [r for r in list_tokens(ctx.ledger().store) if args.all or r.active]
    docs = [r.to_json() for r in records]

    def human() -> str:
        if not docs:
            return "no tokens"
        return "\n".join(
            f"{d['name']:<24} {d['role']:<8} {d['token_id']}  {d['created_at']}"
            + ("  revoked" if d["revoked"] else "")
            for d in docs
        )

    ctx.emit({"tokens": docs}, human)
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    ev = revoke_token(ctx.ledger().log, args.name, ctx.actor)
    ctx.emit(
        {"name": args.name, "token_id": ev.payload["token_id"], "seq": ev.seq},
        f"revoked token {args.name!r} (seq {ev.seq})",
    )
    return 0
