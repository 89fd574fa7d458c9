"""``webhooks add|list|remove|status|deliver|verify``: signed deliveries of matching events."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from api.cli.context import Context
from api.cli.inputs import open_input
from ledger.errors import BadInput, NotFound
from ledger.webhook_sig import DEFAULT_TOLERANCE, verify_header
from ledger.webhooks import (
    add_subscription,
    iter_pending,
    list_subscriptions,
    pending_count,
    read_secret,
    remove_subscription,
)

__all__ = ["register"]

_MAX_BODY = 16 << 20


def register(sub: Any) -> None:
    wh = sub.add_parser("webhooks", help="signed webhook deliveries").add_subparsers(
        dest="webhooks_cmd", metavar="CMD", required=True
    )
    p = wh.add_parser("add", help="subscribe a URL to event types")
    p.add_argument("--url", required=True)
    p.add_argument("--secret-file", required=True, help="the shared secret (never recorded)")
    p.add_argument("--types", required=True, help="comma-separated types; T* prefixes; * all")
    p.add_argument("--name", help="subscription id (default: generated)")
    p.set_defaults(func=cmd_add)

    p = wh.add_parser("list", help="active subscriptions with their queue depth")
    p.set_defaults(func=cmd_list)

    p = wh.add_parser("remove", help="unsubscribe (drops its queued deliveries)")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_remove)

    p = wh.add_parser("status", help="queued deliveries of a subscription, oldest first")
    p.add_argument("--name", required=True)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_status)

    p = wh.add_parser("deliver", help="run the delivery worker in the foreground")
    p.add_argument("--once", action="store_true", help="deliver what is due, then exit")
    p.add_argument("--base-delay", type=float, default=1.0, help="first retry delay, seconds")
    p.add_argument("--max-delay", type=float, default=3600.0, help="retry delay cap, seconds")
    p.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    p.add_argument("--poll", type=float, default=1.0, help="look for new work every N seconds")
    p.set_defaults(func=cmd_deliver)

    p = wh.add_parser("verify", help="receiver side: check a delivery's X-Cap-Signature")
    p.add_argument("--secret-file", required=True)
    p.add_argument("--header", required=True, help="the X-Cap-Signature value")
    p.add_argument("--body-file", required=True, help="the raw request body (- for stdin)")
    p.add_argument("--tolerance", type=int, default=DEFAULT_TOLERANCE, help="replay window, s")
    p.set_defaults(func=cmd_verify)


def _types(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    log = ctx.ledger().log
    ev = add_subscription(
        log,
        url=args.url,
        secret_file=Path(args.secret_file),
        types=_types(args.types),
        name=args.name,
        actor=ctx.actor,
    )
    p = ev.payload
    ctx.emit(
        {**p, "seq": ev.seq},
        f"webhook {p['id']} -> {p['url']} for {', '.join(p['types'])} (secret {p['secret_id']})",
    )
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.ledger().store
    rows = [
        {**s.to_json(), "pending": pending_count(store, s.id)} for s in list_subscriptions(store)
    ]
    ctx.emit_lines(
        rows,
        lambda r: f"{r['id']:<20} {r['url']:<40} {','.join(r['types']):<24} {r['pending']:>8}",
    )
    return 0


def cmd_remove(ctx: Context, args: argparse.Namespace) -> int:
    ev = remove_subscription(ctx.ledger().log, args.name, ctx.actor)
    ctx.emit({"id": args.name, "seq": ev.seq}, f"webhook {args.name} removed (seq {ev.seq})")
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    store = ctx.ledger().store
    if args.name not in {s.id for s in list_subscriptions(store)}:
        raise NotFound("E-NOT-FOUND", f"no webhook named {args.name!r}")
    rows = [s.to_json() for s in iter_pending(store, args.name, args.limit)]
    ctx.emit_lines(
        rows,
        lambda r: f"{r['seq']:>10}  attempts {r['attempts']:>3}  {r['last_error'] or ''}",
    )
    return 0


def cmd_deliver(ctx: Context, args: argparse.Namespace) -> int:
    # aiohttp's client is only needed here: keep it out of every other command's startup.
    from ledger.webhook_delivery import DeliveryPolicy, WebhookWorker

    ledger = ctx.ledger()
    policy = DeliveryPolicy(args.base_delay, args.max_delay, args.timeout, args.poll)

    async def main() -> dict[str, Any]:
        async with WebhookWorker(ledger, policy) as worker:
            if args.once:
                await worker.drain()
            else:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await worker.run(stop)
            return worker.stats.to_json()

    stats = asyncio.run(main())
    ctx.emit(stats, f"delivered {stats['delivered']}, failed attempts {stats['failed']}")
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    secret = read_secret(f"file:{Path(args.secret_file).resolve()}")
    with open_input(args.body_file, what="body file") as f:
        body = f.read(_MAX_BODY + 1)
    if len(body) > _MAX_BODY:
        raise BadInput("E-BAD-INPUT", "body file is too large")
    t = verify_header(secret, body, args.header, tolerance=args.tolerance)
    ctx.emit({"ok": True, "timestamp": t}, f"OK: signature valid (t={t})")
    return 0
