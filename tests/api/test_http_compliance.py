"""The compliance routes: checkpoints, key rotation, replay, export, proofs, webhooks."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

from aiohttp import web

from ledger.chain import kid_for_key
from ledger.keys import load_private_key, load_public_key, write_keypair
from ledger.webhook_sig import verify_header
from projections.tcap import PackOptions, pack
from tests.api.conftest import bearer
from tests.conftest import TEST_KEY
from tests.forgery import rewrite_history


def _keypair(tmp_path):
    sk, pk = write_keypair(tmp_path / "sig", "svc")
    return sk, pk


async def _until(pred, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_checkpoints_over_http(make_client, tokens, ledger, tmp_path):
    sk, pk = _keypair(tmp_path)
    client = await make_client(signing_key=sk, checkpoint_every_events=None)
    ledger.log.append("att.issue", {"i": 1})
    res = await client.post("/v1/ledger/checkpoints", headers=bearer(tokens["admin"]))
    assert res.status == 201, await res.text()
    made = await res.json()
    assert made["checkpoint"]["seq"] == made["event_seq"] - 1
    res = await client.post("/v1/ledger/checkpoints", headers=bearer(tokens["auditor"]))
    assert res.status == 403
    res = await client.get("/v1/ledger/checkpoints", headers=bearer(tokens["reader"]))
    assert res.status == 403
    res = await client.get("/v1/ledger/checkpoints", headers=bearer(tokens["auditor"]))
    assert (await res.json())["checkpoints"] == [made]
    pub = base64.b64encode(load_public_key(pk)).decode()
    body = {"checkpoints": [made["checkpoint"]], "pubkey": pub}
    res = await client.post(
        "/v1/ledger/checkpoints/verify", json=body, headers=bearer(tokens["auditor"])
    )
    assert res.status == 200 and (await res.json())["ok"] is True
    rewrite_history(ledger.store, {kid_for_key(TEST_KEY): TEST_KEY}, 1, {"i": 2})
    res = await client.post(
        "/v1/ledger/checkpoints/verify", json=body, headers=bearer(tokens["auditor"])
    )
    assert res.status == 422
    assert (await res.json())["error"]["code"] == "E-CHAIN-BROKEN"


async def test_no_signing_key_is_503(make_client, tokens):
    client = await make_client()
    res = await client.post("/v1/ledger/checkpoints", headers=bearer(tokens["admin"]))
    assert res.status == 503 and (await res.json())["error"]["code"] == "E-KEY"


async def test_the_service_checkpoints_on_its_own(make_client, tokens, tmp_path):
    sk, _ = _keypair(tmp_path)
    client = await make_client(
        signing_key=sk, checkpoint_every_events=3, checkpoint_every_seconds=None
    )
    for i in range(3):
        res = await client.post(
            "/v1/events",
            json={"type": "att.issue", "payload": {"i": i}},
            headers=bearer(tokens["writer"]),
        )
        assert res.status == 201

    async def recorded() -> bool:
        res = await client.get("/v1/ledger/checkpoints", headers=bearer(tokens["auditor"]))
        return bool((await res.json())["checkpoints"])

    await _until(recorded)


async def test_rotate_key_over_http(make_client, tokens, ledger, tmp_path):
    client = await make_client()
    new = bytes(range(7, 39))
    key_file = tmp_path / "new.key"
    key_file.write_text(new.hex())
    res = await client.post(
        "/v1/ledger/rotate-key",
        json={"new_key_file": str(key_file)},
        headers=bearer(tokens["admin"]),
    )
    assert res.status == 200, await res.text()
    doc = await res.json()
    assert doc["new_kid"] == kid_for_key(new) and new.hex() not in json.dumps(doc)
    res = await client.post(
        "/v1/events", json={"type": "a.b", "payload": {}}, headers=bearer(tokens["writer"])
    )
    assert (await res.json())["kid"] == kid_for_key(new)  # the service writes on
    res = await client.post("/v1/ledger/verify", headers=bearer(tokens["auditor"]))
    assert res.status == 200 and len((await res.json())["kids"]) == 2
    head = ledger.log.head().seq
    # A missing file; a NUL in the path (schemathesis found it was a 500); a device that
    # never ends (read bounded, not into memory); a file that is not a key.
    (tmp_path / "big.key").write_bytes(b"ab" * 40_000)
    for name in [str(tmp_path / "missing"), "key\x00file", "/dev/zero", str(tmp_path / "big.key")]:
        res = await client.post(
            "/v1/ledger/rotate-key", json={"new_key_file": name}, headers=bearer(tokens["admin"])
        )
        assert res.status == 400 and (await res.json())["error"]["code"] == "E-KEY", name
    assert ledger.log.head().seq == head


async def test_replay_over_http_names_an_edited_row(client, tokens, ledger):
    ledger.log.append("att.issue", {})
    res = await client.post("/v1/audit/replay", headers=bearer(tokens["auditor"]))
    assert res.status == 200, await res.text()
    assert (await res.json())["ok"] is True
    db = ledger.store.db("proj_tokens")
    with ledger.store.write() as txn:
        txn.put(b"x-injected", b"1", db=db)
    res = await client.post("/v1/audit/replay", headers=bearer(tokens["auditor"]))
    assert res.status == 422
    err = (await res.json())["error"]
    assert err["code"] == "E-HASH-MISMATCH"
    rows = [r for t in err["details"]["report"]["tables"] for r in t["rows"]]
    assert rows == [
        {
            "table": "proj_tokens",
            "kind": "extra",
            "key": "x-injected",
            "key_hex": b"x-injected".hex(),
            "live_b3": rows[0]["live_b3"],
            "replayed_b3": None,
        }
    ]
    res = await client.post(
        "/v1/audit/replay", json={"to": 1, "as_of": "2020-01-01T00:00:00Z"},
        headers=bearer(tokens["auditor"]),
    )  # fmt: skip
    assert res.status == 400
    res = await client.post(
        "/v1/audit/replay", json={"as_of": "2000-01-01T00:00:00Z"},
        headers=bearer(tokens["auditor"]),
    )  # fmt: skip
    assert res.status == 404
    res = await client.post("/v1/audit/replay", json={"to": 1}, headers=bearer(tokens["auditor"]))
    assert res.status == 200 and (await res.json())["compared_with_live"] is False


async def test_export_and_verify_over_http(make_client, tokens, ledger):
    client = await make_client()
    res = await client.get("/v1/audit/export", headers=bearer(tokens["auditor"]))
    assert res.status == 503 and (await res.json())["error"]["code"] == "E-KEY"
    ledger.data.export_key_file.parent.mkdir(parents=True, exist_ok=True)
    ledger.data.export_key_file.write_text("cd" * 32)
    for i in range(4):
        ledger.log.append("att.issue", {"i": i})
    res = await client.get("/v1/audit/export?from=1", headers=bearer(tokens["auditor"]))
    assert res.status == 200 and res.headers["Content-Type"] == "application/x-ndjson"
    body = await res.read()
    lines = body.splitlines(keepends=True)
    assert [json.loads(x)["seq"] for x in lines] == list(range(1, ledger.log.head().seq + 1))
    res = await client.post("/v1/audit/verify-jsonl", data=body, headers=bearer(tokens["auditor"]))
    assert res.status == 200 and (await res.json())["lines"] == len(lines)
    res = await client.post(
        "/v1/audit/verify-jsonl", data=lines[2], headers=bearer(tokens["auditor"])
    )
    assert res.status == 200 and (await res.json())["lines"] == 1
    edited = lines[-2].replace(b'"i":', b'"j":')
    assert edited != lines[-2]
    res = await client.post(
        "/v1/audit/verify-jsonl", data=edited, headers=bearer(tokens["auditor"])
    )
    assert res.status == 422 and (await res.json())["error"]["code"] == "E-SIGNATURE-INVALID"


async def test_prove_and_check_over_http(client, tokens, ledger, tmp_path):
    sk, pk = _keypair(tmp_path)
    for i in range(9):
        ledger.log.append("att.issue", {"i": i})
    capsule = tmp_path / "c.tcap"
    pack(ledger.log, capsule, load_private_key(sk), PackOptions())
    span = ledger.log.get(5).id
    res = await client.post(
        f"/v1/capsules/prove?span_id={span}",
        data=capsule.read_bytes(),
        headers=bearer(tokens["reader"]),
    )
    assert res.status == 200, await res.text()
    proof = await res.json()
    pub = base64.b64encode(load_public_key(pk)).decode()
    res = await client.post(
        "/v1/capsules/check-proof",
        params={"span_id": span, "pubkey": pub},
        json=proof,
        headers=bearer(tokens["reader"]),
    )
    assert res.status == 200 and (await res.json())["event"]["seq"] == 5
    res = await client.post(
        "/v1/capsules/check-proof",
        params={"span_id": ledger.log.get(6).id},
        json=proof,
        headers=bearer(tokens["reader"]),
    )
    assert res.status == 422 and (await res.json())["error"]["code"] == "E-VERIFY-FAILED"
    proof["path"][0] = "0" * 64
    res = await client.post(
        "/v1/capsules/check-proof", json=proof, headers=bearer(tokens["reader"])
    )
    assert res.status == 422 and (await res.json())["error"]["code"] == "E-HASH-MISMATCH"
    res = await client.post(
        "/v1/capsules/prove?span_id=ev-nope", data=capsule.read_bytes(),
        headers=bearer(tokens["reader"]),
    )  # fmt: skip
    assert res.status == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhooks_over_http_deliver_signed_events(make_client, tokens, ledger):
    client = await make_client()
    got: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), request.headers["X-Cap-Signature"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        res = await client.post(
            "/v1/webhooks",
            json={"url": f"http://127.0.0.1:{port}/hook", "types": ["att.*"], "name": "h"},
            headers=bearer(tokens["admin"]),
        )
        assert res.status == 201, await res.text()
        made = await res.json()
        secret = made["secret"].encode()
        sub_event = ledger.log.get(made["seq"])
        assert made["secret"] not in json.dumps(sub_event.payload)
        path = ledger.data.keys / "webhooks"
        [file] = list(path.iterdir())
        assert file.stat().st_mode & 0o077 == 0 and file.read_text().strip() == made["secret"]
        res = await client.post(
            "/v1/webhooks", json={"url": "http://x/", "types": ["*"], "name": "h"},
            headers=bearer(tokens["admin"]),
        )  # fmt: skip
        assert res.status == 409 and len(list(path.iterdir())) == 1
        for i in range(3):
            res = await client.post(
                "/v1/events",
                json={"type": "att.issue", "payload": {"i": i}},
                headers=bearer(tokens["writer"]),
            )
            assert res.status == 201

        async def delivered() -> bool:
            return len(got) >= 3

        await _until(delivered)
        for body, header in got:
            verify_header(secret, body, header)
        assert [json.loads(b)["payload"]["i"] for b, _ in got] == [0, 1, 2]
        res = await client.get("/v1/webhooks", headers=bearer(tokens["admin"]))
        [listed] = (await res.json())["webhooks"]
        assert listed["id"] == "h" and listed["pending"] == 0
        res = await client.get("/v1/webhooks", headers=bearer(tokens["auditor"]))
        assert res.status == 403
        res = await client.get("/v1/webhooks/h/pending", headers=bearer(tokens["admin"]))
        assert (await res.json())["pending"] == []
        res = await client.delete("/v1/webhooks/h", headers=bearer(tokens["admin"]))
        assert res.status == 200 and not list(path.iterdir())
        res = await client.delete("/v1/webhooks/h", headers=bearer(tokens["admin"]))
        assert res.status == 404
    finally:
        await runner.cleanup()


async def test_webhook_with_unparseable_url_is_bad_input_and_leaves_no_secret(
    make_client, tokens, ledger
):
    """Schemathesis found this body answered 500: urlsplit raised on the "]" in the host."""
    client = await make_client()
    head = ledger.log.head().seq
    res = await client.post(
        "/v1/webhooks",
        json={"url": "https://\u00eb<]~\u023e\u00b40\U000c48a9\u00e2/x", "types": ["*"]},
        headers=bearer(tokens["admin"]),
    )
    assert res.status == 400
    assert (await res.json())["error"]["code"] == "E-BAD-INPUT"
    assert ledger.log.head().seq == head
    secrets_dir = ledger.data.keys / "webhooks"
    assert not secrets_dir.exists() or not list(secrets_dir.iterdir())
