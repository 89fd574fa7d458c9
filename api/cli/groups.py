"""Extending a command group another module registered (``ledger``, ``tcap``)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["subcommands"]


def subcommands(sub: Any, group: str) -> Any:
    """The subcommand table of the already registered group ``group``."""
    parser = sub.choices[group]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise LookupError(group)
