"""``init``, ``keys generate`` and ``ledger append|log|head|verify``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from api.cli.context import Context, warn
from api.cli.progress import Progress
from ledger.checkpoint import load_checkpoint, verify_checkpoints
from ledger.datadir import resolve_keys
from ledger.errors import BadInput, Conflict
from ledger.events import Event
from ledger.keys import (
    ENV_HMAC_KEY,
    StaticKeyProvider,
    generate_hmac_key_file,
    load_public_key,
    write_keypair,
)
from ledger.ledger import Ledger
from ledger.parallel_verify import verify_log
from ledger.user_events import append_user_event, read_payload_file

__all__ = ["initialize", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create a new ledger in the data directory")
    p.add_argument("--map-size-mb", type=int, default=1024, help="initial LMDB map size")
    p.set_defaults(func=cmd_init)

    keys = sub.add_parser("keys", help="Ed25519 signing keys").add_subparsers(
        dest="keys_cmd", metavar="CMD", required=True
    )
    p = keys.add_parser("generate", help="write NAME.ed25519.sk.json and NAME.ed25519.pk.json")
    p.add_argument("--out", required=True, help="directory for the key files")
    p.add_argument("--name", default="signing", help="key name (default: signing)")
    p.set_defaults(func=cmd_keys_generate)

    led = sub.add_parser("ledger", help="the event log").add_subparsers(
        dest="ledger_cmd", metavar="CMD", required=True
    )
    p = led.add_parser("append", help="append a user event (non-reserved type)")
    p.add_argument("--type", required=True, dest="type_")
    p.add_argument("--payload-file", required=True, help="a JSON object")
    p.set_defaults(func=cmd_append)

    p = led.add_parser("log", help="print events (JSON Lines with --json)")
    p.add_argument("--after", type=int, default=-1, help="only events with seq > AFTER")
    p.add_argument("--limit", type=int, help="at most N events")
    p.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        help="only this type (repeatable; a trailing * matches a prefix)",
    )
    p.set_defaults(func=cmd_log)

    p = led.add_parser("head", help="the last event's seq and chain values")
    p.set_defaults(func=cmd_head)

    p = led.add_parser("verify", help="recompute both chains; names the first bad seq")
    p.add_argument("--from", type=int, default=0, dest="start")
    p.add_argument("--to", type=int, dest="stop")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        dest="checkpoints",
        metavar="FILE",
        help="a signed checkpoint the log must still extend (repeatable; needs --pubkey)",
    )
    p.add_argument("--pubkey", help="the checkpoint signer's .pk.json")
    p.set_defaults(func=cmd_verify)


def initialize(ctx: Context, map_size: int) -> tuple[Event, str]:
    """Create the ledger of ``ctx.data`` (generating a dev HMAC key unless one is given);
    returns the genesis event and where the key came from. Shared by ``init`` and ``serve``."""
    data = ctx.data
    if data.initialized():  # before a key is generated for nothing
        raise Conflict("E-CONFLICT", f"a ledger already exists at {data.root}")
    if os.environ.get(ENV_HMAC_KEY) or ctx.key_file is not None:
        provider, source = resolve_keys(data, ctx.key_file)
    else:
        if data.hmac_key_file.exists() and not data.initialized():
            provider, source = resolve_keys(data)
        else:
            key = generate_hmac_key_file(data.hmac_key_file)
            provider, source = StaticKeyProvider(key), "datadir"
            warn(
                f"generated an HMAC key at {data.hmac_key_file}; "
                "production keys belong outside the data directory"
            )
    return Ledger.init(data, provider, actor=ctx.actor, map_size=map_size), source


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.data
    genesis, source = initialize(ctx, args.map_size_mb << 20)
    ctx.emit(
        {
            "data": str(data.root),
            "ledger_id": genesis.payload["ledger_id"],
            "kid": genesis.kid,
            "key_source": source,
            "genesis": genesis.to_json(),
        },
        f"initialized ledger {genesis.payload['ledger_id']} at {data.root} (kid {genesis.kid})",
    )
    return 0


def cmd_keys_generate(ctx: Context, args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sk, pk = write_keypair(out, args.name)
    ctx.emit(
        {"secret_key_file": str(sk), "public_key_file": str(pk)},
        f"wrote {sk} (keep secret, mode 0600)\nwrote {pk}",
    )
    return 0


def cmd_append(ctx: Context, args: argparse.Namespace) -> int:
    payload = read_payload_file(Path(args.payload_file))
    ev = append_user_event(ctx.ledger().log, args.type_, payload, ctx.actor)
    ctx.emit(ev.to_json(), f"appended seq {ev.seq} id {ev.id} type {ev.type}")
    return 0


def _human_event(doc: dict[str, Any]) -> str:
    return f"{doc['seq']:>8}  {doc['ts']}  {doc['type']:<24} {doc['actor']:<16} {doc['id']}"


def cmd_log(ctx: Context, args: argparse.Namespace) -> int:
    events = ctx.ledger().log.events(args.after, args.limit, args.types)
    ctx.emit_lines((ev.to_json() for ev in events), _human_event)
    return 0


def cmd_head(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.ledger()
    head = ledger.log.head()
    doc = {"ledger_id": ledger.log.ledger_id, **head.to_json()}
    ctx.emit(doc, f"seq {head.seq}\nb3  {head.b3.hex()}\nmac {head.mac.hex()}")
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    if args.checkpoints or args.pubkey:
        return _verify_checkpoints(ctx, args)
    log = ctx.ledger().log
    with Progress("verify", total=log.head().seq + 1) as bar:
        report = verify_log(log, args.start, args.stop, progress=bar.update)
    ctx.emit(
        report.to_json(),
        f"OK: {report.count} events verified (seq {report.first}..{report.last}), "
        f"head b3 {report.head.b3.hex()}",
    )
    return 0


def _verify_checkpoints(ctx: Context, args: argparse.Namespace) -> int:
    if not args.checkpoints or not args.pubkey:
        raise BadInput("E-BAD-INPUT", "--checkpoint and --pubkey go together")
    if args.start or args.stop is not None:
        raise BadInput("E-BAD-INPUT", "a checkpoint check verifies the whole log: drop --from/--to")
    log = ctx.ledger().log
    pubkey = load_public_key(Path(args.pubkey))
    checkpoints = [load_checkpoint(Path(f)) for f in args.checkpoints]
    with Progress("verify", total=log.head().seq + 1) as bar:
        report = verify_checkpoints(log, checkpoints, pubkey, progress=bar.update)
    covered = [{"seq": cp.seq, "b3": cp.b3, "ts": cp.ts} for cp in checkpoints]
    ctx.emit(
        {**report.to_json(), "checkpoints": covered},
        f"OK: {report.count} events verified; the log extends "
        + ", ".join(f"checkpoint seq {cp.seq} ({cp.ts})" for cp in checkpoints),
    )
    return 0
