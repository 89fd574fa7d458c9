"""structlog, configured once per process: JSON lines for the service, console for the CLI.

A redaction processor drops any field whose name looks like a secret, so a key or token
cannot reach a log line even by mistake.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger", "redact_secrets"]

_SECRET_WORDS = ("key", "token", "secret", "password", "authorization", "cookie")
_ALLOWED = {"kid", "key_id", "token_name", "key_source"}


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    """Whether a field called ``name`` may hold a secret (cached: the service logs the same
    few field names on every request)."""
    low = name.lower()
    return low not in _ALLOWED and any(w in low for w in _SECRET_WORDS)


def redact_secrets(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Replace the value of every field named like a secret, in nested maps too."""
    for name, value in list(event_dict.items()):
        if _secret_name(str(name)):
            event_dict[name] = "[redacted]"
        elif isinstance(value, Mapping):
            event_dict[name] = redact_secrets(_, __, dict(value))
    return event_dict


def configure_logging(mode: str = "console", level: str = "warning") -> None:
    """``mode`` is ``console`` (readable, stderr) or ``json`` (one JSON object a line)."""
    renderer: list[Any] = (
        # a traceback becomes a string field of the same JSON line
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if mode == "json"
        else [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            *renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write per line (message and newline together): the workers of one service
        # share stderr, and print()'s two writes let their lines interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
