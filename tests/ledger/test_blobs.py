"""Blob store: dedup, both tiers, streaming, re-hash on read, GC with grace and crashes."""

from __future__ import annotations

import io
import os
import threading
import tracemalloc

import pytest
from blake3 import blake3

from ledger.blob_audit import audit_blobs
from ledger.blob_gc import TEMP_GRACE, collect_garbage
from ledger.blobs import BlobStore
from ledger.errors import BadInput, CheckFailed, NotFound
from projections.blobs import BlobsView
from projections.rebuild import dump_tables, rebuild

SMALL = b"small blob"
LARGE = bytes(range(256)) * 40  # 10 KiB: above the inline limit used here


@pytest.fixture
def blobs(ledger):
    return BlobStore(ledger, BlobsView(ledger.store), inline_max=64)


def _put(blobs, data, media_type="application/octet-stream"):
    return blobs.put(io.BytesIO(data), media_type)


def _types(ledger):
    return [e.type for e in ledger.log.events()]


@pytest.mark.parametrize("data,tier", [(SMALL, "lmdb"), (LARGE, "fs")])
def test_same_bytes_twice_one_copy_two_events(ledger, blobs, data, tier):
    a, ev1 = _put(blobs, data, "text/plain")
    b, ev2 = _put(blobs, data, "application/json")
    assert a.blob_id == b.blob_id == blake3(data).hexdigest()
    assert (ev1.seq, ev2.seq) == (1, 2)
    assert _types(ledger).count("blob.put") == 2
    assert b.puts == 2 and b.tier == tier and b.media_type == "text/plain"
    assert b.created_at == ev1.ts and b.last_put_at == ev2.ts
    stored = list(blobs.tiers[tier].stored())
    assert stored == [(a.blob_id, len(data))]
    other = "fs" if tier == "lmdb" else "lmdb"
    assert list(blobs.tiers[other].stored()) == []
    assert b"".join(blobs.chunks(a.blob_id)) == data


def test_sha3_recorded(blobs):
    import hashlib

    info, _ = _put(blobs, LARGE)
    assert info.sha3_256 == hashlib.sha3_256(LARGE).hexdigest()
    with blobs.ledger.store.read() as txn:
        assert blobs.index.by_sha3(txn, info.sha3_256).blob_id == info.blob_id


def test_empty_blob(blobs):
    info, _ = _put(blobs, b"")
    assert info.size == 0 and blobs.read(info.blob_id, max_size=10) == b""


