"""Access logs (JSON, request id, never a token), /metrics, /openapi.json."""

from __future__ import annotations

import asyncio
import json
import select

import pytest
import structlog

from api.http.accesslog import ACCESS_LOG, AccessLog
from api.http.app import all_routes
from ledger.logs import configure_logging
from tests.api.conftest import bearer


async def test_access_log_is_json_with_request_id_and_no_token(make_client, tokens, capsys):
    saved = structlog.get_config()
    configure_logging("json", "info")  # before the app, as `serve` does: it binds its logger
    try:
        client = await make_client()
        resp = await client.get(
            "/v1/ledger/head", headers={**bearer(tokens["reader"]), "X-Request-Id": "abc-123"}
        )
        assert resp.headers["X-Request-Id"] == "abc-123"
        resp = await client.get("/v1/ledger/head", headers=bearer(tokens["reader"] + "x"))
        generated = resp.headers["X-Request-Id"]
        assert len(generated) == 32
        await asyncio.sleep(AccessLog.FLUSH_S * 3)  # buffered: out within FLUSH_S
    finally:
        structlog.configure(**saved)  # later tests must not write to this test's capture
    err = capsys.readouterr()
    lines = [json.loads(x) for x in (err.err + err.out).splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("event") == "http.request"]
    assert [x["request_id"] for x in access] == ["abc-123", generated]
    assert access[0]["status"] == 200 and access[0]["token_name"] == "t-reader"
    assert access[1]["status"] == 401 and access[1]["token_name"] is None
    assert access[0]["route"] == "/v1/ledger/head"
    for secret in tokens.values():
        assert secret not in err.err + err.out
        assert secret.split("_", 2)[2] not in err.err + err.out


class _Writes:
    """Stands in for the log output: records each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def msg(self, message: str) -> None:
        self.writes.append(message + "\n")


@pytest.fixture
def json_logs():
    """JSON logging as `serve` configures it (before the app: it binds its logger),
    restored afterwards so later tests do not write to this one's output."""
    saved = structlog.get_config()
    configure_logging("json", "info")
    yield
    structlog.configure(**saved)


async def _recorded(make_client):
    """A client whose access log writes go to a :class:`_Writes`."""
    client = await make_client()
    out = client.app[ACCESS_LOG]._out = _Writes()
    return client, out


async def test_access_lines_are_written_whole_in_pipe_sized_writes(make_client, tokens, json_logs):
    client, out = await _recorded(make_client)
    h = bearer(tokens["reader"])
    paths = [f"/v1/nothing/{'x' * (i % 300)}" for i in range(60)]
    for path in paths:
        await client.get(path, headers=h)
    assert out.writes, "a full buffer is written without waiting for the timer"
    await client.close()  # the service stops: what is left is flushed
    assert len(out.writes) < len(paths) / 3  # several lines a write
    assert all(len(w.encode()) <= select.PIPE_BUF for w in out.writes)
    lines = [json.loads(x) for w in out.writes for x in w.splitlines()]  # whole lines only
    assert [x["path"] for x in lines] == paths
    assert all(x["event"] == "http.request" and x["status"] == 404 for x in lines)


async def test_one_line_longer_than_a_pipe_write_is_written_alone(make_client, tokens, json_logs):
    client, out = await _recorded(make_client)
    h = bearer(tokens["reader"])
    await client.get("/v1/short", headers=h)
    await client.get("/v1/" + "y" * 5000, headers=h)
    await client.get("/v1/after", headers=h)
    await asyncio.sleep(AccessLog.FLUSH_S * 3)
    paths = [[json.loads(x)["path"][:8] for x in w.splitlines()] for w in out.writes]
    assert paths == [["/v1/shor"], ["/v1/yyyy"], ["/v1/afte"]]


async def test_request_id_refuses_odd_values(client, tokens):
    resp = await client.get("/healthz", headers={"X-Request-Id": "a b\tc" * 20})
    assert resp.headers["X-Request-Id"] != "a b\tc" * 20


async def test_metrics_count_requests_events_and_latency(client, tokens):
    h = bearer(tokens["writer"])
    await client.post("/v1/events", json={"type": "m.ev", "payload": {}}, headers=h)
    await client.get("/v1/ledger/head", headers=h)
    await client.get("/v1/nothing-here", headers=h)
    resp = await client.get("/metrics", headers=bearer(tokens["reader"]))
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'cap_events_appended_total{type="user"} 1.0' in text
    assert 'cap_http_requests_total{method="POST",route="/v1/events",status="201"} 1.0' in text
    assert 'cap_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert "cap_append_latency_seconds_count 1.0" in text
    assert 'cap_projection_lag_events{projection="tokens"} 0.0' in text
    assert "cap_sandbox_runs" in text


async def test_openapi_is_generated_from_the_declarations(client, tokens):
    resp = await client.get("/openapi.json", headers=bearer(tokens["reader"]))
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    declared = {(r.method.lower(), r.path) for r in all_routes()}
    published = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert published == declared
    routed = {
        (r.method.lower(), r.resource.canonical)
        for r in client.app.router.routes()
        if r.method != "HEAD" or (r.method.lower(), r.resource.canonical) in declared
    }
    assert routed == declared
    verify = doc["paths"]["/v1/ledger/verify"]["post"]
    assert verify["security"] == [{"bearer": []}]
    assert {"401", "403", "422", "200"} <= set(verify["responses"])
    assert doc["paths"]["/healthz"]["get"]["security"] == []


async def test_unknown_route_and_method_are_json_errors(client, tokens):
    resp = await client.get("/v2/none", headers=bearer(tokens["reader"]))
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "E-NOT-FOUND"
    resp = await client.patch("/v1/events", headers=bearer(tokens["reader"]))
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    assert (await resp.json())["error"]["code"] == "E-BAD-INPUT"
