"""HMAC chain key rotation: a ``key.rotate`` event, MAC'd under the old key, names the new kid.

The event never carries a key, only the two public key ids. The log switches the ledger's
current kid in the same transaction (``ledger/log.py``), so every later event must carry
the new kid and only a writer holding the new key can append. docs/KEYS.md has the steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lmdb

from ledger.chain import kid_for_key
from ledger.datadir import DataDir
from ledger.errors import Conflict
from ledger.events import Event
from ledger.keys import Keyring, write_hmac_key_file
from ledger.log import ROTATE_TYPE, EventLog

__all__ = ["ROTATE_TYPE", "archive_key", "install_datadir_key", "rotate_key"]


def rotate_key(log: EventLog, new_key: bytes, actor: str = "system") -> Event:
    """Append ``key.rotate`` (old kid -> kid of ``new_key``) and return it once durable.

    A writer whose provider is a :class:`Keyring` learns the new key first, so it keeps
    appending after the rotation; any other writer must be reopened with the new key.
    """
    new_kid = kid_for_key(new_key)
    old_kid = log.current_kid()
    if new_kid == old_kid:
        raise Conflict("E-CONFLICT", f"the new key is the current key ({old_kid})")
    if isinstance(log.keys, Keyring):
        log.keys.add(new_key)

    def still_current(txn: lmdb.Transaction, payload: dict[str, Any]) -> dict[str, Any]:
        now = log.current_kid_in(txn)
        if now != old_kid:
            raise Conflict("E-CONFLICT", f"the key was rotated meanwhile (current kid {now})")
        return payload

    return log.append(
        ROTATE_TYPE, {"old_kid": old_kid, "new_kid": new_kid}, actor, precheck=still_current
    )


def archive_key(folder: Path, key: bytes) -> Path:
    """Keep ``key`` as ``folder/<kid>.key`` (mode 0600) so events MAC'd under it still verify."""
    path = folder / f"{kid_for_key(key)}.key"
    if not path.exists():
        write_hmac_key_file(path, key)
    return path


def install_datadir_key(data: DataDir, new_key: bytes) -> None:
    """For a ledger keyed from its data directory (development only): after the rotation,
    make the new key ``DIR/keys/hmac.key`` (the old one is archived in the keyring first)."""
    write_hmac_key_file(data.hmac_key_file, new_key, replace=True)
