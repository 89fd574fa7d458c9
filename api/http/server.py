"""Running the application: bind, serve until SIGTERM/SIGINT, then drain and stop.

On a signal the listening socket closes first, in-flight requests finish (their appends
commit; up to ``shutdown_timeout_s``), event streams end, and only then does the caller
close the ledger, so every acknowledged write is on disk when the process exits 0. Later
signals are ignored while it drains.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable

from aiohttp import web

from ledger.errors import BadInput

__all__ = ["MAX_HEADER_FIELD", "MAX_REQUEST_LINE", "cannot_listen", "run_service", "url_of"]

# Past these the HTTP parser itself answers 400 in plain text (documented in the OpenAPI).
MAX_REQUEST_LINE = 64 << 10
MAX_HEADER_FIELD = 16 << 10


async def run_service(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30.0,
    ready: Callable[[list[str]], object] | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` on ``host:port`` (or on ``sock``, bound by the parent of several
    workers) until SIGTERM or SIGINT; ``ready`` gets the bound URLs."""
    runner = web.AppRunner(
        app,
        access_log=None,  # the access middleware writes structured lines instead
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        max_line_size=MAX_REQUEST_LINE,
        max_field_size=MAX_HEADER_FIELD,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site: web.BaseSite = (
            web.SockSite(runner, sock)
            if sock is not None
            else web.TCPSite(runner, host, port, backlog=1024)
        )
        try:
            await site.start()
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None
        if ready is not None:
            ready([url_of(a) for a in runner.addresses])
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
            # Draining already (bounded by shutdown_timeout): a second signal, such as a
            # terminal's Ctrl-C reaching a worker and its parent's forwarded SIGTERM, must
            # not kill the process halfway through closing the ledger. SIGKILL still does.
            signal.signal(sig, signal.SIG_IGN)
        await runner.cleanup()


def cannot_listen(host: str, port: int, exc: OSError) -> BadInput:
    """A port taken or an address not ours: the user's --host/--port to change (exit 2)."""
    return BadInput("E-BAD-INPUT", f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def url_of(address: object) -> str:
    """``http://host:port`` of a bound address (IPv6 in brackets)."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    return str(address)
