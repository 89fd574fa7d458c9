"""The HTTP service: a thin aiohttp door over the same functions the CLI calls."""

from __future__ import annotations

from api.http.app import create_app
from api.http.state import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
