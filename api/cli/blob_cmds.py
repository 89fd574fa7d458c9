"""``blob put|get|ls|gc``: the low-level blob store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.cli.context import Context
from api.cli.inputs import open_input
from api.cli.progress import Progress
from api.services import blob_store
from ledger.blob_gc import DEFAULT_MIN_AGE, collect_garbage
from ledger.blobs import DEFAULT_MEDIA_TYPE, BlobInfo, check_blob_id
from ledger.errors import BadInput
from projections.blobs import BlobsView

__all__ = ["register"]


def register(sub: Any) -> None:
    blob = sub.add_parser("blob", help="content-addressed blob store").add_subparsers(
        dest="blob_cmd", metavar="CMD", required=True
    )
    p = blob.add_parser("put", help="store a file; prints its blob id (BLAKE3 hex)")
    p.add_argument("--file", required=True, help="file to store ('-' reads stdin)")
    p.add_argument("--type", default=DEFAULT_MEDIA_TYPE, dest="media_type", help="media type")
    p.set_defaults(func=cmd_put)

    p = blob.add_parser("get", help="write a blob to a file, verified")
    p.add_argument("--id", required=True, dest="blob_id")
    p.add_argument("--out", required=True, help="output file (written only if verified)")
    p.set_defaults(func=cmd_get)

    p = blob.add_parser("ls", help="list blobs")
    p.add_argument("--unreferenced", action="store_true", help="only blobs with refcount 0")
    p.add_argument("--limit", type=int, help="at most N blobs")
    p.add_argument("--cursor", help="continue after this blob id")
    p.set_defaults(func=cmd_ls)

    p = blob.add_parser("gc", help="remove unreferenced blobs older than --min-age")
    p.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    p.add_argument(
        "--min-age",
        type=int,
        default=DEFAULT_MIN_AGE,
        help=f"grace period in seconds since the last put (default {DEFAULT_MIN_AGE})",
    )
    p.set_defaults(func=cmd_gc)


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def cmd_put(ctx: Context, args: argparse.Namespace) -> int:
    store = blob_store(ctx.ledger())
    with open_input(args.file) as f:
        info, event = store.put(f, args.media_type, ctx.actor)
    ctx.emit({**info.to_json(), "seq": event.seq}, info.blob_id)
    return 0


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    store = blob_store(ctx.ledger())
    info = store.save(check_blob_id(args.blob_id), Path(args.out))
    ctx.emit(
        {**info.to_json(), "out": args.out},
        f"wrote {args.out} ({info.size} bytes, {info.media_type}, verified)",
    )
    return 0


def _row(info: BlobInfo) -> str:
    return (
        f"{info.blob_id}  {_human_size(info.size):>10}  {info.refcount:>4}  "
        f"{info.tier:<4}  {info.created_at}  {info.media_type}"
    )


def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.ledger()
    if args.limit is not None and args.limit < 1:
        raise BadInput("E-BAD-INPUT", "--limit must be at least 1")
    with ledger.store.read() as txn:
        rows, nxt = BlobsView(ledger.store).list_blobs(
            txn, unreferenced=args.unreferenced, limit=args.limit, cursor=args.cursor
        )

    def human() -> str:
        head = f"{'BLOB_ID':<64}  {'SIZE':>10}  {'REFS':>4}  TIER  {'CREATED_AT':<27}  MEDIA_TYPE"
        lines = [head, *(_row(r) for r in rows)]
        if nxt:
            lines.append(f"(more: --cursor {nxt})")
        return "\n".join(lines)

    ctx.emit({"blobs": [r.to_json() for r in rows], "next_cursor": nxt}, human)
    return 0


def cmd_gc(ctx: Context, args: argparse.Namespace) -> int:
    store = blob_store(ctx.ledger())
    with Progress("gc") as bar:
        report = collect_garbage(
            store,
            min_age=args.min_age,
            dry_run=args.dry_run,
            actor=ctx.actor,
            progress=bar.update,
        )

    def human() -> str:
        verb = "would remove" if report.dry_run else "removed"
        lines = [
            f"{r['blob_id']}  {_human_size(r['size']):>10}  {r['tier']}" for r in report.removed
        ]
        lines.append(
            f"{verb} {len(report.removed)} blobs, {_human_size(report.bytes_freed)}"
            + ("" if report.seq is None else f" (event seq {report.seq})")
        )
        o = report.orphans
        if o.get("files") or o.get("temps"):
            lines.append(
                f"{verb} {o['files']} files without a record and {o['temps']} stale temporary files"
            )
        return "\n".join(lines)

    ctx.emit(report.to_json(), human)
    return 0
