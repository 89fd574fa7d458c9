"""A ledger: one data directory's store, event log and consumers, opened together."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from ledger.datadir import DataDir
from ledger.errors import Conflict, EnvironmentProblem
from ledger.events import Event
from ledger.keys import HmacKeyProvider
from ledger.log import Consumer, EventLog
from ledger.store import DEFAULT_MAP_SIZE, Store

__all__ = ["Ledger"]


class Ledger:
    """The open ledger of a data directory. Close it (or use ``with``) to stop the writer."""

    def __init__(self, data: DataDir, store: Store, log: EventLog) -> None:
        self.data = data
        self.store = store
        self.log = log

    @classmethod
    def init(
        cls,
        root: Path | DataDir,
        keys: HmacKeyProvider,
        *,
        actor: str = "system",
        map_size: int = DEFAULT_MAP_SIZE,
    ) -> Event:
        """Create the store of a new ledger and write its genesis event."""
        data = root if isinstance(root, DataDir) else DataDir(Path(root))
        if data.initialized():
            raise Conflict("E-CONFLICT", f"a ledger already exists at {data.root}")
        try:
            data.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EnvironmentProblem(
                "E-STORAGE", f"cannot create data directory {data.root}: {exc.strerror}"
            ) from None
        store = Store(data.lmdb, create=True, map_size=map_size)
        try:
            return EventLog.create(store, keys, uuid.uuid4().hex, actor)
        finally:
            store.close()

    @classmethod
    def open(
        cls,
        root: Path | DataDir,
        keys: HmacKeyProvider,
        consumers: Sequence[Consumer] = (),
        *,
        map_size: int = DEFAULT_MAP_SIZE,
    ) -> Ledger:
        data = root if isinstance(root, DataDir) else DataDir(Path(root))
        if not data.root.is_dir():
            raise EnvironmentProblem(
                "E-NOT-INITIALIZED",
                f"no ledger at {data.root} (directory missing); run `cap-agent init`",
            )
        if not data.initialized():
            raise EnvironmentProblem(
                "E-NOT-INITIALIZED", f"no ledger at {data.root}; run `cap-agent init`"
            )
        store = Store(data.lmdb, map_size=map_size)
        try:
            log = EventLog(store, keys, consumers)
            log.start()
        except BaseException:
            store.close()
            raise
        return cls(data, store, log)

    def close(self) -> None:
        self.log.close()
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
