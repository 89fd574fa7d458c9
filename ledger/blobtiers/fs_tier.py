"""The file tier: large blobs as content-addressed files under ``DIR/blobs``.

Layout: ``blobs/<id[:2]>/<id>`` for data, ``blobs/tmp/`` for puts in progress and
``blobs/.lock`` for the lock that keeps a put's rename-and-commit apart from GC's sweep
and unlinking (a put holds it shared, GC exclusively).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

import lmdb

from ledger.blobtiers.base import CHUNK, BlobTier, Staged
from ledger.errors import CheckFailed, EnvironmentProblem
from ledger.outfile import fsync_dir

__all__ = ["FsTier"]

_HEX_ID = re.compile(r"^[0-9a-f]{64}$")


class FsTier(BlobTier):
    """Content-addressed files: written to a temporary file, fsynced, renamed into place."""

    name: ClassVar[str] = "fs"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id

    # --- staging ------------------------------------------------------------------------

    def new_temp(self) -> tuple[Path, BinaryIO]:
        """A fresh temporary file for a put in progress (removed by :meth:`discard`)."""
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
            path = self.tmp / f"put-{os.getpid()}-{secrets.token_hex(8)}.tmp"
            return path, path.open("xb")
        except OSError as exc:
            raise _env(exc, self.tmp) from None

    # --- BlobTier -----------------------------------------------------------------------

    def persist(self, staged: Staged) -> None:
        if staged.temp is None:
            raise ValueError("file tier needs a staged temporary file")
        final = self.path(staged.blob_id)
        try:
            created = not final.parent.is_dir()
            final.parent.mkdir(parents=True, exist_ok=True)
            if created:
                fsync_dir(self.root)
            # An existing copy is replaced atomically: same bytes stay one copy, and a
            # corrupted copy is repaired by putting the good bytes again.
            os.replace(staged.temp, final)
            fsync_dir(final.parent)
        except OSError as exc:
            raise _env(exc, final) from None

    def write(self, txn: lmdb.Transaction, staged: Staged) -> None:
        """The bytes are already in place; the transaction only carries the record."""

    def chunks(self, blob_id: str) -> Iterator[bytes]:
        try:
            f = self.path(blob_id).open("rb")
        except FileNotFoundError:
            raise CheckFailed(
                "E-BLOB-MISSING", f"blob {blob_id} has a record but its file is missing"
            ) from None
        except OSError as exc:
            raise _env(exc, self.path(blob_id)) from None
        with f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, txn: lmdb.Transaction, blob_id: str) -> None:
        """Files are released only after the record's removal committed."""

    def release(self, blob_id: str) -> int:
        path = self.path(blob_id)
        try:
            size = path.stat().st_size
            path.unlink()
            fsync_dir(path.parent)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _env(exc, path) from None
        return size

    def stored(self) -> Iterator[tuple[str, int]]:
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if len(sub.name) != 2 or not sub.is_dir():
                continue
            for f in sorted(sub.iterdir()):
                if _HEX_ID.match(f.name) and f.name[:2] == sub.name:
                    with contextlib.suppress(FileNotFoundError):
                        yield f.name, f.stat().st_size

    def discard(self, staged: Staged) -> None:
        if staged.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                staged.temp.unlink()

    # --- housekeeping -------------------------------------------------------------------

    def stale_temps(self, older_than: float) -> Iterator[tuple[Path, int]]:
        """Temporary files untouched for ``older_than`` seconds (puts that died)."""
        if not self.tmp.is_dir():
            return
        limit = time.time() - older_than
        for f in sorted(self.tmp.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                st = f.stat()
                if st.st_mtime <= limit:
                    yield f, st.st_size

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool) -> Iterator[None]:
        """Shared for a put's rename-and-commit, exclusive for GC (``flock``, cross-process)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _env(exc, self.root) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _env(exc: OSError, path: Path) -> EnvironmentProblem:
    return EnvironmentProblem("E-STORAGE", f"blob storage problem at {path}: {exc.strerror}")
