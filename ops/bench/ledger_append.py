"""Ledger append and verify throughput, side by side with the `eventsourcing` library on SQLite.

    python ops/bench/ledger_append.py            # full run (about a minute)
    python ops/bench/ledger_append.py --quick    # smoke run (a few seconds)

Three workloads, each run by both sides in the same process, repeats interleaved (ours,
peer, ours, peer, ...) so a noisy neighbour hurts both alike:

(a) batched durable appends: batches of BATCH events, one synced transaction per batch;
(b) one event per request from 32 concurrent writers (each waits for its own commit);
    ours with 32 threads and, separately, 32 asyncio tasks; the peer with 32 threads;
(c) `ledger verify` over the log (a) built: recompute both chains of every event. The peer
    has no chain, so its column is the nearest work it can do: read back and decode every
    event (select_notifications + its JSON transcoder).

Durability is equal in spirit: every commit reaches the disk before the writer is told.
Ours: LMDB with sync and metasync on (fsync of data and meta page per commit). Peer:
eventsourcing's SQLiteApplicationRecorder (its storage layer: its fastest path, below
Application and aggregates) with its defaults, journal_mode=WAL and the SQLite default
synchronous=FULL (the WAL is fsynced at every commit); payloads encoded with its
JSONTranscoder. Both write to files in the same temporary directory.

Prints medians with min..max over the repeats, the ratio ours/peer, and the issue's
targets: (a) >= 200,000/s, (b) >= 10x the peer's rate, (c) >= 300,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore

from ledger.keys import StaticKeyProvider
from ledger.ledger import Ledger
from ledger.log import Append
from ledger.parallel_verify import verify_log

WRITERS = 32
BATCH = 10_000
KEY = StaticKeyProvider(bytes(range(32)))


def payload(i: int) -> dict[str, Any]:
    """The same small attestation-like payload on both sides."""
    return {"subject": f"user-{i % 1000}", "score": i % 97, "seq_hint": i, "ok": True}


@dataclass(slots=True)
class Config:
    repeats: int
    batched_events: int  # per repeat, in batches of BATCH
    per_writer: int  # events per writer per repeat in (b)
    verify_repeats: int


FULL = Config(repeats=5, batched_events=200_000, per_writer=100, verify_repeats=3)
QUICK = Config(repeats=2, batched_events=20_000, per_writer=5, verify_repeats=1)


@dataclass(slots=True, frozen=True)
class Took:
    wall: float
    cpu: float  # user+system of every thread of this process and of reaped worker processes


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn: Callable[[], Any]) -> Took:
    w0, c0 = time.perf_counter(), _cpu()
    fn()
    return Took(time.perf_counter() - w0, _cpu() - c0)


def run_writers(write: Callable[[int], None]) -> Took:
    """``write(w)`` in WRITERS threads released at once; timed from release to the last."""
    go = threading.Barrier(WRITERS + 1)

    def writer(w: int) -> None:
        go.wait()
        write(w)

    pool = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in pool:
        t.start()

    def release_and_join() -> None:
        go.wait()
        for t in pool:
            t.join()

    return timed(release_and_join)


@dataclass(slots=True)
class Series:
    """Rates (events per second) of one side of one workload over the repeats: per wall
    second (the figure that counts) and per CPU second (what the work costs, which a loaded
    shared machine disturbs much less)."""

    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    def add(self, events: int, took: Took) -> None:
        self.rates.append(events / took.wall)
        self.cpu_rates.append(events / took.cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def show(self) -> str:
        return (
            f"{self.median:,.0f}/s ({min(self.rates):,.0f}..{max(self.rates):,.0f}) "
            f"cpu {statistics.median(self.cpu_rates):,.0f}"
        )


# --- ours ---------------------------------------------------------------------------------


class Ours:
    def __init__(self, root: Path) -> None:
        Ledger.init(root / "batched", KEY, actor="bench")
        Ledger.init(root / "concurrent", KEY, actor="bench")
        self.batched = Ledger.open(root / "batched", KEY)
        self.concurrent = Ledger.open(root / "concurrent", KEY)
        self.n = 0

    def batched_appends(self, events: int) -> Took:
        start = self.n
        self.n += events

        def run() -> None:  # building the events is timed on both sides
            for k in range(0, events, BATCH):
                self.batched.log.append_many(
                    [
                        Append("bench.attest", payload(start + i), "bench")
                        for i in range(k, k + BATCH)
                    ]
                )

        return timed(run)

    def threads(self, per_writer: int) -> Took:
        log = self.concurrent.log

        def write(w: int) -> None:
            for i in range(per_writer):
                log.append("bench.attest", payload(w * per_writer + i), f"writer-{w}")

        return run_writers(write)

    def tasks(self, per_writer: int) -> Took:
        log = self.concurrent.log

        async def writer(w: int) -> None:
            for i in range(per_writer):
                await log.aappend("bench.attest", payload(w * per_writer + i), f"task-{w}")

        async def run() -> None:
            await asyncio.gather(*(writer(w) for w in range(WRITERS)))

        return timed(lambda: asyncio.run(run()))

    def verify(self, parallel: bool) -> tuple[int, Took]:
        out: list[int] = []
        if parallel:
            took = timed(lambda: out.append(verify_log(self.batched.log).count))
        else:
            took = timed(lambda: out.append(self.batched.log.verify().count))
        return out[0], took

    def close(self) -> None:
        self.batched.close()
        self.concurrent.close()


# --- the peer: eventsourcing on SQLite ------------------------------------------------------


class Peer:
    def __init__(self, root: Path) -> None:
        self.transcoder = JSONTranscoder()
        self.batched = self._recorder(root / "batched.sqlite")
        self.concurrent = self._recorder(root / "concurrent.sqlite")
        self.stream = uuid.uuid4()  # (a) appends one long stream, like one log
        self.version = 0

    def _recorder(self, path: Path) -> SQLiteApplicationRecorder:
        store = SQLiteDatastore(str(path), pool_size=WRITERS + 1, pool_timeout=60)
        recorder = SQLiteApplicationRecorder(store)
        recorder.create_table()
        return recorder

    def settings(self) -> str:
        with self.batched.datastore.transaction(commit=False) as cur:
            cur.execute("PRAGMA journal_mode")
            journal = cur.fetchone()[0]
            cur.execute("PRAGMA synchronous")
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[cur.fetchone()[0]]
        return f"journal_mode={journal} synchronous={sync}"

    def _event(self, stream: uuid.UUID, version: int, i: int) -> StoredEvent:
        state = self.transcoder.encode(payload(i))
        return StoredEvent(stream, version, "bench:Attest", state)

    def batched_appends(self, events: int) -> Took:
        start = self.version
        self.version += events

        def run() -> None:
            for k in range(0, events, BATCH):
                self.batched.insert_events(
                    [self._event(self.stream, start + i, i) for i in range(k, k + BATCH)]
                )

        return timed(run)

    def threads(self, per_writer: int) -> Took:
        streams = [uuid.uuid4() for _ in range(WRITERS)]  # one aggregate per writer

        def write(w: int) -> None:
            for i in range(per_writer):
                self.concurrent.insert_events([self._event(streams[w], i, w * per_writer + i)])

        return run_writers(write)

    def read_all(self) -> tuple[int, Took]:
        count = 0

        def run() -> None:
            nonlocal count
            start = 1
            while rows := self.batched.select_notifications(start, BATCH):
                for row in rows:
                    self.transcoder.decode(row.state)
                count += len(rows)
                start = rows[-1].id + 1

        took = timed(run)
        return count, took

    def close(self) -> None:
        self.batched.datastore.close()
        self.concurrent.datastore.close()


# --- the run ------------------------------------------------------------------------------


def run(cfg: Config) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="cap-bench-"))
    try:
        (root / "ours").mkdir()
        (root / "peer").mkdir()
        ours, peer = Ours(root / "ours"), Peer(root / "peer")
        res: dict[str, Series] = {
            k: Series()
            for k in (
                "a_ours",
                "a_peer",
                "b_threads",
                "b_tasks",
                "b_peer",
                "c_par",
                "c_one",
                "c_peer",
            )
        }
        writes = WRITERS * cfg.per_writer
        for _ in range(cfg.repeats):
            res["a_ours"].add(cfg.batched_events, ours.batched_appends(cfg.batched_events))
            res["a_peer"].add(cfg.batched_events, peer.batched_appends(cfg.batched_events))
            res["b_threads"].add(writes, ours.threads(cfg.per_writer))
            res["b_peer"].add(writes, peer.threads(cfg.per_writer))
            res["b_tasks"].add(writes, ours.tasks(cfg.per_writer))
        for _ in range(cfg.verify_repeats):
            res["c_par"].add(*ours.verify(parallel=True))
            res["c_one"].add(*ours.verify(parallel=False))
            res["c_peer"].add(*peer.read_all())
        verified = ours.batched.log.head().seq + 1
        settings = peer.settings()
        ours.close()
        peer.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"series": res, "verified": verified, "peer_settings": settings}


def report(cfg: Config, out: dict[str, Any], quick: bool) -> list[str]:
    s: dict[str, Series] = out["series"]

    def row(label: str, ours: str, peer: str, ratio: float | None, target: str) -> str:
        shown = f"{ratio:.1f}x" if ratio is not None else ""
        return f"{label:<42} {ours:>42} {peer:>42} {shown:>6}  {target}"

    def ratio(a: str, b: str) -> float:
        return s[a].median / s[b].median

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    b_threads, b_tasks = ratio("b_threads", "b_peer"), ratio("b_tasks", "b_peer")
    a_ours, c_par = s["a_ours"].median, s["c_par"].median
    smoke = " [--quick: a smoke run, the figures mean nothing]" if quick else ""
    return [
        f"ledger_append: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"lmdb {version('lmdb')}, eventsourcing {version('eventsourcing')}, "
        f"SQLite {sqlite3.sqlite_version}{smoke}",
        "durability: ours LMDB sync+metasync (fsync per commit); "
        f"peer SQLite {out['peer_settings']} (WAL fsync per commit)",
        f"repeats: {cfg.repeats} (verify: {cfg.verify_repeats}); events per wall second: median "
        "(min..max), then per CPU second (all threads and worker processes)",
        "",
        row("workload", "ours", "eventsourcing/SQLite", None, "target"),
        row(
            f"(a) batched appends, {BATCH:,} per txn",
            s["a_ours"].show(),
            s["a_peer"].show(),
            ratio("a_ours", "a_peer"),
            f">= 200,000/s: {met(a_ours >= 200_000)}",
        ),
        row(
            f"(b) {WRITERS} writers, 1 event each: threads",
            s["b_threads"].show(),
            s["b_peer"].show(),
            b_threads,
            f">= 10x peer: {met(b_threads >= 10)}",
        ),
        row(
            f"(b) {WRITERS} writers, 1 event each: asyncio",
            s["b_tasks"].show(),
            "(same peer, threads)",
            b_tasks,
            f">= 10x peer: {met(b_tasks >= 10)}",
        ),
        row(
            f"(c) verify {out['verified']:,} events, parallel",
            s["c_par"].show(),
            s["c_peer"].show(),
            ratio("c_par", "c_peer"),
            f">= 300,000/s: {met(c_par >= 300_000)}",
        ),
        row(
            "(c) verify, one process",
            s["c_one"].show(),
            "(peer: read+decode, no chain)",
            ratio("c_one", "c_peer"),
            "",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny sizes")
    parser.add_argument("--json", action="store_true", help="also print the raw rates as JSON")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    out = run(cfg)
    print("\n".join(report(cfg, out, args.quick)))
    if args.json:
        raw = {k: v.rates for k, v in out["series"].items()}
        print(json.dumps({"rates": raw, "verified": out["verified"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
