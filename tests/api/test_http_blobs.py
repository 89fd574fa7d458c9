"""``/v1/blobs``: put, get/head with ETag and Range, list with a cursor, GC, limits, errors."""

from __future__ import annotations

import os

import aiohttp
import pytest
from blake3 import blake3

from api.services import blob_store
from tests.api.conftest import bearer

SMALL = b"hello blob\n"
BIG = os.urandom(300 * 1024)  # past the LMDB tier's inline limit: the file tier


async def put(client, token, data, media="text/plain", **headers):
    return await client.put(
        "/v1/blobs", data=data, headers={**bearer(token), "Content-Type": media, **headers}
    )


@pytest.mark.parametrize("data", [SMALL, BIG, b""], ids=["small", "file-tier", "empty"])
async def test_put_then_get_round_trips(client, ledger, tokens, data):
    resp = await put(client, tokens["writer"], data, "application/x-test")
    assert resp.status == 201
    doc = await resp.json()
    assert doc["blob_id"] == blake3(data).hexdigest()
    assert (doc["size"], doc["media_type"]) == (len(data), "application/x-test")
    assert ledger.log.get(doc["seq"]).type == "blob.put"
    assert resp.headers["Location"] == f"/v1/blobs/{doc['blob_id']}"

    got = await client.get(f"/v1/blobs/{doc['blob_id']}", headers=bearer(tokens["reader"]))
    assert got.status == 200
    assert await got.read() == data
    assert got.headers["ETag"] == f'"{doc["blob_id"]}"'
    assert got.headers["Content-Type"] == "application/x-test"
    assert int(got.headers["Content-Length"]) == len(data)


async def test_head_has_headers_only(client, tokens):
    blob_id = (await (await put(client, tokens["writer"], BIG)).json())["blob_id"]
    resp = await client.head(f"/v1/blobs/{blob_id}", headers=bearer(tokens["reader"]))
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) == len(BIG)
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert await resp.read() == b""


@pytest.mark.parametrize(
    ("header", "lo", "hi"),
    [
        ("bytes=10-19", 10, 20),
        ("bytes=-5", len(BIG) - 5, len(BIG)),
        ("bytes=299000-", 299000, len(BIG)),
        ("bytes=1048570-1048580", None, None),
    ],
)
async def test_range_requests(client, tokens, header, lo, hi):
    blob_id = (await (await put(client, tokens["writer"], BIG)).json())["blob_id"]
    resp = await client.get(
        f"/v1/blobs/{blob_id}", headers={**bearer(tokens["reader"]), "Range": header}
    )
    if lo is None:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{len(BIG)}"
        return
    assert resp.status == 206
    assert await resp.read() == BIG[lo:hi]
    assert resp.headers["Content-Range"] == f"bytes {lo}-{hi - 1}/{len(BIG)}"


async def test_if_none_match_is_304(client, tokens):
    blob_id = (await (await put(client, tokens["writer"], SMALL)).json())["blob_id"]
    resp = await client.get(
        f"/v1/blobs/{blob_id}",
        headers={**bearer(tokens["reader"]), "If-None-Match": f'"{blob_id}"'},
    )
    assert resp.status == 304


async def test_unknown_and_malformed_ids(client, tokens):
    resp = await client.get(f"/v1/blobs/{'ab' * 32}", headers=bearer(tokens["reader"]))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "E-BLOB-MISSING"
    resp = await client.get("/v1/blobs/not-hex", headers=bearer(tokens["reader"]))
    assert resp.status == 404  # the route only matches blob ids
    assert (await resp.json())["error"]["code"] == "E-NOT-FOUND"


async def test_too_large_is_413_with_length_and_when_chunked(make_client, ledger, tokens):
    client = await make_client(max_blob_bytes=1000)
    head = ledger.log.head().seq
    resp = await put(client, tokens["writer"], b"x" * 2000)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"

    async def chunks():
        for _ in range(10):
            yield b"y" * 500

    resp = await put(client, tokens["writer"], chunks())
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"
    assert ledger.log.head().seq == head


async def test_bad_media_type_is_400(client, tokens):
    resp = await put(client, tokens["writer"], SMALL, "not a media type")
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_list_pages_and_bad_cursor(client, tokens):
    ids = set()
    for i in range(7):
        ids.add((await (await put(client, tokens["writer"], b"%d" % i)).json())["blob_id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        doc = await (
            await client.get("/v1/blobs", params=params, headers=bearer(tokens["reader"]))
        ).json()
        seen += [b["blob_id"] for b in doc["blobs"]]
        cursor = doc["next"]
        if cursor is None:
            break
    assert seen == sorted(ids)
    resp = await client.get("/v1/blobs?cursor=zz", headers=bearer(tokens["reader"]))
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_gc_dry_run_then_real(client, ledger, tokens):
    blob_id = (await (await put(client, tokens["writer"], SMALL)).json())["blob_id"]
    admin = bearer(tokens["admin"])
    resp = await client.post("/v1/blobs/gc", json={"dry_run": True, "min_age": 0}, headers=admin)
    doc = await resp.json()
    assert resp.status == 200 and doc["dry_run"] is True
    assert [r["blob_id"] for r in doc["removed"]] == [blob_id]
    resp = await client.post("/v1/blobs/gc", json={"min_age": 0}, headers=admin)
    doc = await resp.json()
    assert doc["count"] == 1 and ledger.log.get(doc["seq"]).type == "blob.gc"
    resp = await client.get(f"/v1/blobs/{blob_id}", headers=bearer(tokens["reader"]))
    assert resp.status == 404


async def test_corrupted_bytes_are_never_served_whole(client, ledger, tokens):
    blob_id = (await (await put(client, tokens["writer"], BIG)).json())["blob_id"]
    path = blob_store(ledger).fs.path(blob_id)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    resp = await client.get(f"/v1/blobs/{blob_id}", headers=bearer(tokens["reader"]))
    assert resp.status == 200  # headers went out before the last chunk was checked
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
