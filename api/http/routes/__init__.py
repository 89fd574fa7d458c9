"""The route groups of the service, one module each."""

from __future__ import annotations

from api.http.declare import RouteGroup
from api.http.routes import (
    audit,
    blobs,
    capsules,
    checkpoints,
    events,
    ledger,
    proofs,
    registry,
    system,
    tokens,
    webhooks,
)

__all__ = ["GROUPS"]

GROUPS: tuple[RouteGroup, ...] = (
    system.group,
    ledger.group,
    events.group,
    blobs.group,
    registry.group,
    capsules.group,
    tokens.group,
    checkpoints.group,
    audit.group,
    proofs.group,
    webhooks.group,
)
