"""Where a ledger lives on disk and where its chain key comes from."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import EnvironmentProblem
from ledger.keys import (
    ENV_HMAC_KEY,
    HmacKeyProvider,
    Keyring,
    StaticKeyProvider,
    load_hmac_key_file,
    parse_hex_key,
)

__all__ = ["DEFAULT_DATA_DIR", "ENV_DATA", "ENV_KEYRING", "DataDir", "resolve_keys"]

ENV_DATA = "CAP_DATA"
ENV_KEYRING = "CAP_LEDGER_HMAC_KEYRING"  # older chain keys, hex, comma-separated
DEFAULT_DATA_DIR = Path("var/ledger")


@dataclass(slots=True, frozen=True)
class DataDir:
    """The layout of a data directory (docs/EVENTS.md, "Data directory")."""

    root: Path

    @classmethod
    def resolve(cls, arg: str | Path | None = None) -> DataDir:
        """``--data`` wins, then ``$CAP_DATA``, then ``./var/ledger``."""
        return cls(Path(arg or os.environ.get(ENV_DATA) or DEFAULT_DATA_DIR))

    @property
    def lmdb(self) -> Path:
        return self.root / "lmdb"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def hmac_key_file(self) -> Path:
        return self.keys / "hmac.key"

    @property
    def keyring(self) -> Path:
        """Older chain keys (``*.key``) kept to verify events from before a rotation."""
        return self.keys / "keyring"

    @property
    def export_key_file(self) -> Path:
        """The development audit export key ``serve`` generates when none is configured."""
        return self.keys / "audit-export.key"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def initialized(self) -> bool:
        return (self.lmdb / "data.mdb").exists()


def resolve_keys(
    data: DataDir, key_file: Path | None = None, keyring_dir: Path | None = None
) -> tuple[HmacKeyProvider, str]:
    """The chain key: ``$CAP_LEDGER_HMAC_KEY``, else ``key_file``, else the generated file.

    Returns the provider and where the key came from (``env``, ``file``, ``datadir``).
    Older keys (for events from before a rotation, docs/KEYS.md) come from every ``*.key``
    in ``keyring_dir`` (default ``DIR/keys/keyring`` when it exists) and from
    ``$CAP_LEDGER_HMAC_KEYRING``; with any of them the provider is a :class:`Keyring`.
    """
    env = os.environ.get(ENV_HMAC_KEY)
    if env:
        provider: HmacKeyProvider = StaticKeyProvider(parse_hex_key(env, source=ENV_HMAC_KEY))
        source = "env"
    elif key_file is not None:
        provider = StaticKeyProvider(load_hmac_key_file(key_file))
        source = "file"
    else:
        provider = StaticKeyProvider(load_hmac_key_file(data.hmac_key_file))
        source = "datadir"
    older = _keyring_keys(data, keyring_dir)
    if older:
        return Keyring([*older, provider.current()[1]]), source
    return provider, source


def _keyring_keys(data: DataDir, keyring_dir: Path | None) -> list[bytes]:
    if keyring_dir is not None and not keyring_dir.is_dir():
        raise EnvironmentProblem("E-KEY", f"keyring directory not found: {keyring_dir}")
    folder = keyring_dir if keyring_dir is not None else data.keyring
    keys = [load_hmac_key_file(p) for p in sorted(folder.glob("*.key"))] if folder.is_dir() else []
    for i, part in enumerate(os.environ.get(ENV_KEYRING, "").split(",")):
        if part.strip():
            keys.append(parse_hex_key(part, source=f"{ENV_KEYRING} entry {i + 1}"))
    return keys
