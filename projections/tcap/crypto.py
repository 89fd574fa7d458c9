"""Block encryption: XChaCha20-Poly1305 (pynacl) with per-tenant keys behind a provider.

Only block payloads are encrypted; the header, manifest, index and each block's chain
fields stay readable. A payload is ``nonce (24 random bytes) || ciphertext || tag`` and its
associated data binds it to its place: ``"diamond:tcap:v1/block" || tid || 0x00 ||
height (u64 LE) || span_id``. Keys come from a :class:`BlockKeyProvider`; the file backend
reads a per-tenant key file, and a KMS backend can implement the same two methods.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions

from ledger.errors import BadInput, CheckFailed, EnvironmentProblem
from ledger.keys import b64_field, read_key_json, write_private_file

__all__ = [
    "CIPHER",
    "BlockKey",
    "BlockKeyProvider",
    "FileBlockKeyProvider",
    "block_aad",
    "decrypt_payload",
    "encrypt_payload",
    "write_block_key_file",
]

CIPHER = "xchacha20poly1305-ietf"
_KEY_TYPE = "tcap-block-key"
_NONCE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
_KEY_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_AAD_PREFIX = b"diamond:tcap:v1/block"
_U64 = struct.Struct("<Q")


@dataclass(slots=True, frozen=True)
class BlockKey:
    """A block key with its public id (``bk-`` + 16 hex of an HMAC fingerprint)."""

    tenant: str
    key_id: str
    key: bytes = b""

    def __repr__(self) -> str:  # never show the key
        return f"BlockKey(tenant={self.tenant!r}, key_id={self.key_id!r})"


def key_id_for(key: bytes) -> str:
    return "bk-" + hmac.digest(key, b"cap-ledger/tcap-block-key/v1", "sha256")[:8].hex()


class BlockKeyProvider(ABC):
    """Where block keys come from: one key per tenant (the ledger id) to encrypt, any
    held key by id to decrypt. Raise ``E-KEY`` when the key is not held."""

    @abstractmethod
    def encryption_key(self, tenant: str) -> BlockKey: ...

    @abstractmethod
    def decryption_key(self, tenant: str, key_id: str) -> BlockKey: ...


class FileBlockKeyProvider(BlockKeyProvider):
    """One key from a key file written by :func:`write_block_key_file` (``tcap keygen``)."""

    def __init__(self, path: Path) -> None:
        doc = read_key_json(path, _KEY_TYPE)
        if doc.get("cipher") != CIPHER:
            raise BadInput("E-KEY", f"{path}: cipher must be {CIPHER}")
        key = b64_field(doc, "key", path, _KEY_BYTES)
        tenant = doc.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise BadInput("E-KEY", f"{path}: field 'tenant' must be a string")
        self._tenant = tenant
        self._key = BlockKey(tenant or "*", key_id_for(key), key)
        self._path = path

    def _check_tenant(self, tenant: str) -> None:
        if self._tenant is not None and self._tenant != tenant:
            raise EnvironmentProblem(
                "E-KEY", f"block key {self._path} belongs to tenant {self._tenant}, not {tenant}"
            )

    def encryption_key(self, tenant: str) -> BlockKey:
        self._check_tenant(tenant)
        return BlockKey(tenant, self._key.key_id, self._key.key)

    def decryption_key(self, tenant: str, key_id: str) -> BlockKey:
        self._check_tenant(tenant)
        if key_id != self._key.key_id:
            raise EnvironmentProblem(
                "E-KEY",
                f"the capsule's blocks are encrypted with key {key_id}; "
                f"{self._path} holds {self._key.key_id}",
            )
        return BlockKey(tenant, key_id, self._key.key)


def write_block_key_file(path: Path, tenant: str | None = None) -> BlockKey:
    """Write a fresh block key (mode 0600, never overwriting) and return its id."""
    key = secrets.token_bytes(_KEY_BYTES)
    key_id = key_id_for(key)
    doc = {
        "type": _KEY_TYPE,
        "cipher": CIPHER,
        "tenant": tenant,
        "key_id": key_id,
        "key": base64.b64encode(key).decode(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_private_file(path, json.dumps(doc).encode() + b"\n")
    except FileExistsError:
        raise BadInput("E-BAD-INPUT", f"refusing to overwrite existing key file {path}") from None
    return BlockKey(tenant or "*", key_id)


def block_aad(tid: str, height: int, span_id: str) -> bytes:
    """Associated data that ties a ciphertext to its block."""
    return _AAD_PREFIX + tid.encode() + b"\x00" + _U64.pack(height) + span_id.encode()


def encrypt_payload(key: BlockKey, aad: bytes, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key.key)


def decrypt_payload(key: BlockKey, aad: bytes, data: bytes, *, where: str) -> bytes:
    """Decrypt and authenticate; ``E-CAPSULE-CORRUPT`` naming ``where`` when it fails."""
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(
            data[_NONCE:], aad, data[:_NONCE], key.key
        )
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise CheckFailed(
            "E-CAPSULE-CORRUPT",
            f"capsule corrupt: {where}: encrypted payload does not authenticate "
            "(altered, or a different key with the same id)",
            where=where,
        ) from None
