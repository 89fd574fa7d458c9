"""What every command gets: the resolved data directory, output mode and an opened ledger."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.datadir import DataDir, resolve_keys
from ledger.errors import EnvironmentProblem
from ledger.keys import HmacKeyProvider
from ledger.ledger import Ledger
from projections import default_consumers

__all__ = ["Context"]


@dataclass(slots=True)
class Context:
    data: DataDir
    as_json: bool
    key_file: Path | None
    actor: str
    keyring_dir: Path | None = None
    _ledger: Ledger | None = field(default=None)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Context:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(
            data=DataDir.resolve(args.data),
            as_json=bool(args.json),
            key_file=Path(args.hmac_key_file) if args.hmac_key_file else None,
            actor=args.actor or f"cli:{user}",
            keyring_dir=Path(args.keyring) if getattr(args, "keyring", None) else None,
        )

    def keys(self) -> HmacKeyProvider:
        if not self.data.initialized():
            why = " (not a directory)" if self.data.root.exists() else ""
            raise EnvironmentProblem(
                "E-NOT-INITIALIZED", f"no ledger at {self.data.root}{why}; run `cap-agent init`"
            )
        provider, source = resolve_keys(self.data, self.key_file, self.keyring_dir)
        if source == "datadir" and not self.as_json:
            warn("using the HMAC key inside the data directory; production keys belong outside it")
        return provider

    def ledger(self) -> Ledger:
        """The ledger of this data directory, opened once per command."""
        if self._ledger is None:
            self._ledger = Ledger.open(self.data, self.keys(), default_consumers(self.data))
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def emit(self, doc: Any, human: str | Callable[[], str] | None = None) -> None:
        """Print ``doc`` as JSON with ``--json``, else the human form."""
        if self.as_json or human is None:
            print(json.dumps(doc, ensure_ascii=False))
        else:
            print(human() if callable(human) else human)

    def emit_lines(self, docs: Iterable[Any], human: Callable[[Any], str]) -> int:
        """Stream: JSON Lines with ``--json``, else one human line each. Returns the count."""
        n = 0
        write = sys.stdout.write
        for doc in docs:
            write((json.dumps(doc, ensure_ascii=False) if self.as_json else human(doc)) + "\n")
            n += 1
        sys.stdout.flush()
        return n


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
