"""``tcap pack|verify|seek|extract|keygen``: sealed capsules of the event chain.

Only ``pack`` opens the ledger; ``verify``, ``seek`` and ``extract`` work on a capsule file
alone, with no data directory.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from api.cli.context import Context, warn
from api.cli.progress import Progress
from ledger.canonical import loads_json_strict
from ledger.datadir import resolve_keys
from ledger.errors import BadInput
from ledger.keys import ENV_HMAC_KEY, HmacKeyProvider, load_private_key, load_public_key
from projections.tcap import (
    CAPSULE_LIMIT,
    Capsule,
    FileBlockKeyProvider,
    PackOptions,
    VerifyReport,
    pack,
    verify_capsule,
    verify_series,
    write_block_key_file,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    tcap = sub.add_parser("tcap", help="sealed TCAP capsules of the event chain").add_subparsers(
        dest="tcap_cmd", metavar="CMD", required=True
    )
    p = tcap.add_parser("pack", help="pack events into a sealed capsule")
    p.add_argument("--out", required=True, help="capsule file (F.tcap; parts F.0001.tcap...)")
    p.add_argument("--signing-key", required=True, help="Ed25519 NAME.ed25519.sk.json")
    p.add_argument("--from", type=int, dest="start", help="first seq (inclusive)")
    p.add_argument("--to", type=int, dest="stop", help="last seq (inclusive)")
    p.add_argument(
        "--type",
        action="append",
        default=[],
        dest="types",
        help="only this event type (repeatable; a trailing * matches a prefix)",
    )
    p.add_argument("--format", choices=("jsonl", "cbor"), default="jsonl", help="wire format")
    p.add_argument("--compression", choices=("none", "zstd"), default="none")
    p.add_argument("--encrypt-key", help="block key file (tcap keygen); encrypts block payloads")
    p.add_argument("--split", action="store_true", help="write numbered parts under the limit")
    p.add_argument(
        "--max-bytes",
        type=int,
        default=CAPSULE_LIMIT,
        help=f"size limit per capsule (at most the default, {CAPSULE_LIMIT})",
    )
    p.add_argument("--refs-file", help="a JSON object recorded as the manifest's refs")
    p.set_defaults(func=cmd_pack)

    p = tcap.add_parser("verify", help="check header, seal, body, manifest, index and chain")
    p.add_argument("capsules", nargs="+", metavar="F.tcap", help="a capsule, or a split series")
    p.add_argument("--pubkey", help="pin the signer: NAME.ed25519.pk.json")
    p.add_argument("--decrypt-key", help="block key file, to check encrypted payloads too")
    p.set_defaults(func=cmd_verify)

    p = tcap.add_parser("seek", help="print one span's block through the index")
    p.add_argument("capsule", metavar="F.tcap")
    p.add_argument("span_id", metavar="SPAN_ID")
    p.add_argument("--decrypt-key", help="block key file, to show an encrypted payload")
    p.set_defaults(func=cmd_seek)

    p = tcap.add_parser("extract", help="stream the events as JSON Lines")
    p.add_argument("capsule", metavar="F.tcap")
    p.add_argument("--span-type", action="append", default=[], dest="span_types", help="repeatable")
    p.add_argument("--decrypt-key", help="block key file for an encrypted capsule")
    p.set_defaults(func=cmd_extract)

    p = tcap.add_parser("keygen", help="write a block encryption key file (mode 0600)")
    p.add_argument("--out", required=True, help="key file to create")
    p.add_argument("--tenant", help="ledger id the key is for (default: any)")
    p.set_defaults(func=cmd_keygen)


def _block_keys(path: str | None) -> FileBlockKeyProvider | None:
    return FileBlockKeyProvider(Path(path)) if path else None


def cmd_pack(ctx: Context, args: argparse.Namespace) -> int:
    log = ctx.ledger().log  # E-NOT-INITIALIZED before anything else
    signer = load_private_key(Path(args.signing_key))
    refs: dict[str, Any] = {}
    if args.refs_file:
        try:
            raw = Path(args.refs_file).read_bytes()
        except OSError as exc:
            raise BadInput("E-BAD-INPUT", f"cannot read {args.refs_file}: {exc.strerror}") from None
        doc = loads_json_strict(raw, what=f"refs file {args.refs_file}")
        if not isinstance(doc, dict):
            raise BadInput("E-BAD-INPUT", f"refs file {args.refs_file} is not a JSON object")
        refs = doc
    opts = PackOptions(
        start=args.start,
        stop=args.stop,
        types=tuple(args.types),
        wire=args.format,
        compression=args.compression,
        split=args.split,
        max_bytes=args.max_bytes,
        refs=refs,
    )
    opts.check()
    keys = _block_keys(args.encrypt_key)
    with Progress("pack", total=log.head().seq + 1) as bar:
        parts = pack(log, Path(args.out), signer, opts, keys, progress=bar.update)
    doc = {"capsules": [p.to_json() for p in parts]}

    def human() -> str:
        return "\n".join(
            f"sealed {p.path} ({p.size:,} bytes, {p.blocks} blocks, heights "
            f"{p.first_height}..{p.last_height}) capsule_b3 {p.capsule_b3.hex()}"
            for p in parts
        )

    ctx.emit(doc, human)
    return 0


def _summary(r: VerifyReport) -> str:
    payloads = "payloads checked" if r.payloads_checked else "payloads NOT checked (encrypted)"
    return (
        f"  {r.path}: {r.blocks} blocks, heights {r.first_height}..{r.last_height}, "
        f"{r.size:,} bytes, {r.wire}/{r.compression}{'/encrypted' if r.encrypted else ''}, "
        f"{payloads}\n"
        f"  capsule_b3 {r.capsule_b3}\n  merkle.root {r.merkle_root}\n"
        f"  sealed by {r.signer}{' (pinned)' if r.pinned else ''}"
        + (
            f"\n  sig (HMAC chain) checked on {r.sigs_checked} of {r.blocks} blocks"
            if r.sigs_checked is not None
            else ""
        )
    )


def _chain_keys(ctx: Context) -> HmacKeyProvider | None:
    """The ledger's chain key, only when given explicitly (``CAP_LEDGER_HMAC_KEY`` or
    ``--hmac-key-file``): verify then also checks every block's ``sig``."""
    if os.environ.get(ENV_HMAC_KEY) or ctx.key_file is not None:
        return resolve_keys(ctx.data, ctx.key_file)[0]
    return None


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    pubkey = load_public_key(Path(args.pubkey)) if args.pubkey else None
    keys = _block_keys(args.decrypt_key)
    macs = _chain_keys(ctx)
    reports = [verify_capsule(Path(p), pubkey, keys, macs=macs) for p in args.capsules]
    series = verify_series(reports) if len(reports) > 1 else None
    warnings = sorted({w for r in reports for w in r.warnings})
    if not ctx.as_json:
        for w in warnings:
            warn(w)
    if series is not None:
        doc = series.to_json()
        human = "OK\n" + f"series of {len(reports)} parts, {doc['blocks']} blocks\n"
        human += "\n".join(_summary(r) for r in series.parts)
    else:
        doc = reports[0].to_json()
        human = "OK\n" + _summary(reports[0])
    ctx.emit(doc, human)
    return 0


