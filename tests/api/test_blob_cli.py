"""``cap-agent blob ...`` as a user runs it: output shapes, exit codes, kill -9 during GC."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ledger.blob_audit import audit_blobs
from ledger.blobs import BlobStore
from ledger.datadir import DataDir
from ledger.keys import StaticKeyProvider, load_hmac_key_file
from ledger.ledger import Ledger
from projections import default_consumers
from projections.blobs import BlobsView
from tests.conftest import REPO, cli_env


def _open(root: Path) -> Ledger:
    data = DataDir(root)
    keys = StaticKeyProvider(load_hmac_key_file(data.hmac_key_file))
    return Ledger.open(data, keys, default_consumers(data))


def test_put_get_ls_gc(cli, tmp_path):
    src = tmp_path / "v.wasm"
    src.write_bytes(b"\0asm" + bytes(400_000))
    put = cli("--json", "blob", "put", "--file", str(src), "--type", "application/wasm")
    assert put.code == 0, put.err
    doc = put.json()
    for field in ("blob_id", "size", "media_type", "refcount", "sha3_256", "created_at"):
        assert field in doc
    assert doc["size"] == 400_004 and doc["tier"] == "fs" and doc["refcount"] == 0
    plain = cli("blob", "put", "--file", str(src))
    assert plain.out.strip() == doc["blob_id"]

    out = tmp_path / "back.wasm"
    got = cli("blob", "get", "--id", doc["blob_id"], "--out", str(out))
    assert got.code == 0, got.err
    assert out.read_bytes() == src.read_bytes()

    ls = cli("--json", "blob", "ls")
    assert [b["blob_id"] for b in ls.json()["blobs"]] == [doc["blob_id"]]
    assert ls.json()["blobs"][0]["puts"] == 2
    human = cli("blob", "ls", "--unreferenced")
    assert doc["blob_id"] in human.out and "REFS" in human.out

    dry = cli("--json", "blob", "gc", "--dry-run", "--min-age", "0")
    assert dry.json()["count"] == 1 and dry.json()["seq"] is None
    assert cli("--json", "blob", "ls").json()["blobs"]
    gc = cli("--json", "blob", "gc", "--min-age", "0")
    assert gc.json()["count"] == 1 and gc.json()["bytes_freed"] == 400_004
    assert cli("--json", "blob", "ls").json()["blobs"] == []
    types = [e["type"] for e in cli("--json", "ledger", "log").lines()]
    assert types == ["ledger.genesis", "blob.put", "blob.put", "blob.gc"]


def test_missing_and_bad_ids(cli, tmp_path):
    res = cli("blob", "get", "--id", "ab" * 32, "--out", str(tmp_path / "x"))
    assert res.code == 3 and "error[E-BLOB-MISSING]" in res.err and "Traceback" not in res.err
    res = cli("--json", "blob", "get", "--id", "nope", "--out", str(tmp_path / "x"))
    assert res.code == 2 and '"E-BAD-INPUT"' in res.err
    res = cli("blob", "put", "--file", str(tmp_path / "absent"))
    assert res.code == 2 and "E-BAD-INPUT" in res.err
    res = cli("blob", "put", "--file", "-", "--type", "bad", stdin=b"x")
    assert res.code == 2


def test_hash_mismatch_exit_code(cli, tmp_path):
    src = tmp_path / "big"
    src.write_bytes(os.urandom(300_000))
    blob_id = cli("blob", "put", "--file", str(src)).out.strip()
    stored = Path(cli.root) / "blobs" / blob_id[:2] / blob_id
    data = bytearray(stored.read_bytes())
    data[7] ^= 1
    stored.write_bytes(bytes(data))
    out = tmp_path / "out"
    res = cli("blob", "get", "--id", blob_id, "--out", str(out))
    assert res.code == 1 and "error[E-HASH-MISMATCH]" in res.err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["big", "cli"]


def _file_count(root: Path) -> int:
    blobs = root / "blobs"
    return sum(len(os.listdir(d)) for d in blobs.iterdir() if len(d.name) == 2)


def test_gc_killed_then_rerun_is_consistent(cli):
    """SIGKILL a GC early (before its event) and while it unlinks files (after its event):
    no record ever loses its data, and a rerun removes what the killed run left."""
    root = Path(cli.root)
    env = cli_env(root, CAP_BLOB_INLINE_MAX="16")
    left_behind = 0
    for attempt, when in enumerate(("early", "unlinking", "unlinking")):
        with _open(root) as led:
            store = BlobStore(led, BlobsView(led.store), inline_max=16)
            for i in range(300):
                store.put(io.BytesIO(b"blob %04d of attempt %d" % (i, attempt)))
        before = _file_count(root)
        proc = subprocess.Popen(
            [sys.executable, "-m", "api", "blob", "gc", "--min-age", "0"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        if when == "early":
            time.sleep(0.05)
        else:
            while _file_count(root) >= before and time.monotonic() < deadline:
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with _open(root) as led:
            led.log.verify()
            audit = audit_blobs(BlobStore(led, BlobsView(led.store), inline_max=16))
            assert audit.bad == (), "a record lost its data"
            left_behind += len(audit.orphans)
    assert left_behind > 0, "no kill landed between the GC event and its unlinks"
    res = subprocess.run(
        [sys.executable, "-m", "api", "--json", "blob", "gc", "--min-age", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
    )
    assert res.returncode == 0, res.stderr
    with _open(root) as led:
        led.log.verify()
        store = BlobStore(led, BlobsView(led.store), inline_max=16)
        audit = audit_blobs(store)
        assert audit.ok and audit.checked == 0
        assert list(store.fs.stored()) == []
