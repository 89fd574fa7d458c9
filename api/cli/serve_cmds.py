"""``serve``: the ledger as an HTTP service (initializing the data directory on first start)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from api.cli.context import Context, warn
from api.cli.ledger_cmds import initialize
from ledger.audit_export import ENV_EXPORT_KEY
from ledger.errors import BadInput
from ledger.keys import generate_hmac_key_file, write_keypair
from ledger.logs import configure_logging
from ledger.store import DEFAULT_MAP_SIZE
from ledger.tokens import create_token
from projections.tokens import list_tokens

__all__ = ["register"]

_DEV_KEY = "capsule"
_MAX_WORKERS = 64
# api.http.workers.MULTIPROC_ENV, spelled out: api.http cannot be imported before it is set.
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (initializes the data directory on first start)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any free)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes answering requests on one socket (default 1; the core count for "
        "throughput)",
    )
    p.add_argument("--signing-key", help="Ed25519 .sk.json that seals exported capsules")
    p.add_argument(
        "--max-blob-mb", type=int, default=1024, help="largest blob accepted (default 1024)"
    )
    p.add_argument("--heartbeat", type=float, default=15.0, help="event-stream heartbeat seconds")
    p.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds to drain on SIGTERM"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=10_000,
        help="with --signing-key: a signed checkpoint every N events (0: never; default 10000)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=300.0,
        help="with --signing-key: a checkpoint every S seconds if anything is new (0: never)",
    )
    p.add_argument(
        "--no-webhooks", action="store_true", help="do not deliver webhooks from this service"
    )
    p.add_argument(
        "--export-key-file",
        help="audit export key (hex); default $CAP_AUDIT_EXPORT_KEY, else one made in DIR/keys",
    )
    p.set_defaults(func=cmd_serve)


def _say(ctx: Context, doc: dict[str, Any], human: str) -> None:
    print(json.dumps(doc) if ctx.as_json else human, flush=True)


def _dev_signing_key(ctx: Context) -> Path:
    """The capsule signing key inside the data directory (created on first use), for a
    service started without ``--signing-key``; production keys belong outside it."""
    sk = ctx.data.keys / f"{_DEV_KEY}.ed25519.sk.json"
    if not sk.exists():
        write_keypair(ctx.data.keys, _DEV_KEY)
        warn(f"generated a capsule signing key at {sk}; pass --signing-key in production")
    return sk


def _dev_export_key(ctx: Context, configured: Path | None) -> None:
    """Without a configured audit export key, generate one in the data directory (like the
    development chain key) so ``/v1/audit/export`` works out of the box."""
    path = ctx.data.export_key_file
    if configured is None and not os.environ.get(ENV_EXPORT_KEY) and not path.exists():
        generate_hmac_key_file(path)
        warn(f"generated an audit export key at {path}; production keys belong outside it")


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= _MAX_WORKERS:
        raise BadInput("E-BAD-INPUT", f"--workers: 1 to {_MAX_WORKERS}")
    metrics_dir = None
    if args.workers > 1 and not os.environ.get(_MULTIPROC_ENV):
        # Before api.http is imported: prometheus_client picks its mode when first imported.
        metrics_dir = tempfile.mkdtemp(prefix="cap-metrics-")
        os.environ[_MULTIPROC_ENV] = metrics_dir
    try:
        return _serve(ctx, args)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(ctx: Context, args: argparse.Namespace) -> int:
    # Imported here: aiohttp and friends cost every other command ~0.4 s of startup.
    from api.http import ServiceConfig, create_app
    from api.http.server import run_service, url_of
    from api.http.workers import bind_socket, run_workers
    from api.http.writer import WriterClient, serve_writer

    configure_logging("json", args.log_level or "info")
    if not ctx.data.initialized():
        genesis, _ = initialize(ctx, DEFAULT_MAP_SIZE)
        _say(
            ctx,
            {"initialized": str(ctx.data.root), "ledger_id": genesis.payload["ledger_id"]},
            f"initialized ledger {genesis.payload['ledger_id']} at {ctx.data.root}",
        )
    ledger = ctx.ledger()
    if not any(t.active for t in list_tokens(ledger.store)):
        issued = create_token(ledger.log, "admin", "admin", ctx.actor)
        _say(
            ctx,
            {"admin_token": issued.secret},
            f"admin token (shown this once; only its hash is kept):\n{issued.secret}",
        )
    config = ServiceConfig(
        max_blob_bytes=args.max_blob_mb << 20,
        heartbeat_s=args.heartbeat,
        signing_key=Path(args.signing_key) if args.signing_key else _dev_signing_key(ctx),
        shutdown_timeout_s=args.shutdown_timeout,
        checkpoint_every_events=args.checkpoint_every or None,
        checkpoint_every_seconds=args.checkpoint_interval or None,
        deliver_webhooks=not args.no_webhooks,
        export_key_file=Path(args.export_key_file) if args.export_key_file else None,
    )
    _dev_export_key(ctx, config.export_key_file)

    def ready(urls: list[str]) -> None:
        doc: dict[str, Any] = {"listening": urls, "workers": args.workers}
        _say(ctx, doc, "serving on " + " ".join(urls) + f" ({args.workers} worker(s))")

    if args.workers == 1:
        app = create_app(ledger, config)
        asyncio.run(
            run_service(
                app, args.host, args.port, shutdown_timeout=config.shutdown_timeout_s, ready=ready
            )
        )
        ctx.close()  # after the drain: the writer commits what is queued, then LMDB closes
        print("stopped: drained, committed, closed", file=sys.stderr)
        return 0

    ctx.close()  # an LMDB environment and its writer thread must not cross the fork
    holder = bind_socket(args.host, args.port, listen=False)  # holds the port (0: picks one)
    address = holder.getsockname()
    # One worker keeps the service's own background work (checkpoints, webhook delivery).
    quiet = replace(
        config,
        deliver_webhooks=False,
        checkpoint_every_events=None,
        checkpoint_every_seconds=None,
    )

    # One socket pair per worker to the writer process, where the workers' blob puts
    # share one group commit (api/http/writer.py). Each process keeps only its own ends,
    # so a process that exits is seen as EOF by the other side.
    pairs = [socket.socketpair() for _ in range(args.workers)]

    def writer() -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):  # it stops when the workers are gone
            signal.signal(sig, signal.SIG_IGN)
        structlog.contextvars.bind_contextvars(worker="writer")
        holder.close()
        for _, theirs in pairs:
            theirs.close()
        asyncio.run(serve_writer(ctx.ledger(), [mine for mine, _ in pairs]))
        ctx.close()
        return 0

    def worker(index: int, notify: Callable[[], object]) -> int:
        structlog.contextvars.bind_contextvars(worker=index)
        holder.close()
        for i, (writers, workers) in enumerate(pairs):
            writers.close()
            if i != index:
                workers.close()
        sock = bind_socket(address[0], address[1])
        app = create_app(
            ctx.ledger(), config if index == 0 else quiet, WriterClient(pairs[index][1])
        )
        asyncio.run(
            run_service(
                app,
                args.host,
                args.port,
                shutdown_timeout=config.shutdown_timeout_s,
                ready=lambda _urls: notify(),
                sock=sock,
            )
        )
        ctx.close()
        return 0

    def forked() -> None:
        for ends in pairs:
            for end in ends:
                end.close()

    try:
        code = run_workers(
            args.workers,
            worker,
            lambda: ready([url_of(address)]),
            writer=writer,
            forked=forked,
        )
    finally:
        holder.close()
    print(
        "stopped: drained, committed, closed"
        if code == 0
        else "stopped: a worker failed; see the log above",
        file=sys.stderr,
    )
    return code
