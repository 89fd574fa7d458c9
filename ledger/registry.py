"""Registry commands (v0.9): add a signed entry with its four blobs, revoke it, verify it,
and record self-verification results. The CLI and the HTTP service both call these.

``add`` stages the package files (hashing while streaming), reads the ABI for the
verifier's name and version, optionally self-verifies, signs the core (see
:mod:`ledger.registry_entry`) and appends four ``blob.put`` events and one ``registry.add``
in one atomic group, so a GC can never see the blobs without the entry that pins them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import lmdb

from ledger.blobs import BlobInfo, BlobStore, Staged, require_consumer
from ledger.errors import BadInput, CheckFailed, Conflict, NotFound
from ledger.events import Event, rfc3339_now
from ledger.keys import Ed25519Keypair
from ledger.log import Append
from ledger.registry_entry import V09_FIELDS, sign_entry, verify_entry_signature
from ledger.sandbox.abi import MAX_ABI_BYTES, parse_abi

__all__ = [
    "MAX_SELFVERIFY_INPUT",
    "PACKAGE_MEDIA_TYPES",
    "REGISTRY_ADD",
    "REGISTRY_IMPORT",
    "REGISTRY_REVOKE",
    "SELFVERIFY_RESULT",
    "EntryIndex",
    "Package",
    "Registry",
    "SelfVerify",
    "check_selfverify_result",
    "signed_fields",
]

REGISTRY_ADD = "registry.add"
REGISTRY_IMPORT = "registry.import"
REGISTRY_REVOKE = "registry.revoke"
SELFVERIFY_RESULT = "selfverify.result"
MAX_SELFVERIFY_INPUT = 64 << 20  # what a self-verification may hold in memory per file
PACKAGE_MEDIA_TYPES = {
    "manifest": "application/json",
    "proof": "application/octet-stream",
    "wasm": "application/wasm",
    "abi": "application/json",
}
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_CODE = re.compile(r"^E-[A-Z0-9-]{1,40}$")

SelfVerify = Callable[[bytes, bytes, bytes, bytes], dict[str, Any]]
"""``(wasm, abi, manifest, proof) -> result``: status, code, fuel_used, duration_us, log,
engine, at (the payload of a ``selfverify.result`` event without ``entry_id``)."""


class EntryIndex(Protocol):
    """Current registry rows, read inside a given transaction (provided by the read side)."""

    consumer_name: str

    def row(self, txn: lmdb.Transaction, entry_id: str) -> dict[str, Any] | None: ...


@dataclass(slots=True, frozen=True)
class Package:
    """The four files of a proof package, as readable binary streams."""

    manifest: BinaryIO
    proof: BinaryIO
    wasm: BinaryIO
    abi: BinaryIO


def check_selfverify_result(result: Any) -> dict[str, Any]:
    """Validate a self-verification result (``E-BAD-INPUT`` when malformed)."""
    if not isinstance(result, dict):
        raise BadInput("E-BAD-INPUT", "self-verification result must be an object")
    status, code, at = result.get("status"), result.get("code"), result.get("at")
    if status not in ("ok", "fail"):
        raise BadInput("E-BAD-INPUT", "self-verification status must be ok or fail")
    if code is not None and (not isinstance(code, str) or not _CODE.match(code)):
        raise BadInput("E-BAD-INPUT", "self-verification code must be an E- code or null")
    if not isinstance(at, str) or not _RFC3339.match(at):
        raise BadInput("E-BAD-INPUT", "self-verification time must be RFC 3339")
    for name in ("fuel_used", "duration_us"):
        v = result.get(name)
        if v is not None and (type(v) is not int or v < 0):
            raise BadInput("E-BAD-INPUT", f"self-verification {name} must be a count")
    log = result.get("log", [])
    if not isinstance(log, list) or not all(isinstance(x, str) for x in log):
        raise BadInput("E-BAD-INPUT", "self-verification log must be a list of strings")
    engine = result.get("engine", {})
    if not isinstance(engine, dict):
        raise BadInput("E-BAD-INPUT", "self-verification engine must be an object")
    out = {
        "status": status,
        "code": code,
        "fuel_used": result.get("fuel_used"),
        "duration_us": result.get("duration_us"),
        "log": log,
        "engine": engine,
        "at": at,
    }
    out.update(_selfverify_extras(result))
    return out


def _selfverify_extras(result: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's optional detail (message, verdict, dropped log lines, effective
    limits), kept in the event when present and well-formed."""
    extras: dict[str, Any] = {}
    if "message" in result:
        message = result["message"]
        if not isinstance(message, str) or len(message) > 2048:
            raise BadInput("E-BAD-INPUT", "self-verification message must be short text")
        extras["message"] = message
    for name in ("verdict", "log_dropped"):
        if name in result:
            v = result[name]
            if v is not None and type(v) is not int:
                raise BadInput("E-BAD-INPUT", f"self-verification {name} must be an integer")
            extras[name] = v
    if "limits" in result:
        limits = result["limits"]
        if not isinstance(limits, dict) or not all(
            isinstance(k, str) and type(v) is int for k, v in limits.items()
        ):
            raise BadInput("E-BAD-INPUT", "self-verification limits must map names to integers")
        extras["limits"] = limits
    return extras


