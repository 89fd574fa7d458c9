"""HTTP service throughput: N concurrent clients putting small blobs and reading entries
against a live `cap-agent serve`, next to the raw in-process append rate as the floor.

    python ops/bench/http.py              # 1, 16, 64 clients; --workers = the core count
    python ops/bench/http.py --workers 1  # one serving process
    python ops/bench/http.py --quick      # smoke run (a few seconds)

The service runs as users run it (`cap-agent serve --workers N`, JSON access log on, to a
file). The load comes from wrk (C, one thread, keep-alive connections) when it is installed
(`make sysdeps`), else from aiohttp sessions in this process (`--client aiohttp`), which
costs a core of Python itself and so understates the service on a 2-core host. A put is
durable when answered (the writer's group commit, LMDB synced). Reads are
GET /v1/registry/entries/{id} over a few entries added first. The floor is the same ledger
code without HTTP: N threads appending one small event each and waiting for it.

Server and load generator share the 2-core machine (and whatever else runs on it): the
figures are what this machine gives, not what the service could do on its own host.
Prints medians with min..max over the repeats, p50/p99 latency (wrk: its percentiles of the
median run), a one-worker line at the top client count for comparison, and the issue's
targets: >= 5,000 durable blob puts/s at 64 clients, reads >= 10,000/s, p99 < 50 ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py (the issue names it): drop its directory from the import path
# before anything imports the standard library's http package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
REPO = _HERE.parents[1]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import aiohttp  # noqa: E402

from ledger.datadir import DataDir  # noqa: E402
from ledger.keys import StaticKeyProvider  # noqa: E402
from ledger.ledger import Ledger  # noqa: E402

TARGET_PUTS, TARGET_READS, TARGET_P99_MS = 5_000, 10_000, 50.0


def start_server(data: Path, log: Path, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAP_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api",
            "--data",
            str(data),
            "--json",
            "serve",
            "--port",
            "0",
            "--workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=log.open("ab"),
        env=env,
        cwd=REPO,
    )
    assert proc.stdout is not None
    token = ""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"serve did not start: {log.read_text()[-2000:]}")
        doc = json.loads(line)
        token = doc.get("admin_token", token)
        if "listening" in doc:
            return proc, doc["listening"][0], token


async def seed_entries(url: str, headers: dict[str, str], n: int) -> list[str]:
    ids = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for i in range(n):
            form = aiohttp.FormData()
            form.add_field("manifest", json.dumps({"bench": i}).encode(), filename="m")
            form.add_field("proof", b"proof-%d" % i, filename="p")
            form.add_field("verifier", b"\0asm\x01\0\0\0" + b"%d" % i, filename="v")
            abi = {"abi": "cap-verifier/1", "name": "bench", "version": "1"}
            form.add_field("abi", json.dumps(abi).encode(), filename="a")
            async with http.post(f"{url}/v1/registry/entries", data=form) as resp:
                assert resp.status == 201, await resp.text()
                ids.append((await resp.json())["id"])
    return ids


async def aiohttp_clients(
    url: str, headers: dict[str, str], clients: int, seconds: float, kind: str, ids: list[str]
) -> tuple[float, float, float, int]:
    """``clients`` aiohttp loops for ``seconds``: req/s, p50 ms, p99 ms, failures."""
    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds

    async def client(n: int, http: aiohttp.ClientSession) -> None:
        nonlocal failures
        i = 0
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            if kind == "put":
                body = b"bench %d %d %f" % (n, i, start)
                req = http.put(f"{url}/v1/blobs", data=body, headers={"Content-Type": "text/plain"})
                ok = 201
            else:
                req = http.get(f"{url}/v1/registry/entries/{ids[(n + i) % len(ids)]}")
                ok = 200
            async with req as resp:
                await resp.read()
                if resp.status != ok:
                    failures += 1
            latencies.append(time.perf_counter() - start)
            i += 1

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as http:
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    return (
        len(latencies) / seconds,
        pct(latencies, 0.50) * 1000,
        pct(latencies, 0.99) * 1000,
        failures,
    )


_WRK_PUT = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("PUT", "/v1/blobs", nil, "bench %(tag)s " .. n)
end
"""
_WRK_READ = """
local ids = {%(ids)s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/registry/entries/" .. ids[(n %% #ids) + 1])
end
"""
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk_clients(
    url: str, token: str, clients: int, seconds: float, kind: str, ids: list[str]
) -> tuple[float, float, float, int]:
    """wrk with ``clients`` keep-alive connections: req/s, p50 ms, p99 ms, failures
    (non-2xx answers and socket errors)."""
    script = (_WRK_PUT if kind == "put" else _WRK_READ) % {
        "tag": os.urandom(8).hex(),  # every run puts new bytes: no deduplicated puts
        "ids": ", ".join(f'"{i}"' for i in ids),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as f:
        f.write(script)
        f.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                f.name,
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: text/plain",
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def latency(q: str) -> float:
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)$", out, re.M)
        return float(m.group(1)) * _UNIT_MS[m.group(2)] if m else float("nan")

    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = (int(bad.group(1)) if bad else 0) + (
        sum(int(g) for g in errors.groups()) if errors else 0
    )
    return rate, latency("50"), latency("99"), failures


