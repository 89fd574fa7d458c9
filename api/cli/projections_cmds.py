"""``projections rebuild|status|export``: the read side's tables and their checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from api.cli.context import Context, warn
from api.cli.progress import Progress
from projections.rebuild import rebuild, status
from projections.sqlite_export import export_sqlite

__all__ = ["register"]


def register(sub: Any) -> None:
    proj = sub.add_parser("projections", help="materialized tables").add_subparsers(
        dest="projections_cmd", metavar="CMD", required=True
    )
    p = proj.add_parser("rebuild", help="drop the tables and replay the log from seq 0")
    p.add_argument("--name", action="append", dest="names", help="only this projection")
    p.set_defaults(func=cmd_rebuild)

    p = proj.add_parser("export", help="write the seed's tables to another format")
    p.add_argument("--to", dest="target_kind", required=True, choices=["sqlite"])
    p.add_argument("--output", required=True, help="the SQLite file (replaced atomically)")
    p.add_argument("--with-data", action="store_true", help="fill blobs.data (verified bytes)")
    p.set_defaults(func=cmd_export)

    p = proj.add_parser("status", help="each projection's checkpoint and lag")
    p.set_defaults(func=cmd_status)


def cmd_rebuild(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.ledger()
    with Progress("rebuild", total=ledger.log.head().seq + 1) as bar:
        report = rebuild(ledger, args.names, progress=bar.update)
    doc = report.to_json()
    ctx.emit(
        doc,
        f"rebuilt {', '.join(report.projections)} from {report.events} events "
        f"in {report.seconds:.3f} s ({doc['events_per_second'] or '-'} events/s)",
    )
    return 0


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    rows = status(ctx.ledger())

    def human() -> str:
        lines = [f"{'PROJECTION':<16} {'CHECKPOINT':>10} {'HEAD':>10} {'LAG':>6}"]
        lines += [f"{r.name:<16} {r.checkpoint:>10} {r.head:>10} {r.lag:>6}" for r in rows]
        return "\n".join(lines)

    ctx.emit({"projections": [r.to_json() for r in rows]}, human)
    return 0


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    with Progress("export") as bar:
        report = export_sqlite(
            ctx.ledger(), Path(args.output), with_data=args.with_data, progress=bar.update
        )
    if report.data_skipped:
        warn(f"{len(report.data_skipped)} blobs exceed SQLite's value limit: their data is NULL")
    ctx.emit(
        report.to_json(),
        f"wrote {report.output}: {report.entries} entries, {report.blobs} blobs"
        + (f", {report.data_bytes} bytes of data" if args.with_data else "")
        + f" (as of seq {report.head})",
    )
    return 0
