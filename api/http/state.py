"""What every handler can reach: the open ledger, the service's settings and its helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from api.http.declare import Route
from api.http.metrics import Metrics
from api.http.stream import Hub
from api.http.writer import WriterClient
from api.services import registry
from ledger.blobs import BlobStore
from ledger.blobtiers.base import Staged
from ledger.events import Event
from ledger.ledger import Ledger
from ledger.log import Append
from ledger.registry import Registry
from ledger.sandbox import VerifierPool
from ledger.tokens import Principal

__all__ = [
    "INPUTS",
    "OPENAPI",
    "PRINCIPAL",
    "REQUEST_ID",
    "ROUTE",
    "SERVICES",
    "ServiceConfig",
    "Services",
    "inputs",
    "principal",
    "services",
]

T = TypeVar("T")


@dataclass(slots=True, frozen=True)
class ServiceConfig:
    """Limits and knobs of one running service (all have safe defaults)."""

    max_blob_bytes: int = 1 << 30
    max_json_bytes: int = 1 << 20
    heartbeat_s: float = 15.0
    stream_queue: int = 4096
    stream_follow_s: float = 0.1  # how often streams look for other processes' events
    stream_send_timeout_s: float = 30.0
    io_workers: int = 8
    sandbox_workers: int = 2
    signing_key: Path | None = None
    shutdown_timeout_s: float = 30.0
    checkpoint_every_events: int | None = 10_000  # automatic checkpoints (with signing_key)
    checkpoint_every_seconds: float | None = 300.0
    deliver_webhooks: bool = True
    export_key_file: Path | None = None  # audit export key (else $CAP_AUDIT_EXPORT_KEY)


@dataclass(slots=True)
class Services:
    """The ledger and the shared machinery of one application."""

    ledger: Ledger
    config: ServiceConfig
    metrics: Metrics
    hub: Hub
    writer: WriterClient | None = None  # the writer process of `serve --workers N`
    io: ThreadPoolExecutor = field(init=False)
    sandbox: VerifierPool = field(init=False)
    registry: Registry = field(init=False)  # stateless command objects, built once

    def __post_init__(self) -> None:
        self.io = ThreadPoolExecutor(self.config.io_workers, thread_name_prefix="cap-http-io")
        self.sandbox = VerifierPool(self.config.sandbox_workers)
        self.registry = registry(self.ledger)

    @property
    def blobs(self) -> BlobStore:
        return self.registry.blobs

    def close(self) -> None:
        """Wait for the worker threads (after the server has drained its requests)."""
        self.io.shutdown(wait=True)
        self.sandbox.close()

    async def off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (verification, scans, file I/O) on the I/O pool."""
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    async def append(self, items: list[Append]) -> list[Event]:
        """Append through the writer's group commit; returns once the events are durable."""
        start = time.perf_counter()
        events = await self.ledger.log.aappend_many(items)

        self.metrics.append_latency.observe(time.perf_counter() - start)
        return events

    async def put_blob(self, staged: Staged, media_type: str, actor: str) -> Event:
        """The ``blob.put`` of a persisted blob: through the writer process when there is
        one and the bytes go to LMDB (the hot path), else through this process's writer."""
        if self.writer is None or staged.tier != self.blobs.lmdb.name:
            (event,) = await self.append([self.blobs.put_append(staged, media_type, actor)])
            return event
        start = time.perf_counter()
        event = await self.writer.put_blob(staged, media_type, actor)
        self.metrics.append_latency.observe(time.perf_counter() - start)
        return event


SERVICES = web.AppKey("services", Services)
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE = web.RequestKey("route", Route)
PRINCIPAL = web.RequestKey("principal", Principal)
INPUTS = web.RequestKey("inputs", dict)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def principal(request: web.Request) -> Principal:
    """Who is calling (set by the auth middleware on every non-open route)."""
    return request[PRINCIPAL]


def inputs(request: web.Request) -> dict[str, Any]:
    """The request's declared parameters, typed and validated (and the JSON body as ``body``)."""
    doc: dict[str, Any] = request[INPUTS]
    return doc


OPENAPI = web.AppKey("openapi", dict)
