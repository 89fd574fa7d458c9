"""Registry benchmark: add, list, show, rebuild and SQLite export at 100, 1,000 and 10,000
entries (the seed's sizes), five runs each, medians and spread next to the targets.

Each run builds a fresh ledger from the same input (same packages, same signing key, and a
deterministic clock patched into the ledger so timestamps repeat), so the projections and
the export must be byte-identical on every run; the bench checks that, and that a rebuild
equals the incremental tables. Floors run side by side in the same process:

- rebuild vs "log scan": decoding the same events without applying them
- show vs "raw get": one LMDB get and unpack of the row, no view, no transaction helper
- export vs "sqlite floor": the same rows inserted from memory into an empty SQLite file

``--quick`` is a smoke run (100 entries, two runs).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from nacl.signing import SigningKey  # noqa: E402

import ledger.log  # noqa: E402
import ledger.registry  # noqa: E402
from api.services import registry  # noqa: E402
from ledger.canonical import unpackb  # noqa: E402
from ledger.datadir import DataDir  # noqa: E402
from ledger.keys import Ed25519Keypair, StaticKeyProvider  # noqa: E402
from ledger.ledger import Ledger  # noqa: E402
from ledger.registry import Package  # noqa: E402
from projections import default_consumers  # noqa: E402
from projections.rebuild import rebuild, tables_digest  # noqa: E402
from projections.registry import RegistryView  # noqa: E402
from projections.sqlite_export import export_sqlite  # noqa: E402

REBUILD_TARGET = 100_000  # events per second
SHOW_TARGET_US = 1000  # per registry show by id at 10,000 entries
KEY = Ed25519Keypair("bench", SigningKey(bytes(range(32))))
HMAC = StaticKeyProvider(bytes(range(100, 132)))


class Clock:
    """A deterministic RFC 3339 clock: one millisecond per reading from a fixed epoch."""

    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> str:
        self.t += timedelta(milliseconds=1)
        return self.t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def packages(n: int) -> list[dict[str, bytes]]:
    """``n`` distinct proof packages (shared ABI per verifier, as in real registries)."""
    out = []
    for i in range(n):
        name = f"verifier-{i % 7}"
        out.append(
            {
                "manifest": json.dumps({"subject": f"s{i}", "claims": ["age>18"]}).encode(),
                "proof": hashlib.sha3_256(b"proof %d" % i).digest() * 8,
                "wasm": b"\0asm\x01\0\0\0" + (b"%d" % (i % 50)).ljust(2048, b"\0"),
                "abi": json.dumps({"abi": "cap-verifier/1", "name": name, "version": "1"}).encode(),
            }
        )
    return out


def digest_file(path: Path) -> str:
    return hashlib.sha3_256(path.read_bytes()).hexdigest()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def one_run(n: int, pkgs: list[dict[str, bytes]], root: Path) -> dict[str, Any]:
    clock = Clock()
    ledger.log.rfc3339_now = clock  # type: ignore[attr-defined]
    ledger.registry.rfc3339_now = clock  # type: ignore[attr-defined]
    data = DataDir(root)
    Ledger.init(data, HMAC)
    res: dict[str, Any] = {}
    with Ledger.open(data, HMAC, default_consumers(data)) as led:
        reg = registry(led)

        def add_all() -> list[str]:
            return [
                reg.add(Package(**{k: io.BytesIO(v) for k, v in p.items()}), KEY)[0]["id"]
                for p in pkgs
            ]

        res["add_s"], ids = timed(add_all)
        res["incremental"] = tables_digest(led)
        view = RegistryView(led.store)

        def list_all() -> int:
            count, cursor = 0, None
            while True:
                with led.store.read() as txn:
                    rows, cursor = view.list_entries(txn, limit=1000, cursor=cursor)
                count += len(rows)
                if cursor is None:
                    return count

        res["list_s"], listed = timed(list_all)
        assert listed == n

        rng = random.Random(n)
        probe = [rng.choice(ids) for _ in range(2000)]

        def show_all() -> None:
            for entry_id in probe:
                with led.store.read() as txn:
                    if view.get_entry(txn, entry_id) is None:
                        raise SystemExit("show: entry missing")

        res["show_us"] = timed(show_all)[0] / len(probe) * 1e6
        db = led.store.db("proj_registry")

        def raw_all() -> None:
            with led.store.read() as txn:
                for entry_id in probe:
                    unpackb(txn.get(entry_id.encode(), db=db))

        res["raw_show_us"] = timed(raw_all)[0] / len(probe) * 1e6

        def scan() -> int:
            with led.store.read() as txn:
                return sum(1 for _ in led.log.iter_events(txn, 0, None))

        scan_s, events = timed(scan)
        report = rebuild(led)
        res["rebuild_eps"] = report.events / report.seconds
        res["scan_eps"] = events / scan_s
        res["events"] = report.events
        res["rebuilt"] = tables_digest(led)

        out = root.parent / f"export-{root.name}.sqlite"
        res["export_s"] = timed(lambda: export_sqlite(led, out))[0]
        res["export"] = digest_file(out)
        data_out = root.parent / f"export-data-{root.name}.sqlite"
        res["export_data_s"] = timed(lambda: export_sqlite(led, data_out, with_data=True))[0]
        res["export_data"] = digest_file(data_out)
        conn = sqlite3.connect(out)
        rows = conn.execute("SELECT * FROM registry_entries").fetchall()
        schema = [r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
        conn.close()
        floor = root.parent / f"floor-{root.name}.sqlite"

        def sqlite_floor() -> None:
            c = sqlite3.connect(floor, isolation_level=None)
            c.execute("PRAGMA journal_mode=OFF")
            c.execute("BEGIN")
            for sql in schema:
                c.execute(sql)
            c.executemany(f"INSERT INTO registry_entries VALUES ({','.join('?' * 14)})", rows)
            c.execute("COMMIT")
            c.close()

        res["sqlite_floor_s"] = timed(sqlite_floor)[0]
    return res


def spread(values: list[float]) -> str:
    return f"{min(values):.4g}..{max(values):.4g}"


def rows_for(n: int, runs: list[dict[str, Any]]) -> Iterator[tuple[str, list[float], str]]:
    yield "add (entries/s)", [n / r["add_s"] for r in runs], "/s"
    yield "list all (ms)", [r["list_s"] * 1e3 for r in runs], "ms"
    yield "show by id (us)", [r["show_us"] for r in runs], "us"
    yield "  floor: raw get (us)", [r["raw_show_us"] for r in runs], "us"
    yield "rebuild (events/s)", [r["rebuild_eps"] for r in runs], "/s"
    yield "  floor: log scan (events/s)", [r["scan_eps"] for r in runs], "/s"
    yield "export sqlite (ms)", [r["export_s"] * 1e3 for r in runs], "ms"
    yield "export --with-data (ms)", [r["export_data_s"] * 1e3 for r in runs], "ms"
    yield "  floor: sqlite inserts (ms)", [r["sqlite_floor_s"] * 1e3 for r in runs], "ms"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 100 entries, 2 runs")
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 2 if args.quick else args.runs
    results: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="cap-bench-registry-") as tmp:
        for n in sizes:
            pkgs = packages(n)
            results[n] = [one_run(n, pkgs, Path(tmp) / f"n{n}-r{r}") for r in range(runs)]
    print(f"registry bench: {runs} runs per size, median and spread (min..max)")
    print(f"{'operation':<30} {'entries':>7} {'median':>12} {'spread':>22} {'spread %':>9}")
    for n, rs in results.items():
        for label, values, _unit in rows_for(n, rs):
            med = statistics.median(values)
            pct = (max(values) - min(values)) / med * 100 if med else 0.0
            print(f"{label:<30} {n:>7} {med:>12.4g} {spread(values):>22} {pct:>8.1f}%")
        print(f"{'events in the log':<30} {n:>7} {rs[0]['events']:>12}")
    print("targets:")
    ok_all = True
    for n, rs in results.items():
        same = all(
            r[k] == rs[0][k]
            for r in rs
            for k in ("incremental", "rebuilt", "export", "export_data")
        )
        equal = all(r["incremental"] == r["rebuilt"] for r in rs)
        for label, ok in (
            (f"byte-identical projections and export over {len(rs)} runs (n={n})", same),
            (f"rebuild equals incremental tables (n={n})", equal),
        ):
            ok_all &= ok
            print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    big = max(results)
    eps = statistics.median(r["rebuild_eps"] for r in results[big])
    show = statistics.median(r["show_us"] for r in results[big])
    for label, ok, got in (
        (f"rebuild >= {REBUILD_TARGET:,} events/s (n={big})", eps >= REBUILD_TARGET, f"{eps:,.0f}"),
        (f"registry show <= {SHOW_TARGET_US} us (n={big})", show <= SHOW_TARGET_US, f"{show:.1f}"),
    ):
        print(f"  {'PASS' if ok else 'MISS'}  {label:<44} {got}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
