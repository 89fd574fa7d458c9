"""``registry add|exec|show|list|verify|revoke|migrate``: signed registry entries v0.9."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.context import Context
from api.cli.inputs import open_input
from api.cli.progress import Progress
from api.services import registry
from ledger.errors import BadInput, NotFound
from ledger.keys import load_private_key
from ledger.registry import Package
from ledger.registry_entry import SELFVERIFY_STATUSES, V09_FIELDS
from ledger.registry_import import import_sqlite
from ledger.sandbox.limits import LIMIT_NAMES, Limits
from ledger.sandbox.result import VerifierResult
from ledger.sqlite_upgrade import upgrade_sqlite
from projections.registry import RegistryView

if TYPE_CHECKING:
    from ledger.selfverify import SelfVerifier

__all__ = ["register"]


def register(sub: Any) -> None:
    reg = sub.add_parser("registry", help="signed registry entries (v0.9)").add_subparsers(
        dest="registry_cmd", metavar="CMD", required=True
    )
    p = reg.add_parser("add", help="store a proof package and append a signed entry")
    p.add_argument("--manifest", required=True, help="manifest file")
    p.add_argument("--proof", required=True, help="proof file")
    p.add_argument("--with-verifier", required=True, dest="wasm", help="verifier.wasm")
    p.add_argument("--with-abi", required=True, dest="abi", help="verifier.abi.json")
    p.add_argument("--signing-key", required=True, help="NAME.ed25519.sk.json")
    p.add_argument(
        "--selfverify", action="store_true", help="run the verifier first and sign its verdict"
    )
    _limit_flags(p)
    p.set_defaults(func=cmd_add)

    p = reg.add_parser("exec", help="re-run an entry's verifier on its stored blobs")
    p.add_argument("--id", required=True, dest="entry_id")
    _limit_flags(p)
    p.set_defaults(func=cmd_exec)

    p = reg.add_parser("show", help="one entry")
    p.add_argument("--id", required=True, dest="entry_id")
    p.add_argument("--as-of", type=int, help="as it was after event SEQ")
    p.set_defaults(func=cmd_show)

    p = reg.add_parser("list", help="entries in id order")
    p.add_argument("--status", choices=SELFVERIFY_STATUSES, help="selfverify_status")
    p.add_argument("--verifier-name", help="only entries of this verifier")
    p.add_argument("--as-of", type=int, help="as it was after event SEQ")
    p.add_argument("--limit", type=int, help="at most N entries")
    p.add_argument("--cursor", help="continue after this entry id")
    p.set_defaults(func=cmd_list)

    p = reg.add_parser("verify", help="check the signature and every referenced blob")
    p.add_argument("--id", required=True, dest="entry_id")
    p.set_defaults(func=cmd_verify)

    p = reg.add_parser("migrate", help="import a legacy SQLite registry, or upgrade its file")
    p.add_argument("--from", dest="source_kind", required=True, choices=["sqlite"])
    p.add_argument("--input", required=True, help="the legacy SQLite file")
    p.add_argument("--to", dest="target_kind", choices=["sqlite"], help="upgrade a file instead")
    p.add_argument("--output", help="with --to sqlite: the upgraded file (may equal --input)")
    p.add_argument("--add-columns", help="with --to sqlite: comma-separated v0.9 columns")
    p.set_defaults(func=cmd_migrate)

    p = reg.add_parser("revoke", help="revoke an entry (it releases its blobs)")
    p.add_argument("--id", required=True, dest="entry_id")
    p.add_argument("--reason", help="why (recorded in the event)")
    p.set_defaults(func=cmd_revoke)


def _limit_flags(p: argparse.ArgumentParser) -> None:
    """The sandbox's host limits (docs/SANDBOX.md); an ABI may only lower them."""
    d = Limits()
    p.add_argument("--fuel", type=int, help=f"fuel units (default {d.fuel:,})")
    p.add_argument("--memory-mb", type=int, help=f"linear memory, MiB (default {d.memory_mb})")
    p.add_argument("--stack-kb", type=int, help=f"wasm stack, KiB (default {d.stack_kb})")
    p.add_argument("--call-ms", type=int, help=f"wall clock per call, ms (default {d.call_ms})")


def _selfverifier(ctx: Context, args: argparse.Namespace) -> SelfVerifier:
    # Imported here: loading wasmtime costs every other command its startup time.
    from ledger.selfverify import SelfVerifier

    limits = Limits.from_options(**{name: getattr(args, name) for name in LIMIT_NAMES})
    return SelfVerifier(limits, cache_dir=ctx.data.cache / "wasm")


def _human_result(result: VerifierResult) -> str:
    fuel = "-" if result.fuel_used is None else f"{result.fuel_used:,}"
    head = result.status if result.ok else f"{result.status} [{result.code}]"
    lines = [f"selfverify {head}: {result.message} (fuel {fuel}, {result.duration_us} us)"]
    lines += [f"  {line}" for line in result.log]
    if result.log_dropped:
        lines.append(f"  ({result.log_dropped} more log lines dropped)")
    return "\n".join(lines)