def measure(
    workers: int, levels: tuple[int, ...], seconds: float, repeats: int, client: str
) -> dict[str, dict[str, float]]:
    """One service with ``workers`` processes: puts then reads at each client count."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, token = start_server(Path(tmp) / "ledger", Path(tmp) / "serve.log", workers)
        headers = {"Authorization": f"Bearer {token}"}
        try:
            ids = asyncio.run(seed_entries(url, headers, 8))
            for kind in ("put", "read"):
                for clients in levels:
                    runs = []
                    for _ in range(repeats):
                        if client == "wrk":
                            runs.append(wrk_clients(url, token, clients, seconds, kind, ids))
                        else:
                            runs.append(
                                asyncio.run(
                                    aiohttp_clients(url, headers, clients, seconds, kind, ids)
                                )
                            )
                    rates = [r[0] for r in runs]
                    results[f"{kind}@{clients}"] = {
                        "rps_median": statistics.median(rates),
                        "rps_min": min(rates),
                        "rps_max": max(rates),
                        "p50_ms": statistics.median(r[1] for r in runs),
                        "p99_ms": statistics.median(r[2] for r in runs),
                        "failures": sum(r[3] for r in runs),
                    }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return results


def floor_rate(threads: int, seconds: float) -> float:
    """In-process durable appends/s: ``threads`` writers, one small event each, no HTTP."""
    with tempfile.TemporaryDirectory() as tmp:
        data = DataDir(Path(tmp) / "floor")
        keys = StaticKeyProvider(os.urandom(32))
        Ledger.init(data, keys)
        with Ledger.open(data, keys) as led:
            counts = [0] * threads
            stop_at = time.perf_counter() + seconds

            def worker(n: int) -> None:
                while time.perf_counter() < stop_at:
                    led.log.append("bench.ev", {"n": n, "i": counts[n]})
                    counts[n] += 1

            ts = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
            start = time.perf_counter()
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            return sum(counts) / (time.perf_counter() - start)


def busy_elsewhere(seconds: float = 1.0) -> float:
    """The share of all cores busy over ``seconds`` before the run starts, when nothing of
    this benchmark runs yet (NaN without /proc/stat): a leftover service or a neighbour on
    a shared host lowers every figure, and this says so next to them."""

    def ticks() -> tuple[int, int]:
        with open("/proc/stat") as f:
            cpu = [int(x) for x in f.readline().split()[1:]]
        idle = cpu[3] + cpu[4]  # idle + iowait
        return sum(cpu) - idle, sum(cpu)

    try:
        busy0, all0 = ticks()
        time.sleep(seconds)
        busy1, all1 = ticks()
    except OSError:
        return float("nan")
    return (busy1 - busy0) / max(1, all1 - all0)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="serve --workers (default: cores)"
    )
    ap.add_argument(
        "--client",
        choices=["wrk", "aiohttp"],
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="load generator (default wrk when installed)",
    )
    args = ap.parse_args()
    levels = (1, 4) if args.quick else (1, 16, 64)
    seconds = 1.0 if args.quick else 3.0
    repeats = 1 if args.quick else 3
    top = max(levels)

    background = busy_elsewhere()
    results = measure(args.workers, levels, seconds, repeats, args.client)
    one = measure(1, (top,), seconds, repeats, args.client) if args.workers != 1 else None
    floors = {c: statistics.median(floor_rate(c, seconds) for _ in range(repeats)) for c in levels}
    if args.json:
        print(
            json.dumps(
                {
                    "workers": args.workers,
                    "client": args.client,
                    "http": results,
                    "one_worker": one,
                    "floor_appends_per_s": floors,
                    "busy_before_run": background,
                }
            )
        )
        return 0
    print(
        f"HTTP service, {args.workers} worker(s), load from {args.client}, on this machine "
        f"({os.cpu_count()} cores shared with the load), {repeats} x {seconds:g} s per cell"
    )
    print(f"cores busy before the run (others' load): {background:.0%}")
    if background > 0.05:
        print("warning: something else is using the CPU; every figure below is lowered by it")
    print(
        f"{'workload':<10} {'clients':>7} {'req/s median':>13} {'min..max':>17} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'fail':>5} {'floor/s':>9}"
    )
    rows = [(k, args.workers, r) for k, r in results.items()]
    rows += [(k, 1, r) for k, r in (one or {}).items()]
    for key, workers, r in rows:
        kind, clients = key.split("@")
        floor = f"{floors[int(clients)]:>9,.0f}" if kind == "put" else f"{'':>9}"
        label = kind if workers == args.workers else f"{kind} (1w)"
        print(
            f"{label:<10} {clients:>7} {r['rps_median']:>13,.0f} "
            f"{r['rps_min']:>8,.0f}..{r['rps_max']:<8,.0f} {r['p50_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['failures']:>5} {floor}"
        )
    put, read = results[f"put@{top}"], results[f"read@{top}"]
    print(
        f"targets at {top} clients: puts {put['rps_median']:,.0f}/s (>= {TARGET_PUTS:,}), "
        f"reads {read['rps_median']:,.0f}/s (>= {TARGET_READS:,}), "
        f"p99 put {put['p99_ms']:.1f} ms / read {read['p99_ms']:.1f} ms (< {TARGET_P99_MS:g})"
    )
    if one is not None:
        print(
            f"{args.workers} workers / 1 worker at {top} clients: puts "
            f"{put['rps_median'] / one[f'put@{top}']['rps_median']:.2f}x, reads "
            f"{read['rps_median'] / one[f'read@{top}']['rps_median']:.2f}x"
        )
    print("floor = the same ledger in process, no HTTP: threads appending one event each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
