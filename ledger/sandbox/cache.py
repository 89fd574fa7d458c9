"""Compiled verifier modules, cached by the BLAKE3 of their bytes: in memory and on disk.

The disk tier holds wasmtime artifacts (``Module.serialize``), which wasmtime loads as
trusted machine code. So a file is only ever deserialized after its keyed-BLAKE3 tag checks
out under a random per-data-directory key that this program created, and its name binds the
wasmtime version and the engine settings. A file that fails the check is recompiled over.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import blake3
import wasmtime

from ledger.errors import CheckFailed
from ledger.logs import get_logger
from ledger.sandbox.engine import WASMTIME_VERSION, SandboxEngine
from ledger.sandbox.interface import ModuleShape, check_module

__all__ = ["ArtifactStore", "CompiledVerifier", "ModuleCache", "artifact_store", "module_cache"]

_MAGIC = b"CAP-WASM-ARTIFACT/1\n"
_TAG = 32
_KEY_FILE = "cache-key"
_MAX_ARTIFACT = 512 << 20
_log = get_logger("ledger.sandbox.cache")


@dataclass(slots=True, frozen=True)
class CompiledVerifier:
    """A checked module, pre-linked against ``env.cap_log`` and ready to instantiate."""

    wasm_b3: str
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    shape: ModuleShape


class ArtifactStore:
    """Authenticated wasmtime artifacts in one directory (``DIR/cache/wasm``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def path(self, se: SandboxEngine, wasm_b3: str) -> Path:
        name = blake3.blake3(f"{WASMTIME_VERSION}\0{se.fingerprint}\0{wasm_b3}".encode())
        return self.directory / f"{name.hexdigest()}.cwasm"

    def _tag(self, key: bytes, path: Path, artifact: bytes) -> bytes:
        h = blake3.blake3(key=key)
        h.update(path.name.encode() + b"\0")
        h.update(artifact)
        return h.digest()

    def _cache_key(self, create: bool) -> bytes | None:
        """The per-directory MAC key: 32 random bytes, mode 0600, created atomically."""
        with self._lock:
            if self._key is not None:
                return self._key
            path = self.directory / _KEY_FILE
            try:
                key = path.read_bytes()
            except FileNotFoundError:
                if not create:
                    return None
                key = self._create_key(path)
            if len(key) != 32:
                raise OSError(f"cache key {path} is not 32 bytes")
            self._key = key
            return key

    def _create_key(self, path: Path) -> bytes:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made one first: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return path.read_bytes()

    def get(self, se: SandboxEngine, wasm_b3: str) -> wasmtime.Module | None:
        """The cached module, or ``None`` when absent, unauthentic or unloadable."""
        path = self.path(se, wasm_b3)
        try:
            key = self._cache_key(create=False)
            if key is None or path.stat().st_size > _MAX_ARTIFACT:
                return None
            data = path.read_bytes()
        except OSError:
            return None
        head, tag, artifact = data[: len(_MAGIC)], data[len(_MAGIC) : len(_MAGIC) + _TAG], b""
        if head == _MAGIC:
            artifact = data[len(_MAGIC) + _TAG :]
        if head != _MAGIC or not hmac.compare_digest(tag, self._tag(key, path, artifact)):
            _log.warning("sandbox_cache_rejected", path=str(path), why="tag does not match")
            return None
        try:
            return wasmtime.Module.deserialize(se.engine, artifact)
        except wasmtime.WasmtimeError:
            _log.warning("sandbox_cache_rejected", path=str(path), why="wasmtime refused it")
            return None

    def put(self, se: SandboxEngine, wasm_b3: str, module: wasmtime.Module) -> None:
        """Write the artifact atomically; a cache that cannot be written is only a warning."""
        path = self.path(se, wasm_b3)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            key = self._cache_key(create=True)
            assert key is not None
            artifact = bytes(module.serialize())
            with open(tmp, "wb") as f:
                f.write(_MAGIC + self._tag(key, path, artifact) + artifact)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            _log.warning("sandbox_cache_unwritable", path=str(path), error=exc.strerror)
            with contextlib.suppress(OSError):
                tmp.unlink()


class ModuleCache:
    """Process-wide LRU of compiled verifiers keyed by engine fingerprint and wasm BLAKE3."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], CompiledVerifier] = OrderedDict()
        self._lock = threading.Lock()
        self.compiles = 0  # how many modules this process compiled from wasm (not from disk)

    def get(
        self, se: SandboxEngine, wasm: bytes, wasm_b3: str, disk: ArtifactStore | None = None
    ) -> tuple[CompiledVerifier, str]:
        """The compiled verifier and where it came from: ``memory``, ``disk`` or ``compiled``.

        ``wasm_b3`` must be the BLAKE3 of ``wasm`` as computed by the caller from the bytes.
        """
        key = (se.fingerprint, wasm_b3)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found, "memory"
        source = "disk"
        module = disk.get(se, wasm_b3) if disk is not None else None
        if module is None:
            source = "compiled"
            module = _compile(se, wasm)
        shape = check_module(module)
        compiled = CompiledVerifier(wasm_b3, module, se.linker.instantiate_pre(module), shape)
        if source == "compiled":
            self.compiles += 1
            if disk is not None:
                disk.put(se, wasm_b3, module)
        with self._lock:
            self._items[key] = compiled
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return compiled, source

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _compile(se: SandboxEngine, wasm: bytes) -> wasmtime.Module:
    try:
        return wasmtime.Module(se.engine, wasm)
    except wasmtime.WasmtimeError as exc:
        why = " ".join(str(exc).split())[:300] or "invalid module"
        raise CheckFailed("E-ABI-INVALID", f"not a valid WebAssembly module: {why}") from None


_module_cache = ModuleCache()
_stores: dict[Path, ArtifactStore] = {}
_stores_lock = threading.Lock()


def module_cache() -> ModuleCache:
    """The process-wide in-memory cache."""
    return _module_cache


def artifact_store(directory: Path) -> ArtifactStore:
    """The process-wide artifact store of a directory (one key read per process)."""
    resolved = Path(directory).resolve()
    with _stores_lock:
        store = _stores.get(resolved)
        if store is None:
            store = _stores[resolved] = ArtifactStore(resolved)
        return store
