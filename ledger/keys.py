"""Key material: HMAC chain keys (behind a provider interface) and Ed25519 key files.

Keys never appear in events, logs or error messages; only their ``kid`` fingerprints do.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ledger.chain import kid_for_key
from ledger.errors import BadInput, CheckFailed, EnvironmentProblem

__all__ = [
    "ENV_HMAC_KEY",
    "MIN_KEY_BYTES",
    "Ed25519Keypair",
    "HmacKeyProvider",
    "Keyring",
    "StaticKeyProvider",
    "b64_field",
    "generate_hmac_key_file",
    "load_hmac_key_file",
    "load_private_key",
    "load_public_key",
    "parse_hex_key",
    "read_key_json",
    "verify_signature",
    "write_hmac_key_file",
    "write_keypair",
    "write_private_file",
]

ENV_HMAC_KEY = "CAP_LEDGER_HMAC_KEY"
MIN_KEY_BYTES = 32


class HmacKeyProvider(ABC):
    """Where chain keys come from: the current key for new events, any key by kid to verify."""

    @abstractmethod
    def current(self) -> tuple[str, bytes]:
        """``(kid, key)`` used for new events."""

    @abstractmethod
    def get(self, kid: str) -> bytes:
        """The key for ``kid``; ``E-KEY`` when this provider does not hold it."""


class StaticKeyProvider(HmacKeyProvider):
    """One key in memory (from the environment, a file, or a test)."""

    __slots__ = ("_key", "_kid")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise EnvironmentProblem("E-KEY", f"HMAC key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._kid = kid_for_key(key)

    def current(self) -> tuple[str, bytes]:
        return self._kid, self._key

    def get(self, kid: str) -> bytes:
        if kid != self._kid:
            raise EnvironmentProblem(
                "E-KEY", f"no HMAC key for kid {kid} (wrong key? this key is {self._kid})"
            )
        return self._key

    def __repr__(self) -> str:  # never show the key
        return f"StaticKeyProvider(kid={self._kid})"


class Keyring(HmacKeyProvider):
    """Several keys; the newest added is current. Used to verify logs that span rotations."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise EnvironmentProblem("E-KEY", "keyring is empty")
        self._keys = {kid_for_key(k): k for k in keys}
        self._current = kid_for_key(keys[-1])

    def current(self) -> tuple[str, bytes]:
        return self._current, self._keys[self._current]

    def get(self, kid: str) -> bytes:
        try:
            return self._keys[kid]
        except KeyError:
            raise EnvironmentProblem("E-KEY", f"no HMAC key for kid {kid} in the keyring") from None

    def add(self, key: bytes, *, make_current: bool = True) -> str:
        kid = kid_for_key(key)
        self._keys[kid] = key
        if make_current:
            self._current = kid
        return kid

    def __repr__(self) -> str:
        return f"Keyring(kids={sorted(self._keys)})"


_MAX_KEY_FILE = 64 << 10  # key files are a few hundred bytes; keyrings a few KiB


