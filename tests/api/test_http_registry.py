"""``/v1/registry/entries``: multipart add (with and without self-verification), show,
list with filters, as-of and a cursor, exec on the sandbox pool, and bad multipart bodies."""

from __future__ import annotations

import aiohttp
import pytest

from api.http.state import SERVICES
from ledger.keys import write_keypair
from tests.api.conftest import bearer
from tests.ledger.sandbox_support import example
from tests.registry_support import _parts


@pytest.fixture
async def reg_client(make_client, tmp_path):
    sk, _ = write_keypair(tmp_path / "keys", "svc")
    return await make_client(signing_key=sk, max_blob_bytes=1 << 20)


def form(parts: dict[str, bytes], **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    names = {"wasm": "verifier"}
    for part, content in parts.items():
        data.add_field(names.get(part, part), content, filename=part)
    for k, v in fields.items():
        data.add_field(k, v)
    return data


def example_parts() -> dict[str, bytes]:
    p = example()
    return {"manifest": p.manifest, "proof": p.proof, "wasm": p.wasm, "abi": p.abi}


async def add(client, token, parts, **fields):
    return await client.post(
        "/v1/registry/entries", data=form(parts, **fields), headers=bearer(token)
    )


async def test_add_show_list_and_as_of(reg_client, ledger, tokens):
    before = ledger.log.head().seq
    resp = await add(reg_client, tokens["writer"], _parts("a", "age-check", 32))
    assert resp.status == 201, await resp.text()
    entry = await resp.json()
    assert entry["verifier_name"] == "age-check" and entry["selfverify_status"] == "unknown"
    assert ledger.log.get(entry["seq"]).type == "registry.add"
    reader = bearer(tokens["reader"])

    shown = await (
        await reg_client.get(f"/v1/registry/entries/{entry['id']}", headers=reader)
    ).json()
    assert shown["id"] == entry["id"] and shown["blob_wasm"] == entry["blob_wasm"]
    resp = await reg_client.get(
        f"/v1/registry/entries/{entry['id']}?as_of={before}", headers=reader
    )
    assert resp.status == 404

    await add(reg_client, tokens["writer"], _parts("b", "other", 32))
    page = await (await reg_client.get("/v1/registry/entries", headers=reader)).json()
    assert len(page["entries"]) == 2 and page["next"] is None
    only = await (
        await reg_client.get("/v1/registry/entries?verifier_name=other", headers=reader)
    ).json()
    assert [e["verifier_name"] for e in only["entries"]] == ["other"]
    then = await (
        await reg_client.get(f"/v1/registry/entries?as_of={entry['seq']}", headers=reader)
    ).json()
    assert [e["id"] for e in then["entries"]] == [entry["id"]]
    first = await (await reg_client.get("/v1/registry/entries?limit=1", headers=reader)).json()
    assert first["next"] is not None
    rest = await (
        await reg_client.get(
            "/v1/registry/entries", params={"cursor": first["next"]}, headers=reader
        )
    ).json()
    assert len(first["entries"] + rest["entries"]) == 2


async def test_selfverify_and_exec_on_the_sandbox_pool(reg_client, ledger, tokens):
    resp = await add(reg_client, tokens["writer"], example_parts(), selfverify="true")
    doc = await resp.json()
    assert resp.status == 201, doc
    assert doc["selfverify_status"] == "ok" and doc["selfverify"]["status"] == "ok"

    resp = await reg_client.post(
        f"/v1/registry/entries/{doc['id']}/exec", headers=bearer(tokens["writer"])
    )
    run = await resp.json()
    assert resp.status == 200 and run["status"] == "ok"
    assert ledger.log.get(run["seq"]).type == "selfverify.result"

    resp = await reg_client.post(
        f"/v1/registry/entries/{doc['id']}/exec",
        json={"fuel": 1000},
        headers=bearer(tokens["writer"]),
    )
    run = await resp.json()
    assert resp.status == 200
    assert (run["status"], run["code"]) == ("fail", "E-SANDBOX-OUT-OF-FUEL")
    assert ledger.log.get(run["seq"]).payload["code"] == "E-SANDBOX-OUT-OF-FUEL"

    metrics = reg_client.app[SERVICES].metrics.render().decode()
    assert 'cap_sandbox_runs_total{outcome="ok"} 2.0' in metrics
    assert 'cap_sandbox_runs_total{outcome="E-SANDBOX-OUT-OF-FUEL"} 1.0' in metrics


async def test_exec_unknown_entry_is_404(reg_client, tokens):
    resp = await reg_client.post("/v1/registry/entries/nope/exec", headers=bearer(tokens["writer"]))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "E-NOT-FOUND"


async def test_bad_limits_are_400(reg_client, tokens):
    resp = await reg_client.post(
        "/v1/registry/entries/x/exec", json={"fuel": 0}, headers=bearer(tokens["writer"])
    )
    assert resp.status == 400
    resp = await add(reg_client, tokens["writer"], _parts("c", "n", 32), fuel="10")
    assert resp.status == 400  # limits without selfverify
    assert "selfverify" in (await resp.json())["error"]["message"]


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda p: {k: v for k, v in p.items() if k != "proof"}, "lacks proof"),
        (lambda p: {**p, "extra": b"x"}, "unknown multipart part"),
    ],
)
async def test_bad_multipart_is_400(reg_client, ledger, tokens, mutate, why):
    head = ledger.log.head().seq
    resp = await add(reg_client, tokens["writer"], mutate(_parts("d", "n", 32)))
    assert resp.status == 400
    err = (await resp.json())["error"]
    assert err["code"] == "E-BAD-INPUT" and why in err["message"]
    assert ledger.log.head().seq == head


async def test_not_multipart_and_broken_multipart_are_400(reg_client, tokens):
    h = bearer(tokens["writer"])
    resp = await reg_client.post("/v1/registry/entries", json={"manifest": "x"}, headers=h)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"
    for body in (
        b"--XYZ\r\nContent-Disposition: form-data; name=manifest\r\n\r\ntrunc",
        b"--XYZ\r\n-1884--XYZ--\r\n",  # a part whose header line is garbage
    ):
        resp = await reg_client.post(
            "/v1/registry/entries",
            data=body,
            headers={**h, "Content-Type": "multipart/form-data; boundary=XYZ"},
        )
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_part_over_the_limit_is_413(make_client, tmp_path, tokens):
    sk, _ = write_keypair(tmp_path / "k2", "svc")
    client = await make_client(signing_key=sk, max_blob_bytes=64)
    parts = _parts("e", "n", 32)
    parts["proof"] = b"p" * 1000
    resp = await add(client, tokens["writer"], parts)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"


async def test_bad_abi_is_422(reg_client, tokens):
    parts = _parts("f", "n", 32)
    parts["abi"] = b"{not json"
    resp = await add(reg_client, tokens["writer"], parts)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "E-ABI-INVALID"
