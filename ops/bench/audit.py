"""Audit replay benchmark: verify both chains + rebuild every projection + compare, events/s.

At 100,000 and 1,000,000 events of the registry's realistic mix (the TCAP bench's
attestations, ledger entries, note transfers and registry-sized records), with a blob put
every 50 events and a signed checkpoint every 10,000. Side by side in one run:

- ``ledger verify``: both chains alone (the floor of any audit);
- ``projections rebuild``: replay into the live tables, no verification;
- ``audit replay``: verify + rebuild into a scratch environment + compare, in one pass;
- the peer: the ``eventsourcing`` library (SQLite) reading every stored event back and
  applying it to a projection: deserialize + project, with no chain to verify.

Target: replay >= 100,000 events/s. The machine is shared and noisy: medians, spread and
ratios matter more than absolutes.

    python ops/bench/audit.py            # 100k and 1M events
    python ops/bench/audit.py --quick    # a smoke run on 5,000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcap import realistic_payload

from api.services import blob_store
from ledger.checkpoint import append_checkpoint
from ledger.keys import StaticKeyProvider, load_private_key, write_keypair
from ledger.ledger import Ledger
from ledger.log import Append
from projections import default_consumers
from projections.rebuild import rebuild
from projections.replay import audit_replay

TARGET = 100_000


def fill(led: Ledger, n: int, tmp: Path) -> None:
    """``n`` events: the realistic mix, a small blob every 50, a checkpoint every 10,000."""
    rng = random.Random(11)
    blobs = blob_store(led)
    sk, _ = write_keypair(tmp, f"cp{n}")
    signer = load_private_key(sk)
    batch: list[Append] = []
    staged = []
    written = 1  # genesis
    i = 0
    while written < n:
        if i % 50 == 49:
            s = blobs.stage_bytes(b"blob %d " % i + rng.randbytes(64))
            staged.append(s)
            batch.append(blobs.put_append(s, "application/octet-stream", "bench"))
        else:
            t, p = realistic_payload(i, rng)
            batch.append(Append(t, p, actor=f"svc:{i % 7}"))
        i += 1
        if len(batch) == 2000 or written + len(batch) >= n:
            with blobs.persisted(staged):
                led.log.append_many(batch)
            written += len(batch)
            batch, staged = [], []
            if written // 10_000 != (written - 2000) // 10_000 and written < n:
                append_checkpoint(led.log, signer)
                written += 1


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def rate_line(name: str, n: int, xs: list[float]) -> tuple[str, float]:
    rates = sorted(n / x for x in xs)
    med = statistics.median(rates)
    return (
        f"  {name:<38} median {med:>11,.0f} ev/s   min..max {rates[0]:,.0f}..{rates[-1]:,.0f}"
        f"  (n={len(xs)})",
        med,
    )


def _peer_aggregate() -> Any:
    """The peer's aggregate class, defined once (eventsourcing registers it by topic)."""
    from eventsourcing.domain import Aggregate, event

    class Attestation(Aggregate):
        def __init__(self, subject: str) -> None:
            self.subject = subject
            self.claims: list[str] = []

        @event("Claimed")
        def claim(self, payload: dict[str, Any]) -> None:
            self.claims.append(payload["kind"])

    return Attestation


_PEER: list[Any] = []


def eventsourcing_peer(n: int, tmp: Path, repeat: int) -> tuple[list[float], int] | None:
    """Store ``n`` events with the eventsourcing library (SQLite) and time reading them
    all back into a projection (aggregate id -> last version)."""
    try:
        from eventsourcing.application import Application
    except ImportError:
        return None
    if not _PEER:
        _PEER.append(_peer_aggregate())
    attestation = _PEER[0]
    db = tmp / f"es-{n}.sqlite"
    app: Any = Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    )
    rng = random.Random(11)
    written = 0
    while written < n:
        aggs = []
        for _ in range(100):
            a = attestation(subject=f"s{written}")
            for j in range(19):
                t, p = realistic_payload(written + j, rng)
                a.claim({"kind": t, **{k: v for k, v in p.items() if k != "score"}})
            aggs.append(a)
            written += 20
        app.save(*aggs)

    def replay() -> None:
        view: dict[Any, Any] = {}
        start = 1
        while True:
            notes = app.recorder.select_notifications(start=start, limit=5000)
            if not notes:
                break
            for note in notes:
                ev = app.mapper.to_domain_event(note)
                view[ev.originator_id] = ev.originator_version
            start = notes[-1].id + 1
        assert len(view) == written // 20

    times = timed(replay, repeat)
    app.close()
    return times, written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a smoke run on 5,000 events")
    ap.add_argument("--sizes", help="comma-separated event counts (default 100000,1000000)")
    ap.add_argument("--no-peer", action="store_true", help="skip the eventsourcing peer")
    ap.add_argument("--json", action="store_true", help="also print a JSON summary")
    args = ap.parse_args()
    sizes = [5_000] if args.quick else [100_000, 1_000_000]
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    print(f"audit replay benchmark on {os.cpu_count()} cores")
    print(f"target: audit replay >= {TARGET:,} events/s")
    summary: dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        keys = StaticKeyProvider(bytes(range(32)))
        for n in sizes:
            repeat = 2 if args.quick else (5 if n <= 200_000 else 3)
            root = tmp / f"led-{n}"
            Ledger.init(root, keys)
            with Ledger.open(root, keys, default_consumers(None)) as led:  # type: ignore[arg-type]
                t0 = time.perf_counter()
                fill(led, n, tmp)
                events = led.log.head().seq + 1
                size = sum(f.stat().st_size for f in (root / "lmdb").iterdir())
                print(
                    f"\n== {events:,} events ({size / 1e6:,.0f} MB of LMDB, written in "
                    f"{time.perf_counter() - t0:.1f} s; load average "
                    f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
                    flush=True,
                )
                check = audit_replay(led)
                assert check.ok and check.events == events, "a fresh ledger must replay clean"
                rows = {t.name: t.replayed_rows for t in check.tables}
                print(f"  projection rows: {rows}")
                runs = {
                    "ledger verify (both chains)": timed(led.log.verify, repeat),
                    "projections rebuild (no verify)": timed(lambda: rebuild(led), repeat),
                    "audit replay (verify+rebuild+compare)": timed(
                        lambda: audit_replay(led), repeat
                    ),
                }
            meds = {}
            for name, xs in runs.items():
                line, meds[name] = rate_line(name, events, xs)
                print(line, flush=True)
            if not args.no_peer:
                peer = eventsourcing_peer(n, tmp, repeat)
                if peer is not None:
                    name = "peer: eventsourcing read+project"
                    line, meds[name] = rate_line(name, peer[1], peer[0])
                    print(line)
            best = meds["audit replay (verify+rebuild+compare)"]
            verdict = "meets" if best >= TARGET else "MISSES"
            print(f"  audit replay {best:,.0f} ev/s: {verdict} the {TARGET:,} ev/s target")
            print(
                f"  replay / verify alone: {best / meds['ledger verify (both chains)']:.2f}"
                + (
                    f"   replay / eventsourcing peer: "
                    f"{best / meds['peer: eventsourcing read+project']:.2f}"
                    if "peer: eventsourcing read+project" in meds
                    else ""
                )
            )
            summary[str(n)] = {k: round(v) for k, v in meds.items()}
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