def parse_hex_key(text: str, *, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise EnvironmentProblem("E-KEY", f"{source}: HMAC key is not valid hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise EnvironmentProblem(
            "E-KEY", f"{source}: HMAC key must be at least {MIN_KEY_BYTES} bytes"
        )
    return key


def _read_key_text(path: Path, what: str) -> str:
    """The text of a key file, read at most ``_MAX_KEY_FILE`` bytes (a path that names
    /dev/zero or a log must not fill memory); ``E-KEY`` when it is not a readable key file."""
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise EnvironmentProblem("E-KEY", f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise EnvironmentProblem(
            "E-KEY", f"{what} unreadable: {path!r} ({exc.__class__.__name__})"
        ) from None
    if len(raw) > _MAX_KEY_FILE:
        raise EnvironmentProblem("E-KEY", f"{what} is larger than {_MAX_KEY_FILE} bytes: {path}")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise EnvironmentProblem("E-KEY", f"{what} is not text: {path}") from None


def load_hmac_key_file(path: Path) -> bytes:
    return parse_hex_key(_read_key_text(path, "HMAC key file"), source=str(path))


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and ``data``, synced; ``FileExistsError`` if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_hmac_key_file(path: Path) -> bytes:
    """Write a fresh 32-byte key as hex to ``path`` (mode 0600); refuse to overwrite."""
    key = secrets.token_bytes(32)
    try:
        write_private_file(path, key.hex().encode() + b"\n")
    except FileExistsError:
        raise BadInput("E-BAD-INPUT", f"refusing to overwrite existing key file {path}") from None
    return key


def write_hmac_key_file(path: Path, key: bytes, *, replace: bool = False) -> None:
    """Write ``key`` as hex (mode 0600); with ``replace``, atomically swap an existing file."""
    data = key.hex().encode() + b"\n"
    if not replace:
        try:
            write_private_file(path, data)
        except FileExistsError:
            raise BadInput("E-BAD-INPUT", f"refusing to overwrite key file {path}") from None
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    write_private_file(tmp, data)
    os.replace(tmp, path)


# --- Ed25519 key files -------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Ed25519Keypair:
    name: str
    signing_key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write_keypair(out_dir: Path, name: str) -> tuple[Path, Path]:
    """``keys generate``: write ``NAME.ed25519.sk.json`` (0600) and ``NAME.ed25519.pk.json``."""
    if not name or "/" in name or name.startswith("."):
        raise BadInput("E-BAD-INPUT", f"invalid key name {name!r}")
    sk = SigningKey.generate()
    pk = bytes(sk.verify_key)
    sk_path = out_dir / f"{name}.ed25519.sk.json"
    pk_path = out_dir / f"{name}.ed25519.pk.json"
    if sk_path.exists() or pk_path.exists():
        raise BadInput("E-BAD-INPUT", f"refusing to overwrite existing key files for {name!r}")
    common = {"type": "ed25519", "name": name, "public_key": _b64(pk)}
    write_private_file(
        sk_path, json.dumps({**common, "secret_key": _b64(bytes(sk))}).encode() + b"\n"
    )
    pk_path.write_text(json.dumps(common) + "\n")
    return sk_path, pk_path


def read_key_json(path: Path, key_type: str = "ed25519") -> dict[str, object]:
    """A JSON key file whose ``type`` is ``key_type``; ``E-KEY`` when missing or malformed."""
    text = _read_key_text(path, "key file")
    try:
        doc = json.loads(text)
    except ValueError:
        raise BadInput("E-KEY", f"key file is not valid JSON: {path}") from None
    if not isinstance(doc, dict) or doc.get("type") != key_type:
        raise BadInput("E-KEY", f"not an {key_type} key file: {path}")
    return doc


def b64_field(doc: dict[str, object], field: str, path: Path, size: int) -> bytes:
    value = doc.get(field)
    try:
        raw = base64.b64decode(str(value), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise BadInput("E-KEY", f"{path}: field {field!r} must be {size} bytes of base64")
    return raw


def load_private_key(path: Path) -> Ed25519Keypair:
    doc = read_key_json(path)
    sk = SigningKey(b64_field(doc, "secret_key", path, 32))
    if "public_key" in doc and b64_field(doc, "public_key", path, 32) != bytes(sk.verify_key):
        raise BadInput("E-KEY", f"{path}: public_key does not match secret_key")
    return Ed25519Keypair(name=str(doc.get("name", path.stem)), signing_key=sk)


def load_public_key(path: Path) -> bytes:
    return b64_field(read_key_json(path), "public_key", path, 32)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise ``E-SIGNATURE-INVALID`` unless ``signature`` is valid for ``message``."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        raise CheckFailed("E-SIGNATURE-INVALID", "Ed25519 signature does not verify") from None
