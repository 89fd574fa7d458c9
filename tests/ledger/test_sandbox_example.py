"""The example SHA-256 verifier in the sandbox: verdicts, determinism, pins and limits."""

from __future__ import annotations

import hashlib
import importlib.metadata

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from ledger.errors import CheckFailed
from ledger.sandbox import Limits, Pins, VerifierResult, run_verifier
from ledger.sandbox.cache import module_cache
from tests.ledger.sandbox_support import example, hostile


def run(manifest: bytes, proof: bytes, **kw: object) -> VerifierResult:
    pkg = example()
    return run_verifier(pkg.wasm, pkg.abi, manifest, proof, **kw)  # type: ignore[arg-type]


def test_example_accepts_its_committed_proof() -> None:
    pkg = example()
    result = run(pkg.manifest, pkg.proof)
    assert (result.status, result.code, result.verdict) == ("ok", None, 0)
    assert result.log == ("info: proof matches SHA-256(manifest)",)
    assert result.fuel_used is not None and 0 < result.fuel_used < result.limits.fuel
    result.raise_for_status()  # ok: nothing raised, and the assertions above hold


def test_tampered_proof_is_rejected_with_verify_failed() -> None:
    pkg = example()
    digit = pkg.proof[:1]
    tampered = (b"0" if digit != b"0" else b"1") + pkg.proof[1:]
    result = run(pkg.manifest, tampered)
    assert (result.status, result.code, result.verdict) == ("fail", "E-VERIFY-FAILED", 1)
    assert result.log == ("warn: proof does not match SHA-256(manifest)",)
    with pytest.raises(CheckFailed) as err:
        result.raise_for_status()
    assert err.value.code == "E-VERIFY-FAILED" and err.value.exit_code == 1


def test_tampered_manifest_is_rejected() -> None:
    pkg = example()
    assert run(pkg.manifest + b" ", pkg.proof).code == "E-VERIFY-FAILED"


@pytest.mark.parametrize("proof", [b"", b"xyz", b"g" * 64, b"0" * 63, b"0" * 66])
def test_malformed_proof_is_rejected(proof: bytes) -> None:
    result = run(example().manifest, proof)
    assert (result.code, result.verdict) == ("E-VERIFY-FAILED", 2)


def test_raw_digest_and_uppercase_hex_are_accepted() -> None:
    manifest = example().manifest
    digest = hashlib.sha256(manifest).digest()
    assert run(manifest, digest).ok
    assert run(manifest, digest.hex().upper().encode()).ok


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_guest_sha256_agrees_with_hashlib(manifest: bytes) -> None:
    """The verifier's own SHA-256 is right at every padding boundary (55, 56, 64, ...)."""
    digest = hashlib.sha256(manifest).hexdigest().encode()
    assert run(manifest, digest).ok
    other = hashlib.sha256(manifest + b"x").hexdigest().encode()
    assert run(manifest, other).code == "E-VERIFY-FAILED"


@pytest.mark.parametrize("size", [55, 56, 63, 64, 65, 119, 120, 128, 4096, 1 << 20])
def test_guest_sha256_at_block_boundaries(size: int) -> None:
    manifest = bytes(i % 251 for i in range(size))
    assert run(manifest, hashlib.sha256(manifest).hexdigest().encode()).ok


def _fingerprint(r: VerifierResult) -> tuple[object, ...]:
    return (r.status, r.code, r.verdict, r.fuel_used, r.log, r.message)


@pytest.mark.parametrize("tamper", [False, True])
def test_twenty_runs_give_the_same_verdict_and_fuel(tamper: bool) -> None:
    pkg = example()
    proof = b"0" * 64 if tamper else pkg.proof
    first = run(pkg.manifest, proof)
    assert all(_fingerprint(run(pkg.manifest, proof)) == _fingerprint(first) for _ in range(20))


