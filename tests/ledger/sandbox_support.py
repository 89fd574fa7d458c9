"""The example verifier and the hostile modules, as bytes for the sandbox tests."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import wasmtime

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sha256-verifier"
HOSTILE = REPO / "examples" / "hostile"
HOSTILE_ABI = b'{"abi": "cap-verifier/1", "name": "hostile", "version": "0"}'


@dataclass(slots=True, frozen=True)
class Package:
    wasm: bytes
    abi: bytes
    manifest: bytes
    proof: bytes


@functools.cache
def example() -> Package:
    """The committed example: SHA-256 commitment verifier, its ABI, manifest and proof."""
    return Package(
        (EXAMPLE / "verifier.wasm").read_bytes(),
        (EXAMPLE / "verifier.abi.json").read_bytes(),
        (EXAMPLE / "manifest.json").read_bytes(),
        (EXAMPLE / "proof.txt").read_bytes(),
    )


@functools.cache
def hostile(name: str) -> bytes:
    """``examples/hostile/NAME.wat`` compiled to a binary module."""
    return wasmtime.wat2wasm((HOSTILE / f"{name}.wat").read_text())


def wat(text: str) -> bytes:
    return wasmtime.wat2wasm(text)
