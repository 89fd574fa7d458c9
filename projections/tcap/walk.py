"""Verify's hot loop: one pass over the blocks, on one core or split across two processes.

Per block: framing and fields, the chain link to the previous block, and (when the payload
can be read) ``payload_b3``, ``b3 = BLAKE3(prev_b3 || body)`` and the body's seq/id/type.
It collects what the index and the Merkle root must be. On a large capsule in a process with
no other threads, the second half of the blocks is walked by a forked child at the same
time; the halves are joined with the same link rule as any two neighbouring blocks.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from blake3 import blake3

from ledger.canonical import unpackb
from ledger.chain import ZERO, MacKey
from ledger.errors import CheckFailed
from ledger.keys import HmacKeyProvider
from projections.tcap.blocks import LEN, PayloadCodec, iter_blocks
from projections.tcap.format import corrupt
from projections.tcap.index import Row, span_key

__all__ = ["PARALLEL_MIN_BLOCKS", "Walk", "check_link", "walk_blocks"]

PARALLEL_MIN_BLOCKS = 20_000  # below this, forking costs more than it saves


@dataclass(slots=True)
class Walk:
    """What one pass over a run of blocks found."""

    rows: list[Row] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    types: dict[str, int] = field(default_factory=dict)
    body_bytes: int = 0
    count: int = 0
    sigs_checked: int = 0
    first: tuple[int, bytes] | None = None  # (height, prev_b3) of the first block
    last: tuple[int, bytes] | None = None  # (height, b3) of the last block

    def join(self, other: Walk, contiguous: bool, where: str) -> None:
        """Append ``other`` (the blocks that follow), checking the link between them."""
        if self.last is not None and other.first is not None:
            check_link(self.last, other.first, contiguous, where)
        self.rows += other.rows
        self.leaves += other.leaves
        for t, c in other.types.items():
            self.types[t] = self.types.get(t, 0) + c
        self.body_bytes += other.body_bytes
        self.sigs_checked += other.sigs_checked
        self.count += other.count
        self.first = self.first or other.first
        self.last = other.last or self.last


def check_link(
    last: tuple[int, bytes], first: tuple[int, bytes], contiguous: bool, where: str
) -> None:
    """The rule between neighbours: heights ascend; consecutive heights link by prev_b3;
    gaps only in a type-filtered capsule."""
    (last_h, last_b3), (height, prev_b3) = last, first
    if height == last_h + 1:
        if prev_b3 != last_b3:
            raise corrupt(where, f"prev_b3 of height {height} does not link to the previous block")
    elif height <= last_h:
        raise corrupt(where, f"height {height} does not follow {last_h}")
    elif contiguous:
        raise corrupt(where, f"heights jump from {last_h} to {height} (a block is missing)")


def _walk_range(
    region: bytes,
    start: int,
    stop: int,
    first_number: int,
    wire: int,
    tid: str,
    contiguous: bool,
    codec: PayloadCodec | None,
    macs: HmacKeyProvider | None = None,
) -> Walk:
    w = Walk()
    mac_keys: dict[str, MacKey] = {}
    last_sig = ZERO
    rows, leaves, types = w.rows, w.leaves, w.types
    identity = codec is not None and codec.identity
    last_h, last_b3 = -2, b""
    number = first_number
    body_bytes = 0
    for off, n, f in iter_blocks(region, wire, start, stop):
        b_tid, height, span_id, span_type, prev_b3, b3, payload_b3, sig, payload = f
        if b_tid != tid:
            raise corrupt(f"block {number} at offset {off}", "tid is not the ledger id")
        if w.first is None:
            w.first = (height, prev_b3)
        elif height != last_h + 1 or prev_b3 != last_b3:
            check_link(
                (last_h, last_b3), (height, prev_b3), contiguous, f"block {number} at offset {off}"
            )
        if codec is not None:
            body = (
                payload
                if identity
                else codec.open(payload, b_tid, height, span_id, f"block {number} at offset {off}")
            )
            if blake3(body).digest() != payload_b3:
                raise corrupt(
                    f"block {number} at offset {off}", "payload_b3 does not match the payload"
                )
            if blake3(prev_b3 + body).digest() != b3:
                raise corrupt(
                    f"block {number} at offset {off}",
                    "b3 is not BLAKE3(prev_b3 || payload): chain broken",
                )
            env = unpackb(body)
            if type(env) is not dict or (env.get("seq"), env.get("id"), env.get("type")) != (
                height,
                span_id,
                span_type,
            ):
                raise corrupt(
                    f"block {number} at offset {off}",
                    "payload's seq, id or type differ from the block's",
                )
            body_bytes += len(body)
            if macs is not None and (height == 0 or height == last_h + 1):
                # sig is the ledger's keyed chain value: HMAC(key[kid], previous sig || b3)
                key = mac_keys.get(env["kid"])
                if key is None:
                    key = mac_keys[env["kid"]] = MacKey(macs.get(env["kid"]))
                if key.mac(last_sig if height else ZERO, b3) != sig:
                    raise CheckFailed(
                        "E-SIGNATURE-INVALID",
                        f"capsule sig invalid: block {number} at offset {off}: sig is not the "
                        "ledger's HMAC chain value under the given chain key",
                        where=f"block {number} at offset {off}",
                    )
                w.sigs_checked += 1
        rows.append((span_key(span_id), off, height, span_type, n))
        leaves.append(blake3(b"\x00" + b3).digest())
        types[span_type] = types.get(span_type, 0) + 1
        last_h, last_b3, last_sig = height, b3, sig
        number += 1
    w.body_bytes = body_bytes
    w.count = number - first_number
    if w.first is not None:
        w.last = (last_h, last_b3)
    return w


def _child(conn: Any, args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", _walk_range(*args)))
    except CheckFailed as exc:
        conn.send(("failed", exc.code, exc.message, exc.details))
    except BaseException as exc:  # reported to the parent, which redoes the work itself
        conn.send(("crashed", repr(exc)))
    finally:
        conn.close()


def _halfway(region: bytes, count: int) -> int | None:
    """Offset of block ``count // 2`` by following length prefixes (None if framing is bad:
    the sequential walk then reports where)."""
    pos, end = 0, len(region)
    unpack = LEN.unpack_from
    for _ in range(count // 2):
        if pos + LEN.size > end:
            return None
        pos += LEN.size + unpack(region, pos)[0]
    return pos if pos <= end else None


def walk_blocks(
    region: bytes,
    wire: int,
    block_count: int,
    tid: str,
    contiguous: bool,
    codec: PayloadCodec | None,
    workers: int | None = None,
    macs: HmacKeyProvider | None = None,
) -> Walk:
    """Walk every block of ``region`` (the blocks section). ``workers=None`` picks two
    processes for a large capsule when forking is safe (no other threads), else one.
    ``macs``: also check each block's ``sig`` with the ledger's chain keys (one process:
    each sig depends on the previous block's)."""
    if macs is not None:
        workers = 1
    if workers is None:
        workers = (
            2
            if (
                block_count >= PARALLEL_MIN_BLOCKS
                and (os.cpu_count() or 1) > 1
                and threading.active_count() == 1
                and "fork" in multiprocessing.get_all_start_methods()
            )
            else 1
        )
    mid = _halfway(region, block_count) if workers > 1 and block_count > 1 else None
    if mid is None:
        return _walk_range(region, 0, len(region), 0, wire, tid, contiguous, codec, macs)
    second = block_count // 2
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    args = (region, mid, len(region), second, wire, tid, contiguous, codec)
    proc = ctx.Process(target=_child, args=(send, args), daemon=True)
    proc.start()
    send.close()
    try:
        head = _walk_range(region, 0, mid, 0, wire, tid, contiguous, codec)
        msg = recv.recv()
    except BaseException:
        proc.kill()
        raise
    finally:
        recv.close()
        proc.join()
    seam = f"block {second} at offset {mid}"
    if head.last is not None:  # the seam first, so faults are named as one walk would
        _, _, f = next(iter_blocks(region, wire, mid))
        if f[0] == tid:
            check_link(head.last, (f[1], f[4]), contiguous, seam)
    if msg[0] == "failed":
        raise CheckFailed(msg[1], msg[2], **msg[3])
    tail = msg[1] if msg[0] == "ok" else _walk_range(*args)
    head.join(tail, contiguous, seam)
    return head
