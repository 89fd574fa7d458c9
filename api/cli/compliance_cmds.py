"""``ledger checkpoint|checkpoints|rotate-key``: signed checkpoints and chain key rotation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.cli.context import Context, warn
from api.cli.groups import subcommands
from ledger.checkpoint import append_checkpoint, write_checkpoint
from ledger.datadir import resolve_keys
from ledger.keys import load_hmac_key_file, load_private_key
from ledger.rotation import archive_key, install_datadir_key, rotate_key
from projections.checkpoints import list_checkpoints

__all__ = ["register"]


def register(sub: Any) -> None:
    led = subcommands(sub, "ledger")
    p = led.add_parser("checkpoint", help="sign the head (Ed25519) and record ledger.checkpoint")
    p.add_argument("--signing-key", required=True, help="the signer's .sk.json")
    p.add_argument("--out", help="write the checkpoint here (default: print it)")
    p.set_defaults(func=cmd_checkpoint)

    p = led.add_parser("checkpoints", help="list the checkpoints the ledger recorded")
    p.add_argument("--after", type=int, default=-1, help="only checkpoints of seq > AFTER")
    p.add_argument("--limit", type=int, help="at most N")
    p.set_defaults(func=cmd_checkpoints)

    p = led.add_parser("rotate-key", help="switch the HMAC chain key (key.rotate event)")
    p.add_argument("--new-key-file", required=True, help="the new key (hex, >= 32 bytes)")
    p.set_defaults(func=cmd_rotate_key)


def cmd_checkpoint(ctx: Context, args: argparse.Namespace) -> int:
    log = ctx.ledger().log
    keypair = load_private_key(Path(args.signing_key))
    cp, event = append_checkpoint(log, keypair, ctx.actor)
    if args.out is None:
        print(json.dumps(cp.to_json(), sort_keys=True))
        return 0
    write_checkpoint(Path(args.out), cp)
    ctx.emit(
        {"checkpoint": cp.to_json(), "file": args.out, "event_seq": event.seq},
        f"checkpoint of seq {cp.seq} (b3 {cp.b3}) written to {args.out}, "
        f"recorded as event {event.seq}",
    )
    return 0


def cmd_checkpoints(ctx: Context, args: argparse.Namespace) -> int:
    rows = list_checkpoints(ctx.ledger().store, args.after, args.limit)
    ctx.emit_lines(
        rows,
        lambda r: (
            f"{r['checkpoint']['seq']:>8}  {r['checkpoint']['ts']}  "
            f"{r['checkpoint']['b3']}  (event {r['event_seq']})"
        ),
    )
    return 0


def cmd_rotate_key(ctx: Context, args: argparse.Namespace) -> int:
    log = ctx.ledger().log
    new_key = load_hmac_key_file(Path(args.new_key_file))
    old_kid = log.current_kid()
    _, source = resolve_keys(ctx.data, ctx.key_file, ctx.keyring_dir)
    if source == "datadir":  # development setup: keep both keys in the data directory
        archive_key(ctx.data.keyring, log.keys.get(old_kid))
    event = rotate_key(log, new_key, ctx.actor)
    new_kid = event.payload["new_kid"]
    if source == "datadir":
        install_datadir_key(ctx.data, new_key)
        next_step = (
            f"the new key is now {ctx.data.hmac_key_file}; the old one is kept in "
            f"{ctx.data.keyring}"
        )
    else:
        next_step = (
            f"now run with the new key ({args.new_key_file} as --hmac-key-file or "
            "CAP_LEDGER_HMAC_KEY) and keep the old key in a keyring (--keyring DIR or "
            "CAP_LEDGER_HMAC_KEYRING) to verify the events before the rotation"
        )
        if not ctx.as_json:
            warn(next_step)
    ctx.emit(
        {"event": event.to_json(), "old_kid": old_kid, "new_kid": new_kid, "next": next_step},
        f"rotated at seq {event.seq}: {old_kid} -> {new_kid}",
    )
    return 0
