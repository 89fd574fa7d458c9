"""HTTP fixtures: the service over the test ledger, one token per role, a client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.http import ServiceConfig, create_app
from ledger.tokens import ROLES, create_token


@pytest.fixture
def tokens(ledger) -> dict[str, str]:
    """A valid token for every role, keyed by role."""
    return {role: create_token(ledger.log, f"t-{role}", role, "test").secret for role in ROLES}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_client(aiohttp_client, ledger) -> Callable[..., Awaitable[Any]]:
    """``await make_client(**config)``: a test client of a service with that config."""

    async def make(**config: Any) -> Any:
        return await aiohttp_client(create_app(ledger, ServiceConfig(**config)))

    return make


@pytest.fixture
async def client(make_client):
    return await make_client()
