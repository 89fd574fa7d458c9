"""Proof packages for registry tests: four small files, different per ``tag``."""

from __future__ import annotations

import io
import json
from pathlib import Path

from ledger.registry import Package

__all__ = ["package", "write_package"]


def _parts(tag: str, name: str, wasm_size: int) -> dict[str, bytes]:
    return {
        "manifest": json.dumps({"subject": tag, "claims": ["age>18"]}).encode(),
        "proof": b"proof-bytes:" + tag.encode(),
        "wasm": b"\0asm\x01\0\0\0" + tag.encode().ljust(wasm_size, b"\0"),
        "abi": json.dumps({"abi": "cap-verifier/1", "name": name, "version": "1.0"}).encode(),
    }


def package(tag: str = "a", *, name: str = "age-check", wasm_size: int = 32) -> Package:
    """In-memory streams of a package."""
    parts = _parts(tag, name, wasm_size)
    return Package(**{k: io.BytesIO(v) for k, v in parts.items()})


def write_package(root: Path, tag: str = "a", *, name: str = "age-check") -> dict[str, Path]:
    """The package as files under ``root`` (for CLI tests)."""
    root.mkdir(parents=True, exist_ok=True)
    names = {
        "manifest": "manifest.json",
        "proof": "proof.dat",
        "wasm": "verifier.wasm",
        "abi": "verifier.abi.json",
    }
    out = {}
    for part, data in _parts(tag, name, 32).items():
        path = root / names[part]
        path.write_bytes(data)
        out[part] = path
    return out
