"""Projections: a projection that is behind catches up on open; status and rebuild CLI."""

from __future__ import annotations

import io

from nacl.signing import SigningKey

from api.services import registry
from ledger.keys import Ed25519Keypair
from ledger.ledger import Ledger
from projections import default_consumers
from projections.rebuild import dump_tables, rebuildable, status
from tests.registry_support import package

KEY = Ed25519Keypair("k", SigningKey(bytes(32)))


def test_behind_projection_catches_up_on_open(data_dir, keys):
    with Ledger.open(data_dir, keys, default_consumers(data_dir)) as led:
        reg = registry(led)
        entry, _ = reg.add(package("a"), KEY)
        reg.blobs.put(io.BytesIO(b"loose"))
        reg.revoke(entry["id"])
        before = list(dump_tables(led))
        head = led.log.head().seq
        # Lose the projections' tables and checkpoints, as if they were added later.
        with led.store.write() as txn:
            for c in rebuildable(led):
                for name in c.dbs:
                    txn.drop(led.store.db(name), delete=False)
                led.log.set_checkpoint(txn, c.name, None)
        assert list(dump_tables(led)) == []
        assert {s.name: s.lag for s in status(led)}["registry"] == head + 1
    with Ledger.open(data_dir, keys, default_consumers(data_dir)) as led:
        assert list(dump_tables(led)) == before
        assert all(s.lag == 0 and s.checkpoint == head for s in status(led))


def test_status_and_rebuild_cli(cli):
    assert cli("blob", "put", "--file", "-", stdin=b"data").code == 0
    st = cli("--json", "projections", "status").json()["projections"]
    by_name = {p["name"]: p for p in st}
    assert by_name["blobs"]["checkpoint"] == 1 and by_name["blobs"]["lag"] == 0
    assert by_name["registry"]["tables"] == ["proj_registry", "proj_registry_hist"]
    assert "LAG" in cli("projections", "status").out
    rb = cli("--json", "projections", "rebuild")
    assert rb.code == 0, rb.err
    assert rb.json()["events"] == 2 and "blobs" in rb.json()["projections"]
    only = cli("--json", "projections", "rebuild", "--name", "registry").json()
    assert only["projections"] == ["registry"]
    bad = cli("projections", "rebuild", "--name", "nope")
    assert bad.code == 3 and "E-NOT-FOUND" in bad.err
    assert cli("--json", "blob", "ls").json()["blobs"][0]["puts"] == 1
