"""Hostile modules: each ends with its contract code within its limit, and the process
stays healthy (bounded memory, no stray threads, good verifiers still verify)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.sandbox import Limits, VerifierPool, VerifierResult, run_verifier
from ledger.sandbox.hostlog import MAX_LINE_BYTES, MAX_LOG_BYTES, MAX_LOG_LINES
from tests.ledger.sandbox_support import HOSTILE_ABI, example, hostile

SMALL = Limits(fuel=2_000_000, memory_mb=4, stack_kb=64, call_ms=5_000)

# module -> (limits, expected code)
CASES: dict[str, tuple[Limits, str | None]] = {
    "infinite_loop": (SMALL, "E-SANDBOX-OUT-OF-FUEL"),
    "start_spin": (SMALL, "E-SANDBOX-OUT-OF-FUEL"),
    "memory_bomb": (SMALL, "E-SANDBOX-MEMORY"),
    "huge_memory": (SMALL, "E-SANDBOX-MEMORY"),
    "huge_table": (SMALL, "E-SANDBOX-MEMORY"),
    "wasi_import": (SMALL, "E-SANDBOX-FORBIDDEN-IMPORT"),
    "clock_import": (SMALL, "E-SANDBOX-FORBIDDEN-IMPORT"),
    "log_wrong_type": (SMALL, "E-SANDBOX-FORBIDDEN-IMPORT"),
    "deep_recursion": (SMALL, "E-SANDBOX-TRAP"),
    "trap": (SMALL, "E-SANDBOX-TRAP"),
    "out_of_bounds": (SMALL, "E-SANDBOX-TRAP"),
    "bad_pointer": (SMALL, "E-SANDBOX-TRAP"),
    "no_exports": (SMALL, "E-ABI-INVALID"),
    "log_flood": (SMALL, None),
}
TIMEOUT = Limits(fuel=10**15, memory_mb=4, call_ms=30)  # fuel to spare: the clock stops it


def run(name: str, limits: Limits) -> VerifierResult:
    return run_verifier(hostile(name), HOSTILE_ABI, b"manifest", b"proof", limits=limits)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_module_gives_its_code(name: str) -> None:
    limits, code = CASES[name]
    result = run(name, limits)
    assert result.code == code, result.message
    assert result.fuel_used is not None and result.fuel_used <= limits.fuel


@pytest.mark.parametrize("name", ["infinite_loop", "start_spin"])
def test_out_of_fuel_stops_at_exactly_the_fuel_limit(name: str) -> None:
    for fuel in (1_000, 123_457):
        result = run(name, Limits(fuel=fuel))
        assert (result.code, result.fuel_used) == ("E-SANDBOX-OUT-OF-FUEL", fuel)


def test_wall_clock_limit_interrupts_a_loop_fuel_would_not_stop() -> None:
    result = run("infinite_loop", TIMEOUT)
    assert (result.code, result.fuel_used) == ("E-SANDBOX-TIMEOUT", None)
    assert result.duration_us >= TIMEOUT.call_ms * 1000  # the deadline never fires early
    assert "30 ms" in result.message


def test_memory_bomb_is_stopped_at_the_memory_limit() -> None:
    small, large = run("memory_bomb", SMALL), run("memory_bomb", Limits(memory_mb=8))
    assert small.code == large.code == "E-SANDBOX-MEMORY"
    # It grows until refused: twice the memory takes more steps to exhaust.
    assert small.fuel_used is not None and large.fuel_used is not None
    assert large.fuel_used > small.fuel_used


def test_a_trap_unrelated_to_memory_stays_a_trap() -> None:
    assert run("out_of_bounds", Limits(memory_mb=1)).code == "E-SANDBOX-TRAP"


def test_stack_limit_bounds_recursion_depth() -> None:
    shallow = run("deep_recursion", Limits(stack_kb=64))
    deep = run("deep_recursion", Limits(stack_kb=1024))
    assert shallow.code == deep.code == "E-SANDBOX-TRAP"
    assert "stack_overflow" in shallow.message
    assert shallow.fuel_used is not None and deep.fuel_used is not None
    assert deep.fuel_used > 8 * shallow.fuel_used  # 16x the stack, ~16x the frames


def test_declared_memory_over_the_limit_never_instantiates() -> None:
    result = run("huge_memory", SMALL)
    assert (result.code, result.fuel_used) == ("E-SANDBOX-MEMORY", 0)
    assert "4194304 KiB" in result.message


def test_log_is_bounded_in_lines_and_bytes_and_sanitized() -> None:
    result = run("log_flood", SMALL)
    assert result.ok
    assert result.log[0] == "info: <cap_log: range outside linear memory>"
    assert len(result.log) <= MAX_LOG_LINES
    kept = sum(len(line.encode()) for line in result.log)
    assert kept <= MAX_LOG_BYTES + len(result.log) * (len("info: ") + 2 * MAX_LINE_BYTES)
    assert result.log_dropped >= 2000 - MAX_LOG_LINES
    assert all(line.isprintable() for line in result.log)
    assert "\x1b" not in "".join(result.log)  # no terminal escapes get through
    assert result.log[1].startswith("info: flood\ufffd[31m\ufffd")


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _every_hostile_once() -> list[str | None]:
    codes = [run(name, limits).code for name, (limits, _) in sorted(CASES.items())]
    codes.append(run("infinite_loop", TIMEOUT).code)
    return codes


def test_fifty_rounds_of_every_hostile_module_do_not_grow_memory() -> None:
    expected = [code for _, (_, code) in sorted(CASES.items())] + ["E-SANDBOX-TIMEOUT"]
    threads = threading.active_count()
    for _ in range(5):  # warm up: engines, compiled modules, allocator pools
        assert _every_hostile_once() == expected
    gc.collect()
    before = _rss_bytes()
    for _ in range(50):
        assert _every_hostile_once() == expected
    gc.collect()
    grown = _rss_bytes() - before
    # Each round commits several MiB of guest memory (the bomb): a leaked store would
    # show as hundreds of MiB over 50 rounds.
    assert grown < 8 << 20, f"RSS grew by {grown >> 20} MiB"
    assert threading.active_count() <= threads + 1  # at most the epoch ticker appeared
    pkg = example()
    assert run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof).ok


def _jobs() -> list[tuple[bytes, bytes, bytes, bytes, Limits]]:
    pkg = example()
    tampered = b"0" * 64
    jobs = [(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, Limits())]
    jobs.append((pkg.wasm, pkg.abi, pkg.manifest, tampered, Limits()))
    jobs += [(hostile(n), HOSTILE_ABI, b"m", b"p", lim) for n, (lim, _) in sorted(CASES.items())]
    return jobs


def _key(r: VerifierResult) -> tuple[object, ...]:
    return (r.code, r.verdict, r.fuel_used, r.log, r.log_dropped, r.message)


def test_concurrent_executions_match_sequential_ones() -> None:
    """Many threads at once (host function callbacks included) give exactly the
    sequential results: no cross-talk through wasmtime-py's global state or the log."""
    jobs = _jobs()
    want = [_key(run_verifier(w, a, m, p, limits=lim)) for w, a, m, p, lim in jobs]
    with ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(run_verifier, w, a, m, p, limits=lim) for w, a, m, p, lim in jobs * 10
        ]
        got = [_key(f.result()) for f in futures]
    assert got == want * 10


async def test_verifier_pool_runs_off_the_event_loop() -> None:
    jobs = _jobs()
    want = [_key(run_verifier(w, a, m, p, limits=lim)) for w, a, m, p, lim in jobs]
    pool = VerifierPool(workers=3, queue=2)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        slow = pool.run(hostile("infinite_loop"), HOSTILE_ABI, b"m", b"p", limits=TIMEOUT)
        results = await asyncio.gather(
            slow, *(pool.run(w, a, m, p, limits=lim) for w, a, m, p, lim in jobs * 3)
        )
    finally:
        beat.cancel()
        pool.close()
    assert results[0].code == "E-SANDBOX-TIMEOUT"
    assert [_key(r) for r in results[1:]] == want * 3
    assert ticks > 5  # the loop kept running while the verifiers did