def _human_entry(doc: dict[str, Any]) -> str:
    names = [*V09_FIELDS, *(k for k in doc if k not in V09_FIELDS)]
    width = max(len(n) for n in names)
    return "\n".join(f"{n:<{width}}  {'-' if doc.get(n) is None else doc.get(n)}" for n in names)


def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    key = load_private_key(Path(args.signing_key))
    verifier = _selfverifier(ctx, args)
    if not args.selfverify and any(getattr(args, n) is not None for n in LIMIT_NAMES):
        raise BadInput("E-BAD-INPUT", "limit flags apply to --selfverify only")
    reg = registry(ctx.ledger())
    with contextlib.ExitStack() as stack:
        files = {
            part: stack.enter_context(open_input(getattr(args, part), what=f"{part} file"))
            for part in ("manifest", "proof", "wasm", "abi")
        }
        entry, event = reg.add(
            Package(**files),
            key,
            actor=ctx.actor,
            selfverify=verifier if args.selfverify else None,
        )
    result = verifier.last
    if result is None:
        ctx.emit({**entry, "seq": event.seq}, entry["id"])
        return 0
    ctx.emit(
        {**entry, "seq": event.seq, "selfverify": result.to_payload()},
        lambda: f"{entry['id']}\n{_human_result(result)}",
    )
    result.raise_for_status()  # the entry is recorded either way, with its verdict
    return 0


def cmd_exec(ctx: Context, args: argparse.Namespace) -> int:
    verifier = _selfverifier(ctx, args)
    result, event = verifier.exec_entry(registry(ctx.ledger()), args.entry_id, actor=ctx.actor)
    ctx.emit(
        {**result.to_payload(args.entry_id), "seq": event.seq},
        lambda: f"{_human_result(result)}\nrecorded as event seq {event.seq}",
    )
    result.raise_for_status()
    return 0


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.ledger()
    with ledger.store.read() as txn:
        doc = RegistryView(ledger.store).get_entry(txn, args.entry_id, args.as_of)
    if doc is None:
        when = "" if args.as_of is None else f" as of seq {args.as_of}"
        raise NotFound("E-NOT-FOUND", f"no registry entry {args.entry_id!r}{when}")
    ctx.emit(doc, lambda: _human_entry(doc))
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    ledger = ctx.ledger()
    if args.limit is not None and args.limit < 1:
        raise BadInput("E-BAD-INPUT", "--limit must be at least 1")
    with ledger.store.read() as txn:
        rows, nxt = RegistryView(ledger.store).list_entries(
            txn,
            status=args.status,
            verifier_name=args.verifier_name,
            as_of=args.as_of,
            limit=args.limit,
            cursor=args.cursor,
        )

    def human() -> str:
        lines = [f"{'ID':<64}  {'STATUS':<7}  {'VERIFIER':<24}  {'CREATED_AT':<27}  REVOKED"]
        for r in rows:
            verifier = f"{r.get('verifier_name') or '-'} {r.get('verifier_version') or ''}"
            lines.append(
                f"{r['id']:<64}  {r.get('selfverify_status') or '-':<7}  {verifier.strip():<24}  "
                f"{r.get('created_at') or '-':<27}  {'yes' if r.get('revoked') else 'no'}"
            )
        if nxt:
            lines.append(f"(more: --cursor {nxt})")
        return "\n".join(lines)

    ctx.emit({"entries": rows, "next_cursor": nxt}, human)
    return 0


def cmd_verify(ctx: Context, args: argparse.Namespace) -> int:
    report = registry(ctx.ledger()).verify(args.entry_id)
    ctx.emit(
        report,
        lambda: (
            "OK: signature valid, "
            + ", ".join(f"{b['part']} {b['blob_id'][:16]}… verified" for b in report["blobs"])
        ),
    )
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    event = registry(ctx.ledger()).revoke(args.entry_id, actor=ctx.actor, reason=args.reason)
    ctx.emit(
        {"id": args.entry_id, "revoked": True, "seq": event.seq},
        f"revoked {args.entry_id} (event seq {event.seq})",
    )
    return 0


def cmd_migrate(ctx: Context, args: argparse.Namespace) -> int:
    if args.target_kind is None:
        if args.output or args.add_columns:
            raise BadInput("E-BAD-INPUT", "--output and --add-columns need --to sqlite")
        reg = registry(ctx.ledger())
        with Progress("import") as bar:
            report = import_sqlite(reg, Path(args.input), actor=ctx.actor, progress=bar.update)
        doc = report.to_json()
        ctx.emit(
            doc,
            f"read {report.read} legacy entries: imported {report.imported}, "
            f"skipped {report.skipped_existing} already present and "
            f"{report.skipped_invalid} invalid",
        )
        return 0
    if not args.output or not args.add_columns:
        raise BadInput("E-BAD-INPUT", "--to sqlite needs --output and --add-columns")
    result = upgrade_sqlite(Path(args.input), Path(args.output), args.add_columns.split(","))
    ctx.emit(
        result,
        f"wrote {result['output']}: added {', '.join(result['added']) or 'no columns'}"
        + (
            f" (already present: {', '.join(result['already_present'])})"
            if result["already_present"]
            else ""
        ),
    )
    return 0
