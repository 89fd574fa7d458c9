"""The compiled-module cache: in memory, and on disk as authenticated wasmtime artifacts."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from ledger.sandbox import Limits, run_verifier
from ledger.sandbox.cache import ArtifactStore, ModuleCache, module_cache
from ledger.sandbox.engine import engine_for
from tests.ledger.sandbox_support import REPO, example, hostile


@pytest.fixture(autouse=True)
def cold_memory() -> Iterator[None]:
    module_cache().clear()
    yield
    module_cache().clear()


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.cwasm"))


def test_second_cache_loads_from_disk_without_compiling(tmp_path: Path) -> None:
    se = engine_for(Limits().stack_bytes)
    wasm = example().wasm
    b3 = blake3.blake3(wasm).hexdigest()
    first = ModuleCache()
    compiled, source = first.get(se, wasm, b3, ArtifactStore(tmp_path))
    assert (source, first.compiles) == ("compiled", 1)
    assert len(_files(tmp_path)) == 1
    again, source = first.get(se, wasm, b3, ArtifactStore(tmp_path))
    assert (source, again) == ("memory", compiled)
    fresh = ModuleCache()  # a new process's cache: only the disk tier is shared
    _, source = fresh.get(se, wasm, b3, ArtifactStore(tmp_path))
    assert (source, fresh.compiles) == ("disk", 0)


def test_cache_key_file_is_private_and_random(tmp_path: Path) -> None:
    pkg = example()
    run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=tmp_path)
    key = tmp_path / "cache-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    other = tmp_path / "other"
    module_cache().clear()
    run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=other)
    assert (other / "cache-key").read_bytes() != key.read_bytes()


def _corruptions(data: bytes) -> dict[str, bytes]:
    return {
        "flipped artifact byte": data[:-100] + bytes([data[-100] ^ 1]) + data[-99:],
        "flipped tag byte": data[:25] + bytes([data[25] ^ 1]) + data[26:],
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "garbage": b"\0asm\x01\0\0\0" + b"x" * 100,
    }


@pytest.mark.parametrize(
    "how", ["flipped artifact byte", "flipped tag byte", "truncated", "empty", "garbage"]
)
def test_tampered_artifact_is_never_deserialized(tmp_path: Path, how: str) -> None:
    pkg = example()
    first = run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=tmp_path)
    (artifact,) = _files(tmp_path)
    artifact.write_bytes(_corruptions(artifact.read_bytes())[how])
    module_cache().clear()
    again = run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=tmp_path)
    assert again.cache == "compiled"  # refused, recompiled from the pinned wasm
    assert (again.status, again.fuel_used) == (first.status, first.fuel_used)
    module_cache().clear()  # and the rewritten file is good again
    third = run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=tmp_path)
    assert third.cache == "disk"


def test_artifact_from_another_data_directory_is_refused(tmp_path: Path) -> None:
    pkg = example()
    a, b = tmp_path / "a", tmp_path / "b"
    run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=a)
    run_verifier(hostile("trap"), pkg.abi, b"m", b"p", cache_dir=b)  # b gets its own key
    (artifact,) = _files(a)
    (b / artifact.name).write_bytes(artifact.read_bytes())
    module_cache().clear()
    result = run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=b)
    assert (result.cache, result.ok) == ("compiled", True)


def test_another_modules_artifact_under_this_name_is_refused(tmp_path: Path) -> None:
    """The tag binds the file name (version, settings, wasm hash): a valid artifact of
    another module renamed into place does not load."""
    pkg = example()
    run_verifier(hostile("trap"), pkg.abi, b"m", b"p", cache_dir=tmp_path)
    (trap_file,) = _files(tmp_path)
    se = engine_for(Limits().stack_bytes)
    target = ArtifactStore(tmp_path).path(se, blake3.blake3(pkg.wasm).hexdigest())
    target.write_bytes(trap_file.read_bytes())
    module_cache().clear()
    result = run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=tmp_path)
    assert (result.cache, result.ok) == ("compiled", True)


def test_artifact_name_binds_the_engine_settings(tmp_path: Path) -> None:
    wasm_b3 = blake3.blake3(example().wasm).hexdigest()
    store = ArtifactStore(tmp_path)
    small, default = engine_for(64 << 10), engine_for(Limits().stack_bytes)
    assert small.fingerprint != default.fingerprint
    assert store.path(small, wasm_b3) != store.path(default, wasm_b3)


def test_unwritable_cache_directory_still_runs(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    pkg = example()
    result = run_verifier(pkg.wasm, pkg.abi, pkg.manifest, pkg.proof, cache_dir=blocker / "x")
    assert (result.ok, result.cache) == (True, "compiled")


def test_memory_cache_is_bounded() -> None:
    se = engine_for(Limits().stack_bytes)
    cache = ModuleCache(capacity=2)
    mods = [hostile(n) for n in ("trap", "out_of_bounds", "infinite_loop")]
    for wasm in mods:
        cache.get(se, wasm, blake3.blake3(wasm).hexdigest())
    _, source = cache.get(se, mods[0], blake3.blake3(mods[0]).hexdigest())
    assert (source, cache.compiles) == ("compiled", 4)  # the oldest was evicted


_PROBE = """
import json, sys
from pathlib import Path
from ledger.sandbox import run_verifier
from ledger.sandbox.cache import module_cache
d = Path(sys.argv[1])
r = run_verifier(*(Path(sys.argv[2], f).read_bytes() for f in
    ("verifier.wasm", "verifier.abi.json", "manifest.json", "proof.txt")), cache_dir=d)
print(json.dumps({"ok": r.ok, "cache": r.cache, "compiles": module_cache().compiles,
                  "fuel": r.fuel_used}))
"""


def test_a_second_process_start_does_not_recompile(tmp_path: Path) -> None:
    def start() -> dict[str, object]:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, str(tmp_path), str(REPO / "examples/sha256-verifier")],
            capture_output=True,
            cwd=REPO,
            timeout=120,
            check=True,
        )
        doc: dict[str, object] = json.loads(proc.stdout)
        return doc

    first, second = start(), start()
    assert (first["ok"], first["cache"], first["compiles"]) == (True, "compiled", 1)
    assert (second["ok"], second["cache"], second["compiles"]) == (True, "disk", 0)
    assert first["fuel"] == second["fuel"]  # the cached artifact runs identically
