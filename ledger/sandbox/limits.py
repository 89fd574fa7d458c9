"""Execution limits of one verifier call: the host's ceiling, lowered (never raised) by an ABI."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from ledger.errors import BadInput

__all__ = ["LIMIT_NAMES", "Limits", "parse_requested"]

# name -> (smallest, largest) a host may configure; the contract's defaults are on Limits.
_BOUNDS: dict[str, tuple[int, int]] = {
    "fuel": (1, 2**63 - 1),
    "memory_mb": (1, 4096),  # wasm32 linear memory cannot exceed 4 GiB
    "stack_kb": (16, 4096),  # the wasm stack lives on the calling thread's native stack
    "call_ms": (1, 600_000),
}
LIMIT_NAMES: tuple[str, ...] = tuple(_BOUNDS)


@dataclass(slots=True, frozen=True)
class Limits:
    """Fuel units, linear memory (MiB), wasm stack (KiB) and wall clock (ms) for one call."""

    fuel: int = 1_000_000_000
    memory_mb: int = 16
    stack_kb: int = 512
    call_ms: int = 5_000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = _BOUNDS[f.name]
            if type(value) is not int or not low <= value <= high:
                raise BadInput("E-BAD-INPUT", f"limit {f.name} must be an integer in {low}..{high}")

    @classmethod
    def from_options(cls, **options: int | None) -> Limits:
        """The defaults, with each option that is not ``None`` put in its place (CLI flags)."""
        return cls(**{k: v for k, v in options.items() if v is not None})

    def lowered(self, requested: Iterable[tuple[str, int]]) -> Limits:
        """These limits with each ``requested`` value taken where it is lower: an ABI may
        ask for less than the host allows, never for more."""
        return _lowered(self, tuple(requested))

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb << 20

    @property
    def stack_bytes(self) -> int:
        """The wasm stack, rounded down to a power of two KiB so that only a handful of
        engine configurations (the stack is an engine setting) can ever exist."""
        return 1 << (self.stack_kb.bit_length() - 1 + 10)

    def to_json(self) -> dict[str, int]:
        return {
            "fuel": self.fuel,
            "memory_mb": self.memory_mb,
            "stack_kb": self.stack_bytes >> 10,
            "call_ms": self.call_ms,
        }


@functools.lru_cache(maxsize=256)
def _lowered(limits: Limits, requested: tuple[tuple[str, int], ...]) -> Limits:
    changes = {k: v for k, v in requested if v < getattr(limits, k)}
    return replace(limits, **changes) if changes else limits


def parse_requested(doc: Any) -> dict[str, int]:
    """Validate an ABI's ``limits`` object; ``ValueError`` names what is wrong."""
    if not isinstance(doc, dict):
        raise ValueError("limits must be an object")
    out: dict[str, int] = {}
    for key, value in doc.items():
        if key not in _BOUNDS:
            raise ValueError(f"unknown limit {key!r} (known: {', '.join(LIMIT_NAMES)})")
        low, high = _BOUNDS[key]
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"limit {key} must be an integer in {low}..{high}")
        out[key] = value
    return out