class _Endless(io.RawIOBase):
    """A stream of ``total`` pseudo-random bytes produced chunk by chunk."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.hasher = blake3()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, 1 << 20 if n < 0 else n)
        chunk = os.urandom(n)
        self.left -= n
        self.hasher.update(chunk)
        return chunk


def test_put_and_get_stream_in_bounded_memory(blobs, tmp_path):
    total = 24 << 20
    src = _Endless(total)
    tracemalloc.start()
    try:
        info, _ = blobs.put(src)
        out = tmp_path / "out.bin"
        blobs.save(info.blob_id, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.size == total and info.blob_id == src.hasher.hexdigest()
    assert out.stat().st_size == total
    assert peak < 8 << 20, f"peak {peak} bytes for a {total}-byte blob"


def test_unknown_blob_is_missing(blobs, tmp_path):
    with pytest.raises(NotFound) as info:
        blobs.save("0" * 64, tmp_path / "x")
    assert info.value.code == "E-BLOB-MISSING"
    with pytest.raises(BadInput):
        blobs.info("xyz")


def test_file_gone_is_missing(blobs, tmp_path):
    info, _ = _put(blobs, LARGE)
    blobs.fs.path(info.blob_id).unlink()
    with pytest.raises(CheckFailed) as exc:
        blobs.save(info.blob_id, tmp_path / "out")
    assert exc.value.code == "E-BLOB-MISSING"
    assert not (tmp_path / "out").exists()


def _flip_lmdb(blobs, blob_id):
    key = bytes.fromhex(blob_id)
    with blobs.ledger.store.write() as txn:
        data = bytearray(txn.get(key, db=blobs.lmdb.db))
        data[0] ^= 0x01
        txn.put(key, bytes(data), db=blobs.lmdb.db)


def _flip_file(blobs, blob_id):
    path = blobs.fs.path(blob_id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x80
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("data,flip", [(SMALL, _flip_lmdb), (LARGE, _flip_file)])
def test_flipped_byte_is_hash_mismatch_and_no_output(blobs, tmp_path, data, flip):
    info, _ = _put(blobs, data)
    flip(blobs, info.blob_id)
    outdir = tmp_path / "out"
    outdir.mkdir()
    with pytest.raises(CheckFailed) as exc:
        blobs.save(info.blob_id, outdir / "out.bin")
    assert exc.value.code == "E-HASH-MISMATCH"
    assert list(outdir.iterdir()) == []
    with pytest.raises(CheckFailed):
        blobs.read(info.blob_id, max_size=1 << 20)
    assert audit_blobs(blobs).bad == ((info.blob_id, "E-HASH-MISMATCH"),)
    # Putting the good bytes again repairs the stored copy.
    _put(blobs, data)
    assert blobs.read(info.blob_id, max_size=1 << 20) == data
    assert audit_blobs(blobs).ok


def test_truncated_file_is_hash_mismatch(blobs):
    info, _ = _put(blobs, LARGE)
    path = blobs.fs.path(info.blob_id)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(CheckFailed) as exc:
        blobs.verify(info.blob_id)
    assert exc.value.code == "E-HASH-MISMATCH"


def test_bad_media_type(blobs):
    with pytest.raises(BadInput):
        _put(blobs, SMALL, "not a media type")
    assert blobs.ledger.log.head().seq == 0


def test_gc_removes_unreferenced_after_grace(ledger, blobs):
    small, _ = _put(blobs, SMALL)
    large, _ = _put(blobs, LARGE)
    # Within the grace period nothing goes.
    report = collect_garbage(blobs, min_age=3600)
    assert report.removed == [] and report.seq is not None
    assert audit_blobs(blobs).checked == 2
    report = collect_garbage(blobs, min_age=0)
    assert {r["blob_id"] for r in report.removed} == {small.blob_id, large.blob_id}
    assert report.bytes_freed == len(SMALL) + len(LARGE)
    gc_event = ledger.log.get(report.seq)
    assert gc_event.type == "blob.gc"
    assert gc_event.payload["bytes_freed"] == report.bytes_freed
    assert list(blobs.fs.stored()) == [] and list(blobs.lmdb.stored()) == []
    with pytest.raises(NotFound):
        blobs.info(small.blob_id)
    assert audit_blobs(blobs).ok


def test_gc_dry_run_changes_nothing(ledger, blobs):
    _put(blobs, SMALL)
    _put(blobs, LARGE)
    before = (ledger.log.head().seq, list(dump_tables(ledger)))
    report = collect_garbage(blobs, min_age=0, dry_run=True)
    assert len(report.removed) == 2 and report.seq is None
    assert (ledger.log.head().seq, list(dump_tables(ledger))) == before
    assert len(list(blobs.fs.stored())) == 1


def test_put_again_restarts_the_grace_period(blobs):
    info, _ = _put(blobs, SMALL)
    first = collect_garbage(blobs, min_age=0, dry_run=True).cutoff
    _put(blobs, SMALL)
    with blobs.ledger.store.read() as txn:
        assert blobs.index.blob(txn, info.blob_id).last_put_at > first


def test_gc_interrupted_after_commit_then_rerun(monkeypatch, blobs):
    ids = [_put(blobs, LARGE + bytes([i]))[0].blob_id for i in range(4)]
    calls = []
    real = type(blobs.fs).release

    def dying_release(self, blob_id):
        if calls:
            raise KeyboardInterrupt  # the process dies after the first unlink
        calls.append(blob_id)
        return real(self, blob_id)

    monkeypatch.setattr(type(blobs.fs), "release", dying_release)
    with pytest.raises(KeyboardInterrupt):
        collect_garbage(blobs, min_age=0)
    monkeypatch.undo()
    audit = audit_blobs(blobs)
    # Records are gone with the committed event; three files remain without a record.
    assert audit.bad == () and audit.checked == 0
    assert len(audit.orphans) == 3 and {b for _, b in audit.orphans} < set(ids)
    report = collect_garbage(blobs, min_age=0)
    assert report.orphans["files"] == 3 and report.removed == []
    assert audit_blobs(blobs).ok and list(blobs.fs.stored()) == []


def test_put_dying_before_commit_leaves_only_a_swept_file(blobs):
    staged = blobs.stage(io.BytesIO(LARGE))
    blobs.fs.persist(staged)  # file renamed into place, then the process died
    assert audit_blobs(blobs).orphans == (("fs", staged.blob_id),)
    assert collect_garbage(blobs, min_age=3600).orphans["files"] == 1
    assert audit_blobs(blobs).ok


def test_stale_temp_files_are_swept(blobs):
    path, f = blobs.fs.new_temp()
    f.write(b"partial")
    f.close()
    fresh, g = blobs.fs.new_temp()
    g.close()
    old = os.stat(path).st_mtime - TEMP_GRACE - 10
    os.utime(path, (old, old))
    report = collect_garbage(blobs, min_age=3600)
    assert report.orphans["temps"] == 1
    assert not path.exists() and fresh.exists()


def test_concurrent_puts_and_gc_stay_consistent(blobs):
    """GC with no grace period racing puts of the same file-tier blob: whatever the
    interleaving, every record keeps its data."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def putter() -> None:
        try:
            while not stop.is_set():
                _put(blobs, LARGE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=putter) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(15):
            collect_garbage(blobs, min_age=0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    audit = audit_blobs(blobs)
    assert audit.bad == () and audit.orphans == ()


def test_rebuild_equals_incremental(ledger, blobs):
    for i in range(10):
        _put(blobs, SMALL + bytes([i]))
        _put(blobs, LARGE + bytes([i]))
    _put(blobs, SMALL + b"\x00")
    collect_garbage(blobs, min_age=0)
    _put(blobs, SMALL + b"\x01")
    before = list(dump_tables(ledger))
    assert before
    report = rebuild(ledger, batch=7)
    assert report.events == ledger.log.head().seq + 1
    assert list(dump_tables(ledger)) == before
