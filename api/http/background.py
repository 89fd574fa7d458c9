"""Work the service does on its own: automatic signed checkpoints and webhook delivery.

Both start with the application and stop before the ledger closes. Checkpoints need a
signing key (``serve --signing-key``); webhook delivery takes this data directory's
delivery lock, so a ``cap-agent webhooks deliver`` elsewhere makes the service skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from api.http.state import ServiceConfig
from ledger.checkpoint import AutoCheckpointer
from ledger.errors import Conflict
from ledger.keys import load_private_key
from ledger.ledger import Ledger
from ledger.logs import get_logger

__all__ = ["background_tasks"]

_log = get_logger("cap.http.background")


def background_tasks(
    ledger: Ledger, config: ServiceConfig
) -> Callable[[web.Application], AsyncIterator[None]]:
    """An ``app.cleanup_ctx`` entry running the automatic checkpointer and the webhook
    worker for the application's lifetime."""

    async def run(app: web.Application) -> AsyncIterator[None]:
        checkpointer = _checkpointer(ledger, config)
        stop = asyncio.Event()
        worker_task = _webhooks(ledger, config, stop) if config.deliver_webhooks else None
        try:
            yield
        finally:
            stop.set()
            if worker_task is not None:
                try:
                    await asyncio.wait_for(worker_task, timeout=config.shutdown_timeout_s)
                except TimeoutError:
                    worker_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker_task
            if checkpointer is not None:
                await asyncio.get_running_loop().run_in_executor(None, checkpointer.stop)

    return run


def _checkpointer(ledger: Ledger, config: ServiceConfig) -> AutoCheckpointer | None:
    every_n, every_s = config.checkpoint_every_events, config.checkpoint_every_seconds
    if config.signing_key is None or not (every_n or every_s):
        return None
    auto = AutoCheckpointer(
        ledger.log,
        load_private_key(config.signing_key),
        every_events=every_n,
        every_seconds=every_s,
    )
    auto.start()
    _log.info("checkpoints_automatic", every_events=every_n, every_seconds=every_s)
    return auto


def _webhooks(ledger: Ledger, config: ServiceConfig, stop: asyncio.Event) -> asyncio.Task[Any]:
    # Imported here: the delivery worker pulls in aiohttp's client, which only this needs.
    from ledger.webhook_delivery import WebhookWorker

    async def deliver() -> None:
        try:
            async with WebhookWorker(ledger) as worker:
                await worker.run(stop)
        except Conflict:
            _log.warning("webhooks_elsewhere", reason="another delivery worker holds the lock")
        except Exception as exc:  # the store went away under us (shutdown): stop quietly
            if not stop.is_set():
                _log.exception("webhooks_stopped", error=str(exc))

    return asyncio.create_task(deliver(), name="cap-webhooks")
