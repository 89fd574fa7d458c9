"""docs/REGISTRY.md's worked example, recomputed: core bytes, id and signature."""

from __future__ import annotations

import json
import re

from nacl.signing import SigningKey

from ledger.keys import Ed25519Keypair
from ledger.registry_entry import core_bytes, core_hash, sign_entry, verify_entry_signature
from tests.conftest import REPO


def _block(name: str) -> str:
    text = (REPO / "docs" / "REGISTRY.md").read_text()
    match = re.search(rf"```\w+ {name}\n(.*?)\n```", text, re.S)
    assert match, name
    return match.group(1)


def test_worked_example():
    seed = re.search(r"Ed25519 seed `([0-9a-f]{64})`", (REPO / "docs/REGISTRY.md").read_text())
    key = Ed25519Keypair("doc", SigningKey(bytes.fromhex(seed.group(1))))
    fields = json.loads(_block("example-fields"))
    entry = json.loads(_block("example-entry"))
    assert sign_entry(fields, key) == entry
    assert list(entry) == list(sign_entry(fields, key))
    assert core_bytes(entry).decode() == _block("example-core")
    assert entry["id"] == core_hash(entry)
    assert verify_entry_signature(entry) == entry["id"]
