"""Per-call latency of a verifier run: bare wasmtime (the floor), warm, cold, process start.

Peers run side by side in each round, interleaved, so machine noise hits them alike:

- bare:         the same cap_alloc/cap_verify calls on a pre-linked module with wasmtime-py
                and nothing else (fresh store, fuel, deadline): the floor
- warm:         ledger.sandbox.run_verifier with the module in the in-memory cache
                (hashing, ABI parse, limits, log, result included)
- registry exec: `registry exec` in process, end to end: the entry's four blobs read from
                the store and re-hashed against their pins, the run, and the synced append
                of the selfverify.result event (projection applied in the same commit)
- exec without append: the same minus the event (blobs from the store, re-hash, run)
- synced append: one trivial event appended and fsynced: the ledger's durability floor,
                which every recorded exec pays on top of the run
- cold-disk:    in-memory cache emptied, artifact loaded from the authenticated disk cache
- cold-compile: no cache at all: compile from the wasm bytes

Then two fresh processes open the ledger and exec the entry: the second must not compile.
Prints medians over rounds, the spread (min..max of round medians) and the ratios next to
the issue's targets. ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from nacl.signing import SigningKey  # noqa: E402

from api.services import registry  # noqa: E402
from ledger.datadir import DataDir  # noqa: E402
from ledger.keys import Ed25519Keypair, StaticKeyProvider  # noqa: E402
from ledger.ledger import Ledger  # noqa: E402
from ledger.registry import Package  # noqa: E402
from ledger.sandbox import Limits, run_verifier  # noqa: E402
from ledger.sandbox.cache import module_cache  # noqa: E402
from ledger.sandbox.engine import engine_for  # noqa: E402
from ledger.selfverify import SelfVerifier  # noqa: E402
from projections import default_consumers  # noqa: E402

EXAMPLE = REPO / "examples" / "sha256-verifier"
WARM_TARGET_US = 2000
RATIO_TARGET = 1.5


def load() -> tuple[bytes, bytes, bytes, bytes]:
    names = ("verifier.wasm", "verifier.abi.json", "manifest.json", "proof.txt")
    wasm, abi, manifest, proof = ((EXAMPLE / n).read_bytes() for n in names)
    return wasm, abi, manifest, proof


def bare_call(wasm: bytes, manifest: bytes, proof: bytes) -> Callable[[], None]:
    """The floor: what any wasmtime-py embedding must do for this call, nothing more."""
    se = engine_for(Limits().stack_bytes)
    pre = se.linker.instantiate_pre(wasmtime.Module(se.engine, wasm))

    def call() -> None:
        store = wasmtime.Store(se.engine)
        store.set_fuel(200_000_000)
        store.set_epoch_deadline(1_000_000)
        exports = pre.instantiate(store).exports(store)
        memory, alloc, verify = exports["memory"], exports["cap_alloc"], exports["cap_verify"]
        m = alloc(store, len(manifest))
        memory.write(store, manifest, m)  # type: ignore[union-attr]
        p = alloc(store, len(proof))
        memory.write(store, proof, p)  # type: ignore[union-attr]
        if verify(store, m, len(manifest), p, len(proof)) != 0:
            raise SystemExit("bare call: verifier said no")

    return call


def per_call_us(fn: Callable[[], None], calls: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls / 1000


def open_ledger(root: Path, key: bytes) -> Ledger:
    data = DataDir(root)
    if not data.initialized():
        Ledger.init(data, StaticKeyProvider(key), actor="bench")
    return Ledger.open(data, StaticKeyProvider(key), default_consumers(data))


_EXEC_IN_A_NEW_PROCESS = """
import json, sys
from pathlib import Path
from api.services import registry
from ledger.datadir import DataDir
from ledger.keys import StaticKeyProvider
from ledger.ledger import Ledger
from ledger.sandbox.cache import module_cache
from ledger.selfverify import SelfVerifier
from projections import default_consumers
data, entry = DataDir(Path(sys.argv[1])), sys.argv[3]
key = StaticKeyProvider(bytes.fromhex(sys.argv[2]))
with Ledger.open(data, key, default_consumers(data)) as led:
    r, ev = SelfVerifier(cache_dir=data.cache / "wasm").exec_entry(registry(led), entry)
print(json.dumps({"ok": r.ok, "cache": r.cache, "compiles": module_cache().compiles,
                  "run_us": r.duration_us, "seq": ev.seq}))
