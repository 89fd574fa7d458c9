"""``tcap prove|check-proof``: one event of a capsule with its Merkle audit path."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.cli.context import Context, warn
from api.cli.groups import subcommands
from ledger.keys import load_public_key
from projections.tcap import FileBlockKeyProvider
from projections.tcap.proof import check_proof, load_proof, prove

__all__ = ["register"]


def register(sub: Any) -> None:
    tcap = subcommands(sub, "tcap")
    p = tcap.add_parser("prove", help="one span's block and its Merkle audit path")
    p.add_argument("capsule", metavar="F.tcap")
    p.add_argument("span_id", metavar="SPAN_ID")
    p.add_argument("--decrypt-key", help="block key file for an encrypted capsule")
    p.add_argument("--out", help="write the proof here (default: print it)")
    p.set_defaults(func=cmd_prove)

    p = tcap.add_parser("check-proof", help="check a proof against its sealed header alone")
    p.add_argument("proof", metavar="PROOF.json")
    p.add_argument("--span-id", help="require the proof to be for this span")
    p.add_argument("--pubkey", help="pin the capsule's signer: NAME.ed25519.pk.json")
    p.set_defaults(func=cmd_check_proof)


def cmd_prove(ctx: Context, args: argparse.Namespace) -> int:
    keys = FileBlockKeyProvider(Path(args.decrypt_key)) if args.decrypt_key else None
    proof = prove(Path(args.capsule), args.span_id, keys)
    text = json.dumps(proof.to_json(), sort_keys=True)
    if args.out is None:
        print(text)
        return 0
    Path(args.out).write_text(text + "\n")
    ctx.emit(
        {"file": args.out, "span_id": args.span_id, "leaf_index": proof.leaf_index},
        f"proof of {args.span_id} (leaf {proof.leaf_index} of {proof.tree_size}, "
        f"{len(proof.path)} hashes) written to {args.out}",
    )
    return 0


def cmd_check_proof(ctx: Context, args: argparse.Namespace) -> int:
    pubkey = load_public_key(Path(args.pubkey)) if args.pubkey else None
    report = check_proof(load_proof(Path(args.proof)), args.span_id, pubkey)
    if not ctx.as_json:
        for w in report.warnings:
            warn(w)
    ctx.emit(
        report.to_json(),
        f"OK: {report.span_id} (seq {report.event['seq']}, {report.event['type']}) is leaf "
        f"{report.leaf_index} of {report.tree_size} under the sealed root {report.merkle_root}",
    )
    return 0