def cmd_seek(ctx: Context, args: argparse.Namespace) -> int:
    with Capsule(Path(args.capsule)) as cap:
        res = cap.seek(args.span_id, _block_keys(args.decrypt_key))
    doc = res.to_json()

    def human() -> str:
        lines = [f"span {res.block.span_id} at block offset {res.entry.block_off}"]
        lines += [f"  {k}: {v}" for k, v in res.block.dna().items()]
        if res.event is None:
            lines.append("  event: (encrypted; pass --decrypt-key)")
        else:
            lines.append("  event: " + json.dumps(res.event, ensure_ascii=False))
        return "\n".join(lines)

    ctx.emit(doc, human)
    return 0


def cmd_extract(ctx: Context, args: argparse.Namespace) -> int:
    with Capsule(Path(args.capsule)) as cap:
        events = cap.extract(args.span_types, _block_keys(args.decrypt_key))
        ctx.emit_lines(events, lambda d: json.dumps(d, ensure_ascii=False))
    return 0


def cmd_keygen(ctx: Context, args: argparse.Namespace) -> int:
    key = write_block_key_file(Path(args.out), args.tenant)
    ctx.emit(
        {"key_file": args.out, "key_id": key.key_id, "tenant": args.tenant},
        f"wrote {args.out} (keep secret, mode 0600), key id {key.key_id}",
    )
    return 0
