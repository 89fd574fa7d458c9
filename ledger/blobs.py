"""The content-addressed blob store: ``blob_id`` = BLAKE3 hex of the bytes, SHA3-256 too.

Every put is a ``blob.put`` event, however often the same bytes come; the bytes are stored
once. Small blobs live in LMDB (written in the event's transaction), large ones in the file
tier (fsynced and renamed into place before the event). Reads re-hash everything they hand
out: bytes that no longer match their id raise ``E-HASH-MISMATCH``, never come back wrong.

The store reads current state (which blobs exist, their tier, their refcount) through a
:class:`BlobIndex` that the read side provides, so the write side imports no projection.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import lmdb
from blake3 import blake3

from ledger.blobtiers import CHUNK, BlobTier, FsTier, LmdbTier, Staged
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem, NotFound
from ledger.events import Event
from ledger.ledger import Ledger
from ledger.log import Append
from ledger.outfile import output_file

__all__ = [
    "BLOB_GC",
    "BLOB_PUT",
    "DEFAULT_INLINE_MAX",
    "DEFAULT_MEDIA_TYPE",
    "ENV_INLINE_MAX",
    "BlobIndex",
    "BlobInfo",
    "BlobStore",
    "check_blob_id",
    "check_media_type",
]

BLOB_PUT = "blob.put"
BLOB_GC = "blob.gc"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
DEFAULT_INLINE_MAX = 256 * 1024  # blobs up to this size live in LMDB, larger ones in files
ENV_INLINE_MAX = "CAP_BLOB_INLINE_MAX"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MEDIA = re.compile(r"^[A-Za-z0-9][\w.+!#$&^-]*/[A-Za-z0-9][\w.+!#$&^-]*(\s*;[ -~]*)?$")


def check_blob_id(value: str, *, what: str = "blob id") -> str:
    """A blob id is 64 lowercase hex digits (BLAKE3-256); anything else is ``E-BAD-INPUT``."""
    if not isinstance(value, str) or not _HEX64.match(value):
        raise BadInput("E-BAD-INPUT", f"{what} must be 64 lowercase hex digits")
    return value


def check_media_type(value: str) -> str:
    if not isinstance(value, str) or len(value) > 255 or not _MEDIA.match(value):
        raise BadInput("E-BAD-INPUT", f"media type {value!r} is not of the form type/subtype")
    return value


@dataclass(slots=True, frozen=True)
class BlobInfo:
    """A blob's record as the blobs projection holds it, with its current refcount."""

    blob_id: str
    size: int
    media_type: str
    sha3_256: str
    created_at: str
    last_put_at: str
    tier: str
    puts: int
    refcount: int

    def to_json(self) -> dict[str, Any]:
        """The contract's blob view, plus where it lives and how often it was put."""
        return {
            "blob_id": self.blob_id,
            "size": self.size,
            "media_type": self.media_type,
            "refcount": self.refcount,
            "sha3_256": self.sha3_256,
            "created_at": self.created_at,
            "last_put_at": self.last_put_at,
            "tier": self.tier,
            "puts": self.puts,
        }


class BlobIndex(Protocol):
    """Current blob records, read inside a given transaction (provided by the read side)."""

    consumer_name: str

    def blob(self, txn: lmdb.Transaction, blob_id: str) -> BlobInfo | None: ...

    def by_sha3(self, txn: lmdb.Transaction, sha3_256: str) -> BlobInfo | None: ...

    def collectable(self, txn: lmdb.Transaction, cutoff: str) -> Iterator[BlobInfo]: ...

    def iter_blobs(self, txn: lmdb.Transaction, after: str | None = None) -> Iterator[BlobInfo]: ...


def require_consumer(ledger: Ledger, name: str) -> None:
    """Commands validate against a projection: refuse to run if it is not kept current."""
    if name not in {c.name for c in ledger.log.consumers}:
        raise EnvironmentProblem(
            "E-NOT-INITIALIZED", f"the {name!r} projection is not attached to this ledger"
        )


