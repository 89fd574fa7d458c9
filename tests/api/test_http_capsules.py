"""``/v1/capsules``: export a sealed capsule and verify it; corrupt and bad requests."""

from __future__ import annotations

import pytest

from ledger.keys import write_keypair
from projections.tcap import verify_capsule
from tests.api.conftest import bearer


@pytest.fixture
async def capsule_client(make_client, tmp_path):
    sk, _ = write_keypair(tmp_path / "keys", "svc")
    return await make_client(signing_key=sk)


async def test_export_then_verify_round_trip(capsule_client, ledger, tokens, tmp_path):
    for i in range(20):
        ledger.log.append("cap.ev", {"i": i})
    resp = await capsule_client.get(
        "/v1/capsules",
        params={"from": 1, "format": "cbor", "compression": "zstd"},
        headers=bearer(tokens["auditor"]),
    )
    assert resp.status == 200
    data = await resp.read()
    assert len(data) == int(resp.headers["Content-Length"])
    saved = tmp_path / "got.tcap"
    saved.write_bytes(data)
    report = verify_capsule(saved)  # the same check `tcap verify` runs
    assert report.blocks == ledger.log.head().seq
    assert report.capsule_b3 == resp.headers["X-Capsule-B3"]
    assert not list((ledger.data.cache / "http").iterdir())  # the scratch file is gone

    resp = await capsule_client.post(
        "/v1/capsules/verify", data=data, headers=bearer(tokens["reader"])
    )
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc["ok"] is True and doc["blocks"] == report.blocks

    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0x01
    resp = await capsule_client.post(
        "/v1/capsules/verify", data=bytes(bad), headers=bearer(tokens["reader"])
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] in ("E-CAPSULE-CORRUPT", "E-SIGNATURE-INVALID")


async def test_type_filter_exports_only_those_events(capsule_client, ledger, tokens, tmp_path):
    ledger.log.append("keep.ev", {})
    ledger.log.append("drop.ev", {})
    resp = await capsule_client.get("/v1/capsules?type=keep.*", headers=bearer(tokens["auditor"]))
    path = tmp_path / "k.tcap"
    path.write_bytes(await resp.read())
    assert verify_capsule(path).blocks == 1


@pytest.mark.parametrize("query", ["from=5&to=2", "format=xml", "compression=lz4", "from=-1"])
async def test_bad_export_queries_are_400(capsule_client, tokens, query):
    resp = await capsule_client.get(f"/v1/capsules?{query}", headers=bearer(tokens["auditor"]))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_garbage_upload_is_corrupt(capsule_client, tokens):
    resp = await capsule_client.post(
        "/v1/capsules/verify", data=b"not a capsule", headers=bearer(tokens["reader"])
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "E-CAPSULE-CORRUPT"


async def test_export_without_a_signing_key_is_503(client, tokens):
    resp = await client.get("/v1/capsules", headers=bearer(tokens["auditor"]))
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "E-KEY"