class Registry:
    """Registry commands over one ledger, validating against the registry projection."""

    def __init__(self, blobs: BlobStore, entries: EntryIndex) -> None:
        require_consumer(blobs.ledger, entries.consumer_name)
        self.blobs = blobs
        self.ledger = blobs.ledger
        self.entries = entries

    # --- reading ------------------------------------------------------------------------

    def row(self, entry_id: str) -> dict[str, Any]:
        """The stored row of an entry; ``E-NOT-FOUND`` when there is none."""
        with self.ledger.store.read() as txn:
            row = self.entries.row(txn, entry_id)
        if row is None:
            raise NotFound("E-NOT-FOUND", f"no registry entry {entry_id!r}")
        return row

    def _staged_bytes(self, staged: Staged, what: str, limit: int) -> bytes:
        if staged.size > limit:
            raise BadInput("E-BAD-INPUT", f"{what} is larger than {limit} bytes")
        if staged.data is not None:
            return staged.data
        assert staged.temp is not None
        return staged.temp.read_bytes()

    # --- add ----------------------------------------------------------------------------

    def add(
        self,
        package: Package,
        key: Ed25519Keypair,
        *,
        actor: str = "system",
        selfverify: SelfVerify | None = None,
    ) -> tuple[dict[str, Any], Event]:
        """Store the package's blobs and append a signed ``registry.add``; returns the
        entry (v0.9 fields) and its event."""
        staged: dict[str, Staged] = {}
        try:
            for part in ("manifest", "proof", "wasm", "abi"):
                staged[part] = self.blobs.stage(getattr(package, part))
            if staged["abi"].size > MAX_ABI_BYTES:
                raise CheckFailed("E-ABI-INVALID", f"ABI file is larger than {MAX_ABI_BYTES}")
            abi = parse_abi(self._staged_bytes(staged["abi"], "ABI file", MAX_ABI_BYTES))
            result = None
            if selfverify is not None:
                inputs = [
                    self._staged_bytes(staged[p], f"{p} file", MAX_SELFVERIFY_INPUT)
                    for p in ("wasm", "abi", "manifest", "proof")
                ]
                result = check_selfverify_result(selfverify(*inputs))
            fields = {
                "created_at": rfc3339_now(),
                "manifest_hash": staged["manifest"].sha3_256,
                "proof_hash": staged["proof"].sha3_256,
                "blob_manifest": staged["manifest"].blob_id,
                "blob_proof": staged["proof"].blob_id,
                "blob_wasm": staged["wasm"].blob_id,
                "blob_abi": staged["abi"].sha3_256,
                "verifier_name": abi.name,
                "verifier_version": abi.version,
                "selfverify_status": "unknown" if result is None else result["status"],
                "selfverify_at": None if result is None else result["at"],
            }
            entry = sign_entry(fields, key)
            items = [
                self.blobs.put_append(staged[p], PACKAGE_MEDIA_TYPES[p], actor)
                for p in ("manifest", "proof", "wasm", "abi")
            ]
            payload = {"entry": entry, "selfverify": result}
            items.append(Append(REGISTRY_ADD, payload, actor, precheck=self._check_new))
            with self.blobs.persisted(list(staged.values())):
                events = self.ledger.log.append_many(items)
        finally:
            for s in staged.values():
                self.blobs.tiers[s.tier].discard(s)
        return entry, events[-1]

    def _check_new(self, txn: lmdb.Transaction, payload: dict[str, Any]) -> dict[str, Any]:
        entry = payload["entry"]
        if self.entries.row(txn, entry["id"]) is not None:
            raise Conflict("E-CONFLICT", f"registry entry {entry['id']} already exists")
        return payload

    # --- revoke -------------------------------------------------------------------------

    def revoke(self, entry_id: str, *, actor: str = "system", reason: str | None = None) -> Event:
        """Append ``registry.revoke``: the entry stays (history) but pins no blob anymore."""
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1024):
            raise BadInput("E-BAD-INPUT", "revocation reason must be text of at most 1024 chars")

        def precheck(txn: lmdb.Transaction, payload: dict[str, Any]) -> dict[str, Any]:
            row = self.entries.row(txn, entry_id)
            if row is None:
                raise NotFound("E-NOT-FOUND", f"no registry entry {entry_id!r}")
            if row.get("revoked"):
                raise Conflict("E-CONFLICT", f"registry entry {entry_id} is already revoked")
            return payload

        payload = {"id": entry_id, "reason": reason}
        return self.ledger.log.append_many(
            [Append(REGISTRY_REVOKE, payload, actor, precheck=precheck)]
        )[0]

    # --- self-verification results ------------------------------------------------------

    def record_selfverify(
        self, entry_id: str, result: dict[str, Any], *, actor: str = "system"
    ) -> Event:
        """Append ``selfverify.result`` for an existing entry (what ``registry exec`` does)."""
        payload = {"entry_id": entry_id, **check_selfverify_result(result)}

        def precheck(txn: lmdb.Transaction, p: dict[str, Any]) -> dict[str, Any]:
            if self.entries.row(txn, entry_id) is None:
                raise NotFound("E-NOT-FOUND", f"no registry entry {entry_id!r}")
            return p

        return self.ledger.log.append_many(
            [Append(SELFVERIFY_RESULT, payload, actor, precheck=precheck)]
        )[0]

    def package_bytes(
        self, entry_id: str, *, limit: int = MAX_SELFVERIFY_INPUT
    ) -> dict[str, bytes]:
        """The entry's wasm, abi, manifest and proof, each re-hashed against its pin
        (BLAKE3 id, and SHA3-256 for the ABI, manifest and proof)."""
        row = self.row(entry_id)
        out = {}
        for part, info, sha3 in self._pins(row):
            data = bytearray()
            for chunk in self._checked_chunks(info, sha3, limit):
                data += chunk
            out[part] = bytes(data)
        return out

    # --- verify -------------------------------------------------------------------------

    def verify(self, entry_id: str) -> dict[str, Any]:
        """Check the signature over the signed fields, then re-hash every referenced blob.
        Raises ``E-SIGNATURE-INVALID``, ``E-BLOB-MISSING`` or ``E-HASH-MISMATCH``."""
        row = self.row(entry_id)
        digest = verify_entry_signature(signed_fields(row))
        checked = []
        for part, info, sha3 in self._pins(row):
            for _ in self._checked_chunks(info, sha3, None):
                pass
            checked.append({"part": part, "blob_id": info.blob_id, "size": info.size})
        return {
            "id": entry_id,
            "ok": True,
            "core_hash": digest,
            "signature": "valid",
            "public_key": row["public_key"],
            "blobs": checked,
        }

    def _pins(self, row: dict[str, Any]) -> Iterator[tuple[str, BlobInfo, str | None]]:
        pins = (
            ("wasm", "blob_wasm", None, None),
            ("abi", None, "blob_abi", "blob_abi"),
            ("manifest", "blob_manifest", None, "manifest_hash"),
            ("proof", "blob_proof", None, "proof_hash"),
        )
        for part, b3_field, sha3_field, expect_field in pins:
            with self.ledger.store.read() as txn:
                if b3_field is not None:
                    ref = row.get(b3_field)
                    info = self.blobs.index.blob(txn, ref) if isinstance(ref, str) else None
                else:
                    assert sha3_field is not None
                    ref = row.get(sha3_field)
                    info = self.blobs.index.by_sha3(txn, ref) if isinstance(ref, str) else None
            if info is None:
                raise CheckFailed(
                    "E-BLOB-MISSING", f"entry {row['id']}: {part} blob {ref} is not stored"
                )
            yield part, info, None if expect_field is None else row.get(expect_field)

    def _checked_chunks(
        self, info: BlobInfo, sha3: str | None, limit: int | None
    ) -> Iterator[bytes]:
        if limit is not None and info.size > limit:
            raise BadInput("E-BAD-INPUT", f"blob {info.blob_id} is larger than {limit} bytes")
        h = hashlib.sha3_256()
        for chunk in self.blobs.chunks(info.blob_id, info):
            h.update(chunk)
            yield chunk
        if sha3 is not None and h.hexdigest() != sha3:
            raise CheckFailed(
                "E-HASH-MISMATCH", f"blob {info.blob_id}: SHA3-256 does not match the entry"
            )


def signed_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The v0.9 fields as signed: ``selfverify_*`` as they were when the entry was signed
    (a later ``registry exec`` updates the row, not the signature)."""
    fields = {name: row.get(name) for name in V09_FIELDS}
    fields.update(row.get("signed") or {})
    return fields