@pytest.mark.parametrize("name", ["deep_recursion", "memory_bomb", "infinite_loop"])
def test_hostile_outcomes_are_reproducible(name: str) -> None:
    limits = Limits(fuel=3_000_000, memory_mb=4)
    results = [
        run_verifier(hostile(name), example().abi, b"m", b"p", limits=limits) for _ in range(20)
    ]
    assert len({_fingerprint(r) for r in results}) == 1
    assert results[0].code is not None


def test_pinned_hash_mismatch_never_executes_the_module() -> None:
    pkg = example()
    module_cache().clear()
    before = module_cache().compiles
    good_abi = hashlib.sha3_256(pkg.abi).hexdigest()
    wrong = Pins(blob_wasm="ab" * 32, blob_abi=good_abi)
    result = run(pkg.manifest, pkg.proof, pins=wrong)
    assert (result.code, result.fuel_used, result.log, result.cache) == (
        "E-HASH-MISMATCH",
        0,
        (),
        "none",
    )
    assert "ab" * 32 in result.message
    assert module_cache().compiles == before  # not even compiled


def test_pinned_abi_mismatch_never_executes_the_module() -> None:
    pkg = example()

    pins = Pins(blake3.blake3(pkg.wasm).hexdigest(), hashlib.sha3_256(b"other").hexdigest())
    result = run(pkg.manifest, pkg.proof, pins=pins)
    assert (result.code, result.fuel_used, result.cache) == ("E-HASH-MISMATCH", 0, "none")


def test_matching_pins_run_the_module() -> None:

    pkg = example()
    pins = Pins(blake3.blake3(pkg.wasm).hexdigest().upper(), hashlib.sha3_256(pkg.abi).hexdigest())
    assert run(pkg.manifest, pkg.proof, pins=pins).ok


@pytest.mark.parametrize("missing", ["wasm", "abi", "manifest", "proof"])
def test_missing_blob_is_blob_missing(missing: str) -> None:
    pkg = example()
    blobs = {"wasm": pkg.wasm, "abi": pkg.abi, "manifest": pkg.manifest, "proof": pkg.proof}
    blobs[missing] = None  # type: ignore[assignment]
    result = run_verifier(blobs["wasm"], blobs["abi"], blobs["manifest"], blobs["proof"])
    assert (result.status, result.code, result.cache) == ("fail", "E-BLOB-MISSING", "none")


def test_abi_lowers_the_host_limits_but_never_raises_them() -> None:
    pkg = example()  # its ABI asks for fuel 200,000,000 and 8 MiB
    lowered = run(pkg.manifest, pkg.proof)
    assert (lowered.limits.fuel, lowered.limits.memory_mb) == (200_000_000, 8)
    host = Limits(fuel=1_000, memory_mb=2)
    capped = run(pkg.manifest, pkg.proof, limits=host)
    assert (capped.limits.fuel, capped.limits.memory_mb) == (1_000, 2)
    assert (capped.code, capped.fuel_used) == ("E-SANDBOX-OUT-OF-FUEL", 1_000)


def test_result_records_wasmtime_version_and_engine_settings() -> None:
    pkg = example()
    result = run(pkg.manifest, pkg.proof, limits=Limits(stack_kb=100))
    payload = result.to_payload("entry-1")
    engine = payload["engine"]
    assert engine["wasmtime"] == importlib.metadata.version("wasmtime") == "50.0.1"
    flags = engine["settings"]
    assert flags["consume_fuel"] and flags["epoch_interruption"]
    assert flags["cranelift_nan_canonicalization"]
    assert not flags["wasm_threads"] and not flags["wasm_relaxed_simd"]
    assert flags["max_wasm_stack"] == 64 << 10  # 100 KiB rounds down to a power of two
    assert payload["limits"]["stack_kb"] == 64
    assert len(engine["fingerprint"]) == 64
    assert payload["entry_id"] == "entry-1" and payload["status"] == "ok"
    assert set(payload) >= {"status", "code", "fuel_used", "duration_us", "log", "engine", "at"}
    canonical_json(payload)  # JSON-compatible: no floats, no bytes (raises otherwise)
    assert payload["at"].endswith("Z")
