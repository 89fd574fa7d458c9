"""Serving from several processes: one listening socket, N forked workers (pre-fork).

One Python process answers one request at a time (the GIL), so a second process is what
doubles the HTTP work a 2-core host can do. Workers share the data directory as any two
processes may: LMDB's write lock serializes their commits (each keeps its own group
commit), and each reads its own snapshots. The parent binds the socket and forks the
workers with no ledger open (an LMDB environment and threads do not survive a fork); it
forwards SIGTERM/SIGINT to them and returns 0 once every worker has drained and exited 0.
A worker that dies on its own stops the others: the parent returns 1, and whatever
supervises the service (systemd, a container runtime) restarts it whole.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from api.http.server import cannot_listen
from ledger.logs import get_logger

__all__ = ["MULTIPROC_ENV", "bind_socket", "run_workers"]

# prometheus_client reads it when first imported: set before api.http is, in the parent.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_log = get_logger("cap.http.workers")
Worker = Callable[[int, Callable[[], object]], int]  # (index, notify_ready) -> exit code
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_BACKLOG = 1024


def bind_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket on ``host:port`` (port 0: any free one) with ``SO_REUSEPORT``: every
    worker listens on a socket of its own and the kernel spreads new connections over
    them evenly (one shared socket lets whichever worker wakes first take them all). The
    parent binds without listening, to hold the port: only listening sockets get
    connections."""
    try:
        family, type_, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:  # an unknown host name
        raise cannot_listen(host, port, exc) from None
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        if listen:
            sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise cannot_listen(host, port, exc) from None
    if not listen and _answers(sock.getsockname()):
        # SO_REUSEPORT would let this service join another one's port (same user, also
        # with the option) and split its traffic: refuse, as a plain bind would.
        sock.close()
        raise cannot_listen(host, port, OSError(errno.EADDRINUSE, "address already in use"))
    sock.setblocking(False)
    return sock


def _answers(address: tuple[Any, ...]) -> bool:
    """Whether something already listens on ``address`` (a wildcard: on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address[0], address[0])
    try:
        with socket.create_connection((host, address[1]), timeout=1):
            return True
    except OSError:
        return False


def _child(run: Callable[[], int]) -> None:
    """Run ``run()`` in the forked child and leave with its exit code, never returning
    into the parent's code."""
    code = 1
    try:
        for sig in _SIGNALS:  # the worker's event loop installs its own
            signal.signal(sig, signal.SIG_DFL)
        code = run()
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_workers(
    count: int,
    worker: Worker,
    ready: Callable[[], None],
    *,
    writer: Callable[[], int] | None = None,
    forked: Callable[[], None] | None = None,
) -> int:
    """Fork ``count`` processes running ``worker(index, notify)``, and first, when given, one
    running ``writer()`` (it must outlive the workers' drain: it ignores SIGTERM/SIGINT and
    returns once they are gone); call ``forked()`` in the parent once all are started,
    ``ready()`` once every worker has called its ``notify()`` (it listens); wait for them
    all. The caller must hold no open ledger and run no threads."""
    if threading.active_count() > 1:
        raise RuntimeError("run_workers: threads do not survive a fork; start none before")
    children: dict[int, str] = {}
    stopping = False

    def stop_all(signum: int, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in _SIGNALS}
    sys.stdout.flush()
    sys.stderr.flush()
    status = 0
    try:
        if writer is not None:  # before the ready pipe: it must not hold a copy of it
            pid = os.fork()
            if pid == 0:
                _child(writer)
            children[pid] = "writer"
        ready_r, ready_w = os.pipe()
        for index in range(count):
            if stopping:
                break
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                _child(functools.partial(worker, index, lambda: os.write(ready_w, b".")))
            children[pid] = str(index)
        os.close(ready_w)
        if forked is not None:
            forked()
        with os.fdopen(ready_r, "rb") as pipe:
            # One byte per worker listening; EOF first when they all died before that.
            if len(pipe.read(count)) == count and not stopping:
                ready()
        while children:
            pid, wait_status = os.waitpid(-1, 0)
            name = children.pop(pid, "?")
            code = os.waitstatus_to_exitcode(wait_status)
            if code != 0:
                status = 1
                _log.error("worker_exited", worker=name, pid=pid, exit_code=code)
            if not stopping:  # nobody asked it to stop: take the rest down with it
                status = 1
                _log.error("worker_lost", worker=name, pid=pid, exit_code=code)
                stop_all(signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            # Once stopping, later signals (a group-wide Ctrl-C, a supervisor's repeat)
            # are ignored: the workers have drained; only the exit is left.
            signal.signal(sig, signal.SIG_IGN if stopping else handler)
    return status
