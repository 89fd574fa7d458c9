"""Signed checkpoints: an Ed25519 statement of the public BLAKE3 head at one seq.

The HMAC chain proves nothing against someone who holds its key: they can rewrite history
and recompute both chains. They cannot make the rewritten log reproduce the BLAKE3 value
at a seq somebody signed and kept, so an auditor holding a checkpoint (and the signer's
public key) detects any rewrite or truncation of what it covers. Format: docs/CHECKPOINTS.md.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from ledger.canonical import canonical_json, loads_json_strict
from ledger.errors import BadInput, CheckFailed
from ledger.events import Event, rfc3339_now
from ledger.infile import read_bounded
from ledger.keys import Ed25519Keypair, verify_signature
from ledger.log import EventLog, VerifyReport
from ledger.logs import get_logger

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_TYPE",
    "AutoCheckpointer",
    "Checkpoint",
    "append_checkpoint",
    "load_checkpoint",
    "verify_checkpoints",
]

CHECKPOINT_FORMAT = "cap-checkpoint/1"
CHECKPOINT_TYPE = "ledger.checkpoint"
MAX_CHECKPOINT_BYTES = 64 << 10
_HEX32 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("b3", "format", "ledger_id", "public_key", "seq", "signature", "ts")
_log = get_logger(__name__)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(slots=True, frozen=True)
class Checkpoint:
    """The signed statement "ledger ``ledger_id`` had BLAKE3 head ``b3`` at ``seq``"."""

    ledger_id: str
    seq: int
    b3: str
    ts: str
    public_key: str
    signature: str

    def statement(self) -> dict[str, Any]:
        """What is signed: every field but the signature."""
        return {
            "b3": self.b3,
            "format": CHECKPOINT_FORMAT,
            "ledger_id": self.ledger_id,
            "public_key": self.public_key,
            "seq": self.seq,
            "ts": self.ts,
        }

    def signed_bytes(self) -> bytes:
        return canonical_json(self.statement())

    def to_json(self) -> dict[str, Any]:
        return {**self.statement(), "signature": self.signature}

    @classmethod
    def sign(cls, ledger_id: str, seq: int, b3: bytes, keypair: Ed25519Keypair) -> Checkpoint:
        unsigned = cls(ledger_id, seq, b3.hex(), rfc3339_now(), _b64(keypair.public_key), "")
        return cls(
            ledger_id,
            seq,
            unsigned.b3,
            unsigned.ts,
            unsigned.public_key,
            _b64(keypair.sign(unsigned.signed_bytes())),
        )

    @classmethod
    def from_json(cls, doc: Any, *, what: str = "checkpoint") -> Checkpoint:
        """Parse a checkpoint document; anything malformed is ``E-BAD-INPUT``."""
        if not isinstance(doc, dict) or set(doc) != set(_FIELDS):
            raise BadInput("E-BAD-INPUT", f"{what}: needs exactly the fields {', '.join(_FIELDS)}")
        if doc["format"] != CHECKPOINT_FORMAT:
            raise BadInput("E-BAD-INPUT", f"{what}: format must be {CHECKPOINT_FORMAT}")
        seq = doc["seq"]
        if type(seq) is not int or seq < 0:
            raise BadInput("E-BAD-INPUT", f"{what}: seq must be a non-negative integer")
        if not isinstance(doc["b3"], str) or not _HEX32.match(doc["b3"]):
            raise BadInput("E-BAD-INPUT", f"{what}: b3 must be 64 lowercase hex digits")
        for name in ("ledger_id", "ts", "public_key", "signature"):
            if not isinstance(doc[name], str):
                raise BadInput("E-BAD-INPUT", f"{what}: {name} must be a string")
        return cls(doc["ledger_id"], seq, doc["b3"], doc["ts"], doc["public_key"], doc["signature"])

    def check_signature(self, public_key: bytes) -> None:
        """``E-SIGNATURE-INVALID`` unless ``public_key`` signed exactly this statement."""
        try:
            claimed = base64.b64decode(self.public_key, validate=True)
            signature = base64.b64decode(self.signature, validate=True)
        except ValueError:
            raise CheckFailed(
                "E-SIGNATURE-INVALID", "checkpoint key or signature is not base64"
            ) from None
        if claimed != public_key:
            raise CheckFailed(
                "E-SIGNATURE-INVALID", "checkpoint was signed by another key than --pubkey"
            )
        verify_signature(public_key, self.signed_bytes(), signature)


def load_checkpoint(path: Path) -> Checkpoint:
    data = read_bounded(path, MAX_CHECKPOINT_BYTES, "checkpoint file")
    return Checkpoint.from_json(loads_json_strict(data, what=str(path)), what=str(path))


def write_checkpoint(path: Path, cp: Checkpoint) -> None:
    path.write_text(json.dumps(cp.to_json(), sort_keys=True, indent=1) + "\n")


def append_checkpoint(
    log: EventLog, keypair: Ed25519Keypair, actor: str = "system"
) -> tuple[Checkpoint, Event]:
    """Sign the head as it is inside the write transaction and record the statement as a
    ``ledger.checkpoint`` event (which lands at the checkpoint's seq + 1)."""
    events_db = log.store.db("events")

    def sign_head(txn: lmdb.Transaction, payload: dict[str, Any]) -> dict[str, Any]:
        cur = txn.cursor(db=events_db)
        if not cur.last():
            raise CheckFailed("E-CHAIN-BROKEN", "the log has no events")
        seq = int.from_bytes(cur.key(), "big")
        return Checkpoint.sign(log.ledger_id, seq, bytes(cur.value()[:32]), keypair).to_json()

    event = log.append(CHECKPOINT_TYPE, {}, actor, precheck=sign_head)
    return Checkpoint.from_json(event.payload), event


def verify_checkpoints(
    log: EventLog,
    checkpoints: list[Checkpoint],
    public_key: bytes,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Prove the current log extends every checkpoint: each signature holds, the log still
    reaches its seq with its BLAKE3 value, and both chains recompute from genesis to head
    (which is what ties the signed value at that seq to every event before it)."""
    head = log.head()
    for cp in checkpoints:
        cp.check_signature(public_key)
        if cp.ledger_id != log.ledger_id:
            raise CheckFailed(
                "E-CHAIN-BROKEN",
                f"checkpoint is for ledger {cp.ledger_id}, this ledger is {log.ledger_id}",
            )
        if cp.seq > head.seq:
            raise CheckFailed(
                "E-CHAIN-BROKEN",
                f"chain broken at seq {head.seq + 1}: the log ends at seq {head.seq} but a "
                f"signed checkpoint covers seq {cp.seq} (history truncated)",
                seq=head.seq + 1,
            )
        stored = log.get(cp.seq).b3.hex()
        if stored != cp.b3:
            raise CheckFailed(
                "E-CHAIN-BROKEN",
                f"chain broken at seq {cp.seq}: BLAKE3 value differs from the signed "
                f"checkpoint of {cp.ts} (history up to seq {cp.seq} was rewritten)",
                seq=cp.seq,
            )
    return log.verify(0, None, progress=progress)


class AutoCheckpointer:
    """Append a signed checkpoint every ``every_events`` events or ``every_seconds`` seconds,
    whichever comes first, while there is anything new to cover (used by the service)."""

    def __init__(
        self,
        log: EventLog,
        keypair: Ed25519Keypair,
        *,
        every_events: int | None = 10_000,
        every_seconds: float | None = 300.0,
        actor: str = "system:checkpoint",
    ) -> None:
        if not every_events and not every_seconds:
            raise BadInput("E-BAD-INPUT", "automatic checkpoints need a count or an interval")
        self.log = log
        self.keypair = keypair
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.actor = actor
        self._mark = -1  # the head seq when the last checkpoint was considered
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.made = 0

    def start(self) -> None:
        self.log.add_listener(self._on_commit)
        self._thread = threading.Thread(target=self._run, name="cap-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _on_commit(self, events: list[Event]) -> None:  # runs in the writer thread
        """Counted by seq, not by events seen here: other processes appending to the same
        log (the service's other workers) move it too."""
        with self._lock:
            if self._mark < 0:
                self._mark = events[0].seq - 1
            due = bool(self.every_events) and events[-1].seq - self._mark >= (
                self.every_events or 0
            )
        if due:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                self._mark = self.log.head().seq
            if self._last_is_checkpoint():  # nothing new since the last one
                continue
            try:
                _, ev = append_checkpoint(self.log, self.keypair, self.actor)
            except Exception as exc:  # keep checkpointing; the next attempt may succeed
                _log.warning("checkpoint_failed", error=str(exc))
                continue
            with self._lock:
                self._mark = max(self._mark, ev.seq)  # the checkpoint itself is not counted
            self.made += 1
            _log.info("checkpoint", seq=ev.seq - 1)

    def _last_is_checkpoint(self) -> bool:
        head = self.log.head()
        return self.log.get(head.seq).type == CHECKPOINT_TYPE
