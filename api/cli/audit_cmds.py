"""``audit export|verify-jsonl``: the Vault-style line-by-line HMAC'd export of the log."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from api.cli.context import Context
from api.cli.inputs import open_input
from api.cli.progress import Progress
from ledger.audit_export import ExportKey, export_lines, read_lines, verify_lines
from ledger.errors import BadInput, CheckFailed, NotFound
from ledger.timeline import last_seq_at_or_before, parse_instant, resolve_bound
from projections.replay import ReplayReport, audit_replay, render_key

__all__ = ["register"]

_KEY_HELP = "the export key (hex); default $CAP_AUDIT_EXPORT_KEY, else DIR/keys/audit-export.key"


def register(sub: Any) -> None:
    audit = sub.add_parser("audit", help="audit export, verification and replay").add_subparsers(
        dest="audit_cmd", metavar="CMD", required=True
    )
    p = audit.add_parser("export", help="one HMAC'd JSON line per event (docs/AUDIT.md)")
    p.add_argument("--format", choices=["jsonl"], default="jsonl")
    p.add_argument("--from", dest="start", help="first seq, or an RFC 3339 time")
    p.add_argument("--to", dest="stop", help="last seq, or an RFC 3339 time")
    p.add_argument("--out", help="write here (default: stdout)")
    p.add_argument(
        "--export-key-file",
        help="the export key (hex); default $CAP_AUDIT_EXPORT_KEY, else DIR/keys/audit-export.key",
    )
    p.set_defaults(func=cmd_export)

    p = audit.add_parser("verify-jsonl", help="check an export file (or a single line of one)")
    p.add_argument("file", help="the export (- for stdin)")
    p.add_argument(
        "--export-key-file",
        help="the export key (hex); default $CAP_AUDIT_EXPORT_KEY, else DIR/keys/audit-export.key",
    )
    p.set_defaults(func=cmd_verify_jsonl)

    p = audit.add_parser(
        "replay", help="verify both chains, rebuild every projection aside, compare with live"
    )
    p.add_argument("--to", type=int, dest="stop", help="replay up to this seq")
    p.add_argument("--as-of", help="replay up to the last event at or before this RFC 3339 time")
    p.add_argument("--report", help="also write the JSON report to this file")
    p.add_argument("--scratch", help="directory for the scratch environment (default: $TMPDIR)")
    p.set_defaults(func=cmd_replay)


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        f = Path(path).open("wb")  # noqa: SIM115 (closed below, errors mapped first)
    except OSError as exc:
        raise BadInput("E-BAD-INPUT", f"cannot write {path}: {exc.strerror}") from None
    with f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    log = ctx.ledger().log
    key = ExportKey.resolve(args.export_key_file, ctx.data.export_key_file)
    start = resolve_bound(log, args.start, upper=False) or 0
    stop = resolve_bound(log, args.stop, upper=True)
    head = log.head().seq
    last = head if stop is None else min(stop, head)
    n = 0
    with Progress("export", total=max(last - start + 1, 0)) as bar, _output(args.out) as out:
        if start <= last:
            for n, line in enumerate(export_lines(log, key, start, last), 1):
                out.write(line)
                if not n & 0xFFF:
                    bar.update(n)
    if args.out is not None:  # stdout carries the lines themselves
        ctx.emit(
            {"file": args.out, "lines": n, "from": start, "to": last, "export_kid": key.kid},
            f"exported {n} events (seq {start}..{last}) to {args.out} under {key.kid}",
        )
    return 0


def cmd_verify_jsonl(ctx: Context, args: argparse.Namespace) -> int:
    key = ExportKey.resolve(args.export_key_file, ctx.data.export_key_file)
    with open_input(args.file, what="export") as f, Progress("verify-jsonl") as bar:
        report = verify_lines(read_lines(f), key, progress=bar.update)
    ctx.emit(
        report.to_json(),
        f"OK: {report.lines} lines (seq {report.first}..{report.last}) verified "
        f"under {report.export_kid}",
    )
    return 0


def cmd_replay(ctx: Context, args: argparse.Namespace) -> int:
    if args.stop is not None and args.as_of is not None:
        raise BadInput("E-BAD-INPUT", "--to and --as-of exclude each other")
    ledger = ctx.ledger()
    stop = args.stop
    if args.as_of is not None:
        found = last_seq_at_or_before(ledger.log, parse_instant(args.as_of))
        if found is None:
            raise NotFound("E-NOT-FOUND", f"no event at or before {args.as_of}")
        stop = found
    total = ledger.log.head().seq + 1 if stop is None else stop + 1
    scratch = Path(args.scratch) if args.scratch else None
    with Progress("replay", total=total) as bar:
        report = audit_replay(ledger, to=stop, progress=bar.update, scratch_dir=scratch)
    doc = {**report.to_json(), "as_of": args.as_of}
    if args.report:
        Path(args.report).write_text(json.dumps(doc, indent=1) + "\n")
    ctx.emit(doc, lambda: _human_replay(report))
    if not report.ok:
        rows = ", ".join(f"{d.table}[{render_key(d.key)}] {d.kind}" for d in report.first_rows())
        raise CheckFailed(
            "E-HASH-MISMATCH",
            f"{report.differences} projection row(s) differ from the replayed log: {rows}",
        )
    return 0


def _human_replay(report: ReplayReport) -> str:
    lines = [
        f"chains OK: {report.events} events (seq 0..{report.to}) of ledger {report.ledger_id}",
        f"replayed in {report.seconds:.2f} s"
        + (f" ({int(report.events / report.seconds):,} events/s)" if report.seconds else ""),
    ]
    for t in report.tables:
        state = "not compared (replay ended before the head)"
        if report.compared:
            state = "identical" if not t.differences else f"{t.differences} row(s) differ"
        lines.append(f"  {t.name:<20} {t.replayed_rows:>9} rows  {state}")
        lines += [f"    {d.kind:<8} {render_key(d.key)}" for d in t.named]
    return "\n".join(lines)
