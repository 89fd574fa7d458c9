"""The LMDB environment of a data directory: named databases, read/write transactions, growth.

One environment holds the event log, the blob store and every projection, so an event and
everything that depends on it commit in one transaction. LMDB allows one writer at a time
(across processes), which is what keeps the chain from forking.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb

from ledger.errors import CheckFailed, EnvironmentProblem

__all__ = ["DB_NAMES", "DEFAULT_MAP_SIZE", "Store", "scan_prefix"]

# Every named database lives here so the environment opens them all at once (opening a
# database while other transactions run is not safe in LMDB).
DB_NAMES: tuple[str, ...] = (
    "events",  # 8-byte big-endian seq -> b3 || mac || canonical body
    "meta",  # head, ledger id, format
    "checkpoints",  # projection name -> last applied seq
    "blob_data",  # blob id (32 bytes) -> bytes, for the LMDB tier
    "proj_blobs",
    "proj_registry",
    "proj_registry_hist",
    "proj_tokens",
    "proj_checkpoints",  # checkpoint seq -> the signed checkpoint (ledger.checkpoint events)
    "outbox",
)

DEFAULT_MAP_SIZE = 1 << 30  # 1 GiB of address space; grows by doubling when full
_MAX_MAP_SIZE = 1 << 40


class Store:
    """An open LMDB environment with its named databases.

    ``read()`` and ``write()`` hand out transactions; a full map is grown automatically
    (waiting for this process's readers to finish, as LMDB requires).
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
        readonly: bool = False,
    ):
        """Open (``create``: make) the environment at ``path``; ``readonly`` for processes
        that only read a store another process has opened for writing (parallel verify)."""
        self.path = Path(path)
        if not create and not (self.path / "data.mdb").exists():
            raise EnvironmentProblem("E-NOT-INITIALIZED", f"no ledger store at {self.path}")
        try:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(DB_NAMES) + 4,
                subdir=True,
                sync=True,
                metasync=True,
                max_readers=512,
                create=create,
                readonly=readonly,
            )
        except (lmdb.InvalidError, lmdb.CorruptedError) as exc:
            raise CheckFailed(
                "E-CHAIN-BROKEN", f"LMDB store at {self.path} is corrupt: {exc}"
            ) from None
        except lmdb.Error as exc:
            raise _environment_error(exc, self.path) from None
        self._gate = threading.Condition()
        self._readers = 0
        self._resizing = False
        try:
            self.dbs: dict[str, Any] = {n: self.env.open_db(n.encode()) for n in DB_NAMES}
        except lmdb.Error as exc:
            self.env.close()
            raise CheckFailed(
                "E-CHAIN-BROKEN", f"LMDB store at {self.path} is corrupt: {exc}"
            ) from None

    def db(self, name: str) -> Any:
        return self.dbs[name]

    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A consistent snapshot for reading (MVCC: never blocks the writer)."""
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._readers += 1
        try:
            with self._begin(write=False) as txn:
                yield txn
        finally:
            with self._gate:
                self._readers -= 1
                if self._readers == 0:
                    self._gate.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A synced write transaction. Callers retry on :class:`lmdb.MapFullError` after
        :meth:`grow`; :meth:`run_write` does that for them."""
        with self._begin(write=True) as txn:
            yield txn

    def run_write(self, fn: Any) -> Any:
        """Run ``fn(txn)`` in a write transaction, growing the map and retrying when full."""
        while True:
            try:
                with self.write() as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.grow()
            except lmdb.DiskError as exc:
                raise _environment_error(exc, self.path) from None

    def _begin(self, *, write: bool) -> Any:
        try:
            return self.env.begin(write=write)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size, then retry once.
            self._adopt_size()
            return self.env.begin(write=write)

    def _adopt_size(self) -> None:
        self._exclusive(lambda: self.env.set_mapsize(0))

    def grow(self) -> None:
        """Double the map size (LMDB needs no open transaction in this process to do it)."""
        size = self.env.info()["map_size"]
        if size * 2 > _MAX_MAP_SIZE:
            raise EnvironmentProblem("E-STORAGE", "ledger store reached its size limit")
        self._exclusive(lambda: self.env.set_mapsize(size * 2))

    def _exclusive(self, fn: Any) -> None:
        with self._gate:
            while self._resizing:
                self._gate.wait()
            self._resizing = True
            while self._readers:
                self._gate.wait()
        try:
            fn()
        finally:
            with self._gate:
                self._resizing = False
                self._gate.notify_all()

    def close(self) -> None:
        self.env.close()


def _environment_error(exc: lmdb.Error, path: Path) -> EnvironmentProblem:
    if isinstance(exc, lmdb.DiskError) or getattr(exc, "errno", None) == errno.ENOSPC:
        return EnvironmentProblem("E-STORAGE", f"disk problem at {path}: {exc}")
    if isinstance(exc, lmdb.ReadonlyError | lmdb.LockError):
        return EnvironmentProblem("E-STORAGE", f"store at {path} is locked: {exc}")
    return EnvironmentProblem("E-STORAGE", f"cannot open store at {path}: {exc}")


def scan_prefix(
    txn: lmdb.Transaction, db: Any, prefix: bytes, start: bytes | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` of every record whose key starts with ``prefix``, in key order,
    beginning at ``start`` (default: the prefix itself)."""
    cur = txn.cursor(db=db)
    if not cur.set_range(prefix if start is None else start):
        return
    for k, v in cur:
        key = bytes(k)
        if not key.startswith(prefix):
            return
        yield key, bytes(v)
