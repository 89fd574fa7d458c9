"""The module's side of ``cap-verifier/1``: its imports and exports, checked after
compilation and before any of its code runs.

A module that asks for anything but ``env.cap_log(i32, i32, i32)`` is refused with
``E-SANDBOX-FORBIDDEN-IMPORT``; one without the ABI's exports with ``E-ABI-INVALID``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import wasmtime

from ledger.errors import CheckFailed

__all__ = ["ModuleShape", "check_module"]

_PAGE = 65536
_I32 = wasmtime.ValType.i32()
_LOG_SIG = ((_I32, _I32, _I32), ())
_EXPORTS: dict[str, tuple[tuple[wasmtime.ValType, ...], tuple[wasmtime.ValType, ...]]] = {
    "cap_alloc": ((_I32,), (_I32,)),
    "cap_verify": ((_I32, _I32, _I32, _I32), (_I32,)),
}


def _abi_invalid(message: str) -> CheckFailed:
    return CheckFailed("E-ABI-INVALID", message)


@dataclass(slots=True, frozen=True)
class ModuleShape:
    """What the checks learned about a module: its declared minimum memory."""

    memory_min_bytes: int


def _sig(ty: wasmtime.FuncType) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    return tuple(ty.params), tuple(ty.results)


def check_module(module: wasmtime.Module) -> ModuleShape:
    """Imports first (only ``env.cap_log(i32, i32, i32)``), then the ABI's exports."""
    for imp in module.imports:
        ty = imp.type
        where = f"{imp.module}.{imp.name}"
        if (imp.module, imp.name) != ("env", "cap_log"):
            raise CheckFailed(
                "E-SANDBOX-FORBIDDEN-IMPORT",
                f"module imports {where}; only env.cap_log is granted",
            )
        if not isinstance(ty, wasmtime.FuncType) or _sig(ty) != _LOG_SIG:
            raise CheckFailed(
                "E-SANDBOX-FORBIDDEN-IMPORT",
                f"module imports {where} with another type than (i32, i32, i32) -> ()",
            )
    exports = {exp.name: exp.type for exp in module.exports}
    memory = exports.get("memory")
    if not isinstance(memory, wasmtime.MemoryType):
        raise _abi_invalid('module does not export its linear memory as "memory"')
    if memory.is_64 or memory.is_shared:
        raise _abi_invalid("the exported memory must be a 32-bit, unshared memory")
    for name, want in _EXPORTS.items():
        found = exports.get(name)
        if not isinstance(found, wasmtime.FuncType) or _sig(found) != want:
            n_in, n_out = len(want[0]), len(want[1])
            raise _abi_invalid(
                f"module must export {name} taking {n_in} i32 and returning {n_out} i32"
            )
    return ModuleShape(memory.limits.min * _PAGE)
