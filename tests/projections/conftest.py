"""Fixtures for capsule tests: a signer, a block key and a ledger with a mix of events."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from blake3 import blake3

from ledger.keys import Ed25519Keypair, load_private_key, load_public_key, write_keypair
from ledger.log import Append
from projections.tcap import HEADER_SIZE, Header
from projections.tcap.crypto import FileBlockKeyProvider, write_block_key_file


@dataclass(slots=True, frozen=True)
class Signer:
    keypair: Ed25519Keypair
    public_key: bytes
    sk_path: Path
    pk_path: Path


def make_signer(tmp: Path, name: str) -> Signer:
    sk, pk = write_keypair(tmp, name)
    return Signer(load_private_key(sk), load_public_key(pk), sk, pk)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "sigkeys", "packer")


@pytest.fixture
def block_keys(tmp_path: Path, ledger) -> FileBlockKeyProvider:
    path = tmp_path / "block.key.json"
    write_block_key_file(path, ledger.log.ledger_id)
    return FileBlockKeyProvider(path)


TYPES = ("attestation.issue", "ubl.entry", "unote.tx")


@pytest.fixture
def filled(ledger):
    """The ledger with 30 events of three types after its genesis."""
    ledger.log.append_many(
        [
            Append(TYPES[i % 3], {"i": i, "note": "x" * (i * 7 % 50), "tags": [i, "t"]})
            for i in range(30)
        ]
    )
    return ledger


def reseal(path: Path, signer: Ed25519Keypair, mutate) -> None:
    """Rewrite a capsule's body with ``mutate(bytearray)`` and seal it again properly, so a
    test reaches the checks behind the seal (what a buggy or hostile packer could make)."""
    data = bytearray(path.read_bytes())
    head = Header.parse(bytes(data[:HEADER_SIZE]), len(data))
    body = bytearray(data[HEADER_SIZE:])
    mutate(body)
    h = replace(head, capsule_b3=blake3(bytes(body)).digest(), public_key=signer.public_key)
    h = replace(h, header_b3=h.compute_b3())
    h = replace(h, seal=signer.sign(h.seal_message()))
    path.write_bytes(h.pack() + bytes(body))