"""


def process_start(root: Path, key: bytes, entry_id: str) -> dict[str, object]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _EXEC_IN_A_NEW_PROCESS, str(root), key.hex(), entry_id],
        capture_output=True,
        cwd=REPO,
        check=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    doc: dict[str, object] = json.loads(out.stdout)
    doc["process_ms"] = round((time.perf_counter() - start) * 1000, 1)
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (few rounds and calls)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--dir", help="where the bench ledger lives (default: a temp dir)")
    args = ap.parse_args()
    rounds, calls = (2, 20) if args.quick else (args.rounds, args.calls)
    cold_calls = max(3, calls // 50)
    wasm, abi, manifest, proof = load()

    tmp = Path(tempfile.mkdtemp(prefix="cap-bench-sandbox-", dir=args.dir))
    disk = tmp / "cache"
    counter = iter(range(10**9))

    def warm() -> None:
        if not run_verifier(wasm, abi, manifest, proof).ok:
            raise SystemExit("warm run: verifier said no")

    key = os.urandom(32)
    ledger = open_ledger(tmp / "ledger", key)
    reg = registry(ledger)
    package = Package(*(io.BytesIO(b) for b in (manifest, proof, wasm, abi)))
    entry, _ = reg.add(package, Ed25519Keypair("bench", SigningKey.generate()))
    ledger_cache = DataDir(tmp / "ledger").cache / "wasm"
    verifier = SelfVerifier(Limits(), cache_dir=ledger_cache)

    def registry_verify() -> None:
        if not verifier.verify_entry(reg, entry["id"]).ok:
            raise SystemExit("registry verify_entry: verifier said no")

    def ledger_append() -> None:
        ledger.log.append("bench.append", {"n": 1})

    def registry_exec() -> None:
        result, _ = verifier.exec_entry(reg, entry["id"])
        if not result.ok:
            raise SystemExit(f"registry exec: {result.code}")

    def cold_disk() -> None:
        module_cache().clear()
        result = run_verifier(wasm, abi, manifest, proof, cache_dir=disk)
        if result.cache != "disk":
            raise SystemExit(f"cold-disk run came from {result.cache}")

    def cold_compile() -> None:
        module_cache().clear()
        result = run_verifier(wasm, abi, manifest, proof, cache_dir=tmp / f"c{next(counter)}")
        if result.cache != "compiled":
            raise SystemExit(f"cold-compile run came from {result.cache}")

    peers: dict[str, tuple[Callable[[], None], int]] = {
        "bare wasmtime (floor)": (bare_call(wasm, manifest, proof), calls),
        "warm run_verifier": (warm, calls),
        "exec without append": (registry_verify, calls),
        "synced append (floor)": (ledger_append, max(5, calls // 5)),
        "warm registry exec": (registry_exec, max(5, calls // 5)),
        "cold, disk cache": (cold_disk, cold_calls),
        "cold, compile": (cold_compile, cold_calls),
    }
    run_verifier(wasm, abi, manifest, proof, cache_dir=disk)  # fill both caches
    for fn, _ in peers.values():
        fn()
    warm()
    samples: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(rounds):
        for name, (fn, n) in peers.items():
            if name.startswith("cold"):
                samples[name].append(per_call_us(fn, n))
                warm()  # leave the module in memory for the warm peers
            else:
                samples[name].append(per_call_us(fn, n))

    floor = statistics.median(samples["bare wasmtime (floor)"])
    print(f"sandbox bench: example sha256 verifier, {rounds} rounds x {calls} calls")
    print(f"{'peer':<24} {'median us':>10} {'spread us':>18} {'x floor':>8}")
    for name, vals in samples.items():
        med = statistics.median(vals)
        spread = f"{min(vals):.0f}..{max(vals):.0f}"
        print(f"{name:<24} {med:>10.1f} {spread:>18} {med / floor:>8.2f}")
    warm_med = statistics.median(samples["warm run_verifier"])
    exec_med = statistics.median(samples["warm registry exec"])
    no_append_med = statistics.median(samples["exec without append"])
    append_med = statistics.median(samples["synced append (floor)"])
    ledger.close()

    for stale in ledger_cache.glob("*.cwasm"):
        stale.unlink()  # the first process must compile
    first = process_start(tmp / "ledger", key, entry["id"])
    second = process_start(tmp / "ledger", key, entry["id"])
    print(f"process start 1: {first}")
    print(f"process start 2: {second}")

    checks = [
        (
            f"warm registry exec <= {WARM_TARGET_US} us",
            exec_med <= WARM_TARGET_US,
            f"{exec_med:.0f} us",
        ),
        (
            f"exec without append <= {WARM_TARGET_US} us",
            no_append_med <= WARM_TARGET_US,
            f"{no_append_med:.0f} us (+ synced append {append_med:.0f} us)",
        ),
        (
            f"warm run <= {RATIO_TARGET}x bare",
            warm_med / floor <= RATIO_TARGET,
            f"{warm_med / floor:.2f}x",
        ),
        (
            "second process start does not recompile",
            second["compiles"] == 0 and second["cache"] == "disk",
            f"compiles={second['compiles']} cache={second['cache']}",
        ),
    ]
    print("targets:")
    for label, ok, got in checks:
        print(f"  {'PASS' if ok else 'MISS'}  {label:<42} {got}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
