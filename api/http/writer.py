"""One writer process for the blob puts of every worker (``serve --workers N``).

Workers that each commit their own writes take LMDB's write lock by turns: a put waits for
the other worker's commit, then its own, and each commit carries only what reached one
worker. Measured at 64 clients on the 2-core machine, one writer fed by both workers
halved the p99 of durable puts (22-23 ms against 40-45 ms) for about the same throughput.

Blob puts for the LMDB tier, the write the service takes most of, travel here as data:
msgpack messages over one socket pair per worker. The writer appends them through its
ledger's group commit and answers each once it is durable. Every other write (registry adds
with their checks, GC, tokens, user events) carries callables that read state inside the
transaction and is appended by the worker itself: LMDB's write lock orders those commits
with the writer's, so the chain stays one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import socket
from typing import Any

import msgpack

from api.http.metrics import Metrics
from api.services import blob_store
from ledger.blobtiers.base import Staged
from ledger.errors import CapError, EnvironmentProblem
from ledger.events import Event
from ledger.ledger import Ledger
from ledger.logs import get_logger

__all__ = ["WriterClient", "serve_writer"]

_log = get_logger("cap.http.writer")
_READ = 1 << 16
_SLACK = 1 << 16  # a put is a blob of at most inline_max bytes and a few short fields
_REPLY_MAX = 1 << 20  # an answer is one blob.put event or one error


async def serve_writer(ledger: Ledger, socks: list[socket.socket]) -> None:
    """The writer process's loop: take puts from every worker's socket, append them through
    the group commit, answer each once durable. Returns once every worker has closed its
    end (stopped, or died: what it sent still commits, as a cancelled request's would)."""
    store = blob_store(ledger)
    metrics = Metrics(ledger.log)  # its commits count in /metrics with the workers'
    ledger.log.add_listener(metrics.on_commit)
    limit = 2 * (store.inline_max + _SLACK)
    running: set[asyncio.Task[None]] = set()

    async def put(out: asyncio.StreamWriter, message: list[Any]) -> None:
        rid, blob_id, sha3, size, data, media_type, actor = message
        error: bytes | None = None
        fields: list[Any] | None = None
        try:
            staged = Staged(blob_id, sha3, size, store.lmdb.name, data=data)
            (event,) = await ledger.log.aappend_many([store.put_append(staged, media_type, actor)])
            fields = list(event)
        except CapError as exc:  # E- codes cross as they are (CapError pickles its fields)
            error = pickle.dumps(exc)
        except Exception:
            _log.exception("writer_put_failed", blob_id=blob_id)
            error = pickle.dumps(EnvironmentProblem("E-STORAGE", "the writer failed this put"))
        if not out.is_closing():
            out.write(msgpack.packb([rid, fields, error]))

    async def serve_one(sock: socket.socket) -> None:
        reader, out = await asyncio.open_unix_connection(sock=sock)
        unpacker = msgpack.Unpacker(max_buffer_size=limit)
        while data := await reader.read(_READ):
            unpacker.feed(data)
            for message in unpacker:
                task = asyncio.create_task(put(out, message))
                running.add(task)
                task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        out.close()

    await asyncio.gather(*(serve_one(s) for s in socks))


class WriterClient:
    """A worker's end of its socket pair: :meth:`put_blob` returns the committed event.

    ``E-STORAGE`` (503) when the writer process is gone; a put in flight then may or may
    not have committed, and putting the same bytes again is safe (a blob is its hash)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[Event]] = {}
        self._out: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._gone = False

    async def start(self) -> None:
        reader, self._out = await asyncio.open_unix_connection(sock=self._sock)
        self._pump = asyncio.create_task(self._answers(reader))

    async def _answers(self, reader: asyncio.StreamReader) -> None:
        unpacker = msgpack.Unpacker(max_buffer_size=_REPLY_MAX)
        try:
            while data := await reader.read(_READ):
                unpacker.feed(data)
                for rid, fields, error in unpacker:
                    fut = self._waiting.pop(rid, None)
                    if fut is None or fut.done():  # its request was cancelled meanwhile
                        continue
                    if error is None:
                        fut.set_result(Event(*fields))
                    else:
                        fut.set_exception(pickle.loads(error))
        finally:
            self._gone = True
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(_gone())
            self._waiting.clear()

    async def put_blob(self, staged: Staged, media_type: str, actor: str) -> Event:
        if self._gone or self._out is None or self._out.is_closing():
            raise _gone()
        rid = next(self._ids)
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self._out.write(
            msgpack.packb(
                [rid, staged.blob_id, staged.sha3_256, staged.size, staged.data, media_type, actor]
            )
        )
        return await fut

    async def close(self) -> None:
        """After the worker has drained: closing tells the writer this worker is done."""
        if self._out is not None:
            self._out.close()
            with contextlib.suppress(ConnectionError):  # the writer went first
                await self._out.wait_closed()
        if self._pump is not None:
            self._pump.cancel()


def _gone() -> EnvironmentProblem:
    return EnvironmentProblem(
        "E-STORAGE",
        "the service's writer process is gone; this put may or may not have committed "
        "(putting the same bytes again is safe)",
    )
