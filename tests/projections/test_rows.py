"""Every row the projections store is canonical msgpack (they pack rows as built)."""

from __future__ import annotations

import io

from nacl.signing import SigningKey

from api.services import registry
from ledger.blob_gc import collect_garbage
from ledger.canonical import packb, unpackb
from ledger.keys import Ed25519Keypair
from projections.rebuild import dump_tables
from tests.registry_support import package

AT = "2026-01-02T00:00:00Z"


def test_every_stored_row_is_canonical(ledger):
    reg = registry(ledger)
    key = Ed25519Keypair("k", SigningKey(bytes(32)))
    a, _ = reg.add(package("a"), key)
    b, _ = reg.add(
        package("b"), key, selfverify=lambda *_: {"status": "ok", "at": "2026-01-01T00:00:00Z"}
    )
    reg.revoke(a["id"], reason="r")
    reg.record_selfverify(
        b["id"], {"status": "fail", "code": "E-VERIFY-FAILED", "at": "2026-01-02T00:00:00Z"}
    )
    reg.blobs.put(io.BytesIO(b"x"))
    reg.blobs.put(io.BytesIO(b"x"))
    collect_garbage(reg.blobs, min_age=0)
    checked = 0
    for table, key_, value in dump_tables(ledger, ["blobs", "registry"]):
        if table == "proj_registry" or key_.startswith(b"b/"):
            assert packb(unpackb(value)) == value
            checked += 1
    assert checked == 6  # b's four blobs (a's went with GC) and both entries
