"""The ABI file, the module header and the import/export check: refusals before any code runs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import BadInput, CheckFailed
from ledger.sandbox import SANDBOX_CODES, Limits, parse_abi, run_verifier
from ledger.sandbox.abi import MAX_ABI_BYTES, MAX_WASM_BYTES, WASM_HEADER
from ledger.sandbox.cache import module_cache
from tests.ledger.sandbox_support import HOSTILE_ABI, example, hostile, wat

GOOD = {"abi": "cap-verifier/1", "name": "v", "version": "1"}


def test_parse_abi_reads_name_version_and_limits() -> None:
    doc = {**GOOD, "limits": {"fuel": 10, "call_ms": 20}, "extra": {"free": "form"}}
    abi = parse_abi(json.dumps(doc).encode())
    assert (abi.name, abi.version) == ("v", "1")
    assert abi.limits == (("call_ms", 20), ("fuel", 10))


BAD_ABIS = {
    "not json": b"{nope",
    "not utf-8": b'{"abi": "\xff"}',
    "array": b"[]",
    "wrong abi": json.dumps({**GOOD, "abi": "cap-verifier/2"}).encode(),
    "no abi": json.dumps({"name": "v", "version": "1"}).encode(),
    "no name": json.dumps({"abi": "cap-verifier/1", "version": "1"}).encode(),
    "empty name": json.dumps({**GOOD, "name": ""}).encode(),
    "name not text": json.dumps({**GOOD, "name": 3}).encode(),
    "control char": json.dumps({**GOOD, "version": "1\n"}).encode(),
    "long name": json.dumps({**GOOD, "name": "n" * 129}).encode(),
    "float": b'{"abi": "cap-verifier/1", "name": "v", "version": "1", "x": 1.5}',
    "duplicate key": b'{"abi": "cap-verifier/1", "name": "v", "name": "w", "version": "1"}',
    "limits not object": json.dumps({**GOOD, "limits": [1]}).encode(),
    "unknown limit": json.dumps({**GOOD, "limits": {"fuels": 1}}).encode(),
    "negative limit": json.dumps({**GOOD, "limits": {"fuel": -1}}).encode(),
    "zero limit": json.dumps({**GOOD, "limits": {"call_ms": 0}}).encode(),
    "bool limit": json.dumps({**GOOD, "limits": {"memory_mb": True}}).encode(),
    "huge limit": json.dumps({**GOOD, "limits": {"memory_mb": 5000}}).encode(),
    "too large": json.dumps({**GOOD, "pad": "x" * MAX_ABI_BYTES}).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_ABIS))
def test_malformed_abi_is_abi_invalid(name: str) -> None:
    with pytest.raises(CheckFailed) as err:
        parse_abi(BAD_ABIS[name])
    assert err.value.code == "E-ABI-INVALID" and err.value.exit_code == 1


def test_malformed_abi_refuses_the_run_before_compiling() -> None:
    before = module_cache().compiles
    result = run_verifier(hostile("trap"), BAD_ABIS["wrong abi"], b"m", b"p")
    assert (result.code, result.fuel_used, result.cache) == ("E-ABI-INVALID", 0, "none")
    assert module_cache().compiles == before


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_arbitrary_abi_bytes_are_parsed_or_abi_invalid(data: bytes) -> None:
    try:
        parse_abi(data)
    except CheckFailed as exc:
        assert exc.code == "E-ABI-INVALID"


VALID_WAT = """(module (memory (export "memory") 1)
  (func (export "cap_alloc") (param i32) (result i32) (i32.const 64))
  (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"""


@pytest.mark.parametrize(
    "data",
    [
        VALID_WAT.encode(),  # wasmtime would compile WAT text: refused, never parsed as text
        b"",
        b"\0asm",
        b"\0asm\x0d\x00\x01\x00",  # a component, not a core module
        b"\0asm\x02\0\0\0",
        b"\x7fELF\x02\x01\x01\0",
    ],
)
def test_anything_but_a_binary_core_module_is_abi_invalid(data: bytes) -> None:
    before = module_cache().compiles
    result = run_verifier(data, HOSTILE_ABI, b"m", b"p")
    assert (result.code, result.cache) == ("E-ABI-INVALID", "none")
    assert module_cache().compiles == before


def test_valid_wat_compiled_to_binary_runs() -> None:
    assert run_verifier(wat(VALID_WAT), HOSTILE_ABI, b"m", b"p").ok


def test_oversized_module_is_refused_unread() -> None:
    result = run_verifier(WASM_HEADER + bytes(MAX_WASM_BYTES), HOSTILE_ABI, b"m", b"p")
    assert (result.code, result.cache) == ("E-ABI-INVALID", "none")


@pytest.mark.parametrize("cut", [9, 100, 1000, -1])
def test_truncated_module_is_abi_invalid(cut: int) -> None:
    result = run_verifier(example().wasm[:cut], HOSTILE_ABI, b"m", b"p")
    assert result.code == "E-ABI-INVALID"
    assert "not a valid WebAssembly module" in result.message


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=8), st.integers(min_value=1, max_value=255))
def test_flipped_byte_gives_a_contract_code_or_a_verdict(pos: int, xor: int) -> None:
    """Any corruption of the module ends in a result with a contract code, never a crash."""
    pkg = example()
    data = bytearray(pkg.wasm)
    data[pos % len(data)] ^= xor
    result = run_verifier(bytes(data), pkg.abi, pkg.manifest, pkg.proof)
    assert result.ok or result.code in SANDBOX_CODES


FORBIDDEN = {
    "wasi": hostile("wasi_import"),
    "clock": hostile("clock_import"),
    "cap_log wrong type": hostile("log_wrong_type"),
    "imported memory": wat('(module (import "env" "memory" (memory 1)))'),
    "imported global": wat('(module (import "env" "seed" (global i64)))'),
    "imported table": wat('(module (import "env" "t" (table 1 funcref)))'),
    "cap_log with a result": wat(
        '(module (import "env" "cap_log" (func (param i32 i32 i32) (result i32))))'
    ),
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_forbidden_import_is_refused_before_instantiation(name: str) -> None:
    result = run_verifier(FORBIDDEN[name], HOSTILE_ABI, b"m", b"p")
    assert (result.code, result.fuel_used, result.log) == ("E-SANDBOX-FORBIDDEN-IMPORT", 0, ())
    assert result.verdict is None


BAD_EXPORTS = {
    "no exports": hostile("no_exports"),
    "no memory": wat(
        """(module (memory 1)
        (func (export "cap_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"""
    ),
    "verify takes i64": wat(
        """(module (memory (export "memory") 1)
        (func (export "cap_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "cap_verify") (param i64 i32 i32 i32) (result i32) (i32.const 0)))"""
    ),
    "alloc is a global": wat(
        """(module (memory (export "memory") 1)
        (global (export "cap_alloc") i32 (i32.const 0))
        (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"""
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_EXPORTS))
def test_module_without_the_abi_exports_is_abi_invalid(name: str) -> None:
    result = run_verifier(BAD_EXPORTS[name], HOSTILE_ABI, b"m", b"p")
    assert (result.code, result.fuel_used) == ("E-ABI-INVALID", 0)


def test_wasm_proposals_that_break_determinism_are_off() -> None:
    threads = wat(
        """(module (memory (export "memory") 1 1 shared)
        (func (export "cap_alloc") (param i32) (result i32) (i32.const 0))
        (func (export "cap_verify") (param i32 i32 i32 i32) (result i32) (i32.const 0)))"""
    )
    assert run_verifier(threads, HOSTILE_ABI, b"m", b"p").code == "E-ABI-INVALID"


@pytest.mark.parametrize(
    "kw",
    [{"fuel": 0}, {"memory_mb": 0}, {"memory_mb": 4097}, {"stack_kb": 8}, {"call_ms": -1}],
)
def test_out_of_range_host_limits_are_bad_input(kw: dict[str, int]) -> None:
    with pytest.raises(BadInput) as err:
        Limits(**kw)
    assert err.value.code == "E-BAD-INPUT" and err.value.exit_code == 2


def test_limits_lowered_and_stack_rounded() -> None:
    host = Limits.from_options(fuel=100, memory_mb=None, stack_kb=300, call_ms=None)
    assert (host.fuel, host.memory_mb, host.stack_bytes) == (100, 16, 256 << 10)
    low = host.lowered({"fuel": 1000, "memory_mb": 2}.items())
    assert (low.fuel, low.memory_mb) == (100, 2)
