"""Self-verification of registry entries: the sandbox wired to the registry.

``registry add --selfverify`` passes a :class:`SelfVerifier` as the registry's
``selfverify`` callable, so the verdict is part of what gets signed. ``registry exec``
loads an entry's blobs from the store (re-hashed against their pins), runs the verifier
again and appends a ``selfverify.result`` event that the registry projection applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import CheckFailed
from ledger.events import Event
from ledger.registry import Registry
from ledger.sandbox.limits import Limits
from ledger.sandbox.result import VerifierResult
from ledger.sandbox.runner import Pins, refused, run_verifier

__all__ = ["SelfVerifier"]

# Failures of an entry's stored package that exec records as its verdict.
_RECORDED = ("E-BLOB-MISSING", "E-HASH-MISMATCH")


@dataclass(slots=True)
class SelfVerifier:
    """Runs verifiers under the host's ``limits``, caching compiled modules in ``cache_dir``.

    Calling it is the registry's ``selfverify`` hook; :meth:`run` and :meth:`exec_entry`
    may be used from many threads at once.
    """

    limits: Limits = field(default_factory=Limits)
    cache_dir: Path | None = None
    last: VerifierResult | None = None

    def run(
        self,
        wasm: bytes | None,
        abi: bytes | None,
        manifest: bytes | None,
        proof: bytes | None,
        pins: Pins | None = None,
    ) -> VerifierResult:
        """One run under this verifier's limits and cache (thread-safe)."""
        return run_verifier(
            wasm, abi, manifest, proof, limits=self.limits, pins=pins, cache_dir=self.cache_dir
        )

    def __call__(self, wasm: bytes, abi: bytes, manifest: bytes, proof: bytes) -> dict[str, Any]:
        """The registry's ``selfverify`` callable: the result as an event payload (and in
        ``last``, for the one caller that made this verifier)."""
        self.last = self.run(wasm, abi, manifest, proof)
        return self.last.to_payload()

    def verify_entry(self, registry: Registry, entry_id: str) -> VerifierResult:
        """Run an entry's verifier on its stored blobs, recording nothing.

        ``E-NOT-FOUND`` for an unknown entry. A missing or altered blob is the entry's
        verdict (``E-BLOB-MISSING`` / ``E-HASH-MISMATCH``: the module never runs).
        """
        row = registry.row(entry_id)
        pins = Pins(row["blob_wasm"], row["blob_abi"])
        try:
            blobs = registry.package_bytes(entry_id)
        except CheckFailed as exc:
            if exc.code not in _RECORDED:
                raise
            return refused(exc.code, exc.message, self.limits)
        return self.run(blobs["wasm"], blobs["abi"], blobs["manifest"], blobs["proof"], pins)

    def exec_entry(
        self, registry: Registry, entry_id: str, *, actor: str = "system"
    ) -> tuple[VerifierResult, Event]:
        """:meth:`verify_entry`, then append its ``selfverify.result`` event (the registry
        projection applies it in the same commit)."""
        result = self.verify_entry(registry, entry_id)
        event = registry.record_selfverify(entry_id, result.to_payload(), actor=actor)
        return result, event
