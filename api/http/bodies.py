"""Request and response bodies streamed in bounded chunks, never held whole in memory.

:class:`BodyReader` gives blocking code (the blob store's ``stage``, which hashes while it
reads) a file-like view of an aiohttp request body: each ``read`` runs on a worker thread and
waits for the next chunk from the event loop. Past ``limit`` bytes it raises
``HTTPRequestEntityTooLarge`` (a 413 with the JSON error shape).
:func:`send_verified` streams chunks out holding the last one back until the source
iterator has finished, so a re-hash that fails at the end aborts the response before it is
complete and a client never receives wrong bytes as a whole, successful body.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import IO

from aiohttp import web

from api.http.state import Services

__all__ = ["BodyReader", "check_declared_size", "send_verified", "spool_body"]


def check_declared_size(request: web.Request, limit: int) -> None:
    """Refuse at once a body whose Content-Length is already over ``limit`` (413)."""
    size = request.content_length
    if size is not None and size > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)


class BodyReader:
    """A blocking ``read(n)`` over ``request.content`` for code running off the loop."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._content = request.content
        self._loop = loop
        self.limit = limit
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        want = n if n > 0 else 1 << 20
        chunk: bytes = asyncio.run_coroutine_threadsafe(
            self._content.read(want), self._loop
        ).result()
        self.size += len(chunk)
        if self.size > self.limit:
            raise web.HTTPRequestEntityTooLarge(max_size=self.limit, actual_size=self.size)
        return chunk


async def spool_body(request: web.Request, svc: Services, limit: int) -> IO[bytes]:
    """The request body in a temporary file (in memory up to 8 MiB), read from the start;
    413 past ``limit`` bytes. The caller closes it."""
    check_declared_size(request, limit)
    f = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 (the caller closes it)
    size = 0
    try:
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            await svc.off_loop(f.write, chunk)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f


async def send_verified(
    resp: web.StreamResponse,
    chunks: Iterator[bytes],
    executor: Executor | None,
    window: tuple[int, int] | None = None,
) -> None:
    """Write ``chunks`` (only bytes ``window`` = [start, end) of them, if given) to the
    prepared ``resp``; with an ``executor``, each chunk is pulled on it (file reads)."""
    loop = asyncio.get_running_loop()
    sentinel = object()

    def pull() -> object:
        return next(chunks, sentinel)

    pos = 0
    held: bytes | None = None
    while True:
        item = await loop.run_in_executor(executor, pull) if executor is not None else pull()
        if item is sentinel:
            break
        assert isinstance(item, bytes)
        start, pos = pos, pos + len(item)
        if window is not None:
            lo, hi = window
            if pos <= lo or start >= hi:
                continue
            item = item[max(0, lo - start) : len(item) - max(0, pos - hi)]
        if held is not None:
            await resp.write(held)
        held = item
    if held is not None:
        await resp.write(held)
    await resp.write_eof()
