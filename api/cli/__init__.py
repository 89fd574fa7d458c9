"""``cap-agent``: one entry point; each command group registers itself from its own module."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from api.cli.context import Context
from ledger.errors import BadInput, CapError
from ledger.logs import configure_logging

__all__ = ["main", "tcap_main"]

# One module per command group; each exposes ``register(subparsers)``.
COMMAND_MODULES = (
    "api.cli.ledger_cmds",
    "api.cli.blob_cmds",
    "api.cli.registry_cmds",
    "api.cli.projections_cmds",
    "api.cli.compliance_cmds",
    "api.cli.tcap_cmds",
    "api.cli.audit_cmds",
    "api.cli.proof_cmds",
    "api.cli.webhooks_cmds",
    "api.cli.tokens_cmds",
    "api.cli.serve_cmds",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ``E-BAD-INPUT`` (exit 2) like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput("E-BAD-INPUT", f"{message} (see `{self.prog} --help`)")


def build_parser(prog: str = "cap-agent") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="CAP Ledger: tamper-evident proof registry.")
    parser.add_argument("--data", help="data directory (default: $CAP_DATA or ./var/ledger)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--hmac-key-file", help="chain key file (hex); default $CAP_LEDGER_HMAC_KEY or DIR/keys"
    )
    parser.add_argument(
        "--keyring", help="directory of older chain keys (*.key) for events before a rotation"
    )
    parser.add_argument("--actor", help="who is acting (recorded in events; default cli:$USER)")
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="default: warning (serve: info)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "cap-agent") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = build_parser(prog).parse_args(argv)
        configure_logging("console", args.log_level or "warning")
        ctx = Context.from_args(args)
        try:
            return int(args.func(ctx, args) or 0)
        finally:
            ctx.close()
    except CapError as exc:
        _report(exc, as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # A reader like `head` went away: stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _report(exc: CapError, as_json: bool) -> None:
    if as_json:
        print(json.dumps(exc.to_json()), file=sys.stderr)
    else:
        print(str(exc), file=sys.stderr)


def tcap_main(argv: Sequence[str] | None = None) -> int:
    """``tcap ...`` is ``cap-agent tcap ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    globals_ = [a for a in argv if a == "--json"]
    rest = [a for a in argv if a != "--json"]
    return main([*globals_, "tcap", *rest], prog="tcap")
