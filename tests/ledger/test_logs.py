"""structlog: JSON lines for the service, console lines for the CLI, never a secret's value."""

from __future__ import annotations

import json

import pytest
import structlog

from ledger.logs import configure_logging, get_logger

SECRET = "5ec12e7" * 8


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


def test_json_mode_writes_one_json_object_per_line_with_secrets_redacted(capsys):
    configure_logging("json", "debug")
    log = get_logger("test")
    log.info(
        "key_loaded",
        hmac_key=SECRET,
        api_token=SECRET,
        Authorization=f"Bearer {SECRET}",
        password=SECRET,
        signing_key_b64=SECRET,
        headers={"Cookie": SECRET, "accept": "text/plain"},
        kid="hk-0011223344556677",
        key_source="env",
        token_name="ci",
        seq=7,
    )
    log.debug("second")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    doc = json.loads(lines[0])
    assert SECRET not in lines[0]
    for field in ("hmac_key", "api_token", "Authorization", "password", "signing_key_b64"):
        assert doc[field] == "[redacted]"
    assert doc["headers"] == {"Cookie": "[redacted]", "accept": "text/plain"}
    # public identifiers that merely look like secret names survive
    assert (doc["kid"], doc["key_source"], doc["token_name"]) == (
        "hk-0011223344556677",
        "env",
        "ci",
    )
    assert (doc["event"], doc["level"], doc["seq"]) == ("key_loaded", "info", 7)
    assert doc["timestamp"].endswith("Z")
    assert json.loads(lines[1])["event"] == "second"


def test_json_mode_keeps_tracebacks_in_the_line(capsys):
    configure_logging("json", "info")
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        get_logger("test").exception("writer_failed", token=SECRET)
    (line,) = capsys.readouterr().err.splitlines()
    doc = json.loads(line)
    assert "RuntimeError: disk on fire" in doc["exception"]
    assert doc["token"] == "[redacted]" and SECRET not in line


def test_console_mode_is_readable_filtered_and_redacted(capsys):
    configure_logging("console", "warning")
    log = get_logger("test")
    log.info("hidden")
    log.warning("shown", secret=SECRET, kid="hk-1")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown" in err and "hk-1" in err and "[redacted]" in err
    assert SECRET not in err
    assert "\x1b[" not in err  # no colour codes when stderr is not a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(err)
