"""Registry entry v0.9: its fields, the canonical core it is signed over, and its id.

The core is the canonical JSON (``ledger.canonical.canonical_json``) of every v0.9 field
except ``id`` and ``signature``, plus a ``format`` tag; ``core_hash`` is its SHA3-256 and
the entry ``id`` is that hash in hex, so an id names exactly one signed content. The
signature is Ed25519 over the 32 bytes of ``core_hash`` (docs/REGISTRY.md, byte for byte).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from ledger.canonical import canonical_json
from ledger.errors import CheckFailed
from ledger.keys import Ed25519Keypair, verify_signature

__all__ = [
    "CORE_FIELDS",
    "ENTRY_FORMAT",
    "SELFVERIFY_STATUSES",
    "V09_FIELDS",
    "blob_refs",
    "core_bytes",
    "core_hash",
    "sign_entry",
    "verify_entry_signature",
]

ENTRY_FORMAT = "cap-registry-entry/v0.9"
SELFVERIFY_STATUSES = ("unknown", "ok", "fail")

# The seed's table, in its order (also the SQLite column order).
V09_FIELDS: tuple[str, ...] = (
    "id",
    "created_at",
    "manifest_hash",
    "proof_hash",
    "blob_manifest",
    "blob_proof",
    "blob_wasm",
    "blob_abi",
    "verifier_name",
    "verifier_version",
    "selfverify_status",
    "selfverify_at",
    "signature",
    "public_key",
)
CORE_FIELDS: tuple[str, ...] = tuple(f for f in V09_FIELDS if f not in ("id", "signature"))


def core_bytes(fields: dict[str, Any]) -> bytes:
    """Canonical JSON of the core: ``format`` plus every field of :data:`CORE_FIELDS`."""
    core: dict[str, Any] = {"format": ENTRY_FORMAT}
    for name in CORE_FIELDS:
        core[name] = fields.get(name)
    return canonical_json(core)


def core_hash(fields: dict[str, Any]) -> str:
    """SHA3-256 hex of :func:`core_bytes`; also the id of an entry added by this ledger."""
    return hashlib.sha3_256(core_bytes(fields)).hexdigest()


def sign_entry(fields: dict[str, Any], key: Ed25519Keypair) -> dict[str, Any]:
    """Complete ``fields`` (core fields without ``public_key``) into a signed v0.9 entry."""
    entry = {name: fields.get(name) for name in CORE_FIELDS}
    entry["public_key"] = base64.b64encode(key.public_key).decode()
    digest = core_hash(entry)
    entry["id"] = digest
    entry["signature"] = base64.b64encode(key.sign(bytes.fromhex(digest))).decode()
    return {name: entry[name] for name in V09_FIELDS}


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise CheckFailed("E-SIGNATURE-INVALID", f"{what} is not valid base64") from None


def verify_entry_signature(entry: dict[str, Any]) -> str:
    """Check that ``id`` is the core hash and the signature verifies; returns the hash.

    ``entry`` holds the signed values (for ``selfverify_*``, those at signing time).
    Raises ``E-SIGNATURE-INVALID`` naming what failed.
    """
    if not entry.get("signature") or not entry.get("public_key"):
        raise CheckFailed("E-SIGNATURE-INVALID", "entry carries no signature or public key")
    digest = core_hash(entry)
    if entry.get("id") != digest:
        raise CheckFailed(
            "E-SIGNATURE-INVALID",
            f"entry fields do not match its id (core hash is {digest})",
        )
    public_key = _b64(entry["public_key"], "public_key")
    signature = _b64(entry["signature"], "signature")
    verify_signature(public_key, bytes.fromhex(digest), signature)
    return digest


def blob_refs(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The blobs an entry pins: ``(kind, hash)`` with kind ``b3`` (blob id) for manifest,
    proof and wasm, ``sha3`` for the ABI (the seed pins it by SHA3-256)."""
    refs = []
    for name in ("blob_manifest", "blob_proof", "blob_wasm"):
        if isinstance(entry.get(name), str) and entry[name]:
            refs.append(("b3", entry[name]))
    if isinstance(entry.get("blob_abi"), str) and entry["blob_abi"]:
        refs.append(("sha3", entry["blob_abi"]))
    return refs
