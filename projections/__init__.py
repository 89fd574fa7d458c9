"""The read side: consumers of the event log that materialize tables, rebuild and export."""

from __future__ import annotations

from ledger.datadir import DataDir
from ledger.log import Consumer
from ledger.webhooks import WebhookOutbox
from projections.blobs import BlobsProjection
from projections.checkpoints import CheckpointsProjection
from projections.registry import RegistryProjection
from projections.tokens import TokensProjection

__all__ = ["default_consumers"]


def default_consumers(data: DataDir) -> list[Consumer]:
    """Every projection a ledger keeps up to date, in the order they are applied."""
    return [
        BlobsProjection(),
        RegistryProjection(),
        CheckpointsProjection(),
        WebhookOutbox(),
        TokensProjection(),
    ]