class BlobStore:
    """Put, read and verify blobs of one ledger (GC is :mod:`ledger.blob_gc`)."""

    def __init__(self, ledger: Ledger, index: BlobIndex, *, inline_max: int | None = None):
        require_consumer(ledger, index.consumer_name)
        self.ledger = ledger
        self.index = index
        if inline_max is None:
            env = os.environ.get(ENV_INLINE_MAX)
            try:
                inline_max = int(env) if env else DEFAULT_INLINE_MAX
            except ValueError:
                raise BadInput("E-BAD-INPUT", f"{ENV_INLINE_MAX} must be an integer") from None
        if inline_max < 0:
            raise BadInput("E-BAD-INPUT", "inline blob limit must not be negative")
        self.inline_max = inline_max
        self.lmdb = LmdbTier(ledger.store)
        self.fs = FsTier(ledger.data.blobs)
        self.tiers: dict[str, BlobTier] = {self.lmdb.name: self.lmdb, self.fs.name: self.fs}

    # --- putting ------------------------------------------------------------------------

    def stage(self, src: BinaryIO, *, max_size: int | None = None) -> Staged:
        """Hash ``src`` while reading it in chunks; small blobs stay in memory, large ones
        go to a temporary file of the file tier. Memory is bounded by the inline limit."""
        b3, s3 = blake3(max_threads=blake3.AUTO), hashlib.sha3_256()
        buf = bytearray()
        size = 0
        temp: Path | None = None
        out: BinaryIO | None = None
        try:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise BadInput("E-BAD-INPUT", f"blob is larger than {max_size} bytes")
                b3.update(chunk)
                s3.update(chunk)
                if out is None:
                    buf += chunk
                    if len(buf) > self.inline_max:
                        temp, out = self.fs.new_temp()
                        out.write(buf)
                        buf = bytearray()
                else:
                    out.write(chunk)
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
                out.close()
                out = None
        except BaseException:
            if out is not None:
                out.close()
            if temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            raise
        blob_id, sha3 = b3.hexdigest(), s3.hexdigest()
        if temp is not None:
            return Staged(blob_id, sha3, size, self.fs.name, temp=temp)
        return Staged(blob_id, sha3, size, self.lmdb.name, data=bytes(buf))

    def stage_bytes(self, data: bytes) -> Staged:
        """Stage bytes already in memory (small inputs, tests)."""
        import io

        return self.stage(io.BytesIO(data))

    def put_append(self, staged: Staged, media_type: str, actor: str) -> Append:
        """The ``blob.put`` event for a staged blob (persist it first: :meth:`persisted`)."""
        tier = self.tiers[staged.tier]
        payload = {
            "blob_id": staged.blob_id,
            "sha3_256": staged.sha3_256,
            "size": staged.size,
            "media_type": check_media_type(media_type),
            "tier": staged.tier,
        }

        def side(txn: lmdb.Transaction, event: Event) -> None:
            tier.write(txn, staged)

        return Append(BLOB_PUT, payload, actor, side=side)

    @contextlib.contextmanager
    def persisted(self, staged: Sequence[Staged]) -> Iterator[None]:
        """Persist staged blobs and hold the put lock until the block (the append) ends.

        Holding the lock shared keeps GC from sweeping a renamed file whose event is not
        committed yet. Staged temporary files are removed on every path out.
        """
        needs_lock = any(s.tier == self.fs.name for s in staged)
        lock = self.fs.lock(exclusive=False) if needs_lock else contextlib.nullcontext()
        try:
            with lock:
                for s in staged:
                    self.tiers[s.tier].persist(s)
                yield
        finally:
            for s in staged:
                self.tiers[s.tier].discard(s)

    def put(
        self,
        src: BinaryIO,
        media_type: str = DEFAULT_MEDIA_TYPE,
        actor: str = "system",
        *,
        max_size: int | None = None,
    ) -> tuple[BlobInfo, Event]:
        """Store ``src`` and append its ``blob.put`` event; returns the record and event."""
        check_media_type(media_type)
        staged = self.stage(src, max_size=max_size)
        with self.persisted([staged]):
            event = self.ledger.log.append_many([self.put_append(staged, media_type, actor)])[0]
        return self.info(staged.blob_id), event

    # --- reading ------------------------------------------------------------------------

    def info(self, blob_id: str) -> BlobInfo:
        """The blob's record; ``E-BLOB-MISSING`` (exit 3) when there is none."""
        check_blob_id(blob_id)
        with self.ledger.store.read() as txn:
            info = self.index.blob(txn, blob_id)
        if info is None:
            raise NotFound("E-BLOB-MISSING", f"no blob {blob_id}")
        return info

    def chunks(self, blob_id: str, info: BlobInfo | None = None) -> Iterator[bytes]:
        """The blob's bytes in chunks, re-hashed on the way: the last step raises
        ``E-HASH-MISMATCH`` when they do not match the id, so a caller that commits only
        after the iterator is exhausted never commits wrong bytes."""
        info = info or self.info(blob_id)
        b3 = blake3(max_threads=blake3.AUTO)
        size = 0
        for chunk in self.tiers[info.tier].chunks(blob_id):
            size += len(chunk)
            if size > info.size:
                raise _mismatch(blob_id, "more bytes stored than recorded")
            b3.update(chunk)
            yield chunk
        if size != info.size or b3.hexdigest() != blob_id:
            raise _mismatch(blob_id, "stored bytes do not hash to the blob id")

    def verify(self, blob_id: str) -> BlobInfo:
        """Re-hash the stored bytes; ``E-BLOB-MISSING`` or ``E-HASH-MISMATCH`` on failure."""
        info = self.info(blob_id)
        for _ in self.chunks(blob_id, info):
            pass
        return info

    def read(self, blob_id: str, *, max_size: int) -> bytes:
        """The whole blob in memory (for inputs that are small by contract)."""
        info = self.info(blob_id)
        if info.size > max_size:
            raise BadInput("E-BAD-INPUT", f"blob {blob_id} is larger than {max_size} bytes")
        return b"".join(self.chunks(blob_id, info))

    def save(self, blob_id: str, out: Path) -> BlobInfo:
        """Write the blob to ``out`` via a temporary file renamed only once the bytes are
        verified: on any failure no output file is left behind."""
        info = self.info(blob_id)
        out = Path(out)
        if not out.parent.is_dir():
            raise BadInput("E-BAD-INPUT", f"output directory {out.parent} does not exist")
        try:
            with output_file(out) as temp, temp.open("xb") as f:
                for chunk in self.chunks(blob_id, info):
                    f.write(chunk)
        except OSError as exc:
            raise EnvironmentProblem(
                "E-STORAGE", f"cannot write {out}: {exc.strerror or exc}"
            ) from None
        return info


def _mismatch(blob_id: str, why: str) -> CheckFailed:
    return CheckFailed("E-HASH-MISMATCH", f"blob {blob_id}: {why}")
