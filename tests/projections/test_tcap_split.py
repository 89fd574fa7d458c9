"""--split: a numbered series of sealed parts, each naming its predecessor's capsule_b3."""

from __future__ import annotations

import pytest

from ledger.errors import CheckFailed
from projections.tcap import Capsule, PackOptions, pack, part_path, verify_capsule, verify_series
from projections.tcap.format import HEADER_SIZE


@pytest.fixture
def series(filled, signer, tmp_path):
    out = tmp_path / "exp.tcap"
    parts = pack(
        filled.log, out, signer.keypair, PackOptions(split=True, max_bytes=HEADER_SIZE + 5000)
    )
    return parts


def test_parts_are_under_the_limit_and_named_in_order(series, tmp_path):
    assert len(series) > 3
    assert [p.path for p in series] == [
        part_path(tmp_path / "exp.tcap", i) for i in range(1, len(series) + 1)
    ]
    assert series[0].path.name == "exp.0001.tcap"
    assert all(p.size == p.path.stat().st_size <= HEADER_SIZE + 5000 for p in series)
    assert sum(p.blocks for p in series) == 31


def test_series_verifies_part_by_part_and_as_a_chain(series, signer, filled):
    reports = [verify_capsule(p.path, signer.public_key) for p in series]
    for i, r in enumerate(reports):
        assert r.part["number"] == i + 1
        assert r.part["prev_capsule_b3"] == (reports[i - 1].capsule_b3 if i else None)
        assert r.part["last"] is (i == len(reports) - 1)
    chain = verify_series(list(reversed(reports)))  # order of arguments does not matter
    assert chain.to_json()["blocks"] == 31
    events = []
    for p in series:
        with Capsule(p.path) as cap:
            events += list(cap.extract())
    assert events == [e.to_json() for e in filled.log.events()]


@pytest.mark.parametrize("drop", ["first", "middle", "last"])
def test_incomplete_series_fails(series, signer, drop):
    reports = [verify_capsule(p.path, signer.public_key) for p in series]
    i = {"first": 0, "middle": len(reports) // 2, "last": len(reports) - 1}[drop]
    del reports[i]
    with pytest.raises(CheckFailed) as info:
        verify_series(reports)
    assert info.value.code == "E-CAPSULE-CORRUPT"
    assert info.value.details["where"].startswith("series")


def test_parts_of_two_series_do_not_chain(filled, signer, tmp_path, series):
    other = pack(
        filled.log,
        tmp_path / "b.tcap",
        signer.keypair,
        PackOptions(split=True, max_bytes=HEADER_SIZE + 5000, wire="cbor"),
    )
    mixed = [verify_capsule(series[0].path), verify_capsule(other[1].path)]
    with pytest.raises(CheckFailed) as info:
        verify_series(mixed)
    assert "prev_capsule_b3" in info.value.message


def test_a_single_capsule_is_not_a_series(filled, signer, tmp_path):
    out = tmp_path / "one.tcap"
    pack(filled.log, out, signer.keypair, PackOptions())
    with pytest.raises(CheckFailed):
        verify_series([verify_capsule(out), verify_capsule(out)])


def test_a_block_larger_than_a_part_is_refused(filled, signer, tmp_path):
    from ledger.errors import BadInput

    filled.log.append("big.blob", {"data": "y" * 6000})
    out = tmp_path / "s" / "exp.tcap"
    out.parent.mkdir()
    with pytest.raises(BadInput) as info:
        pack(filled.log, out, signer.keypair, PackOptions(split=True, max_bytes=HEADER_SIZE + 5000))
    assert info.value.code == "E-CAPSULE-TOO-LARGE"
    assert list(out.parent.iterdir()) == []  # the parts sealed before are taken back


def test_any_limit_gives_parts_under_it_that_chain(filled, signer, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    events = [e.to_json() for e in filled.log.events()]
    runs = iter(range(10**6))

    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        limit=st.integers(HEADER_SIZE + 2600, HEADER_SIZE + 40_000),
        wire=st.sampled_from(["jsonl", "cbor"]),
        types=st.sampled_from([(), ("ubl.entry",), ("unote.*", "attestation.issue")]),
    )
    def check(limit, wire, types):
        out = tmp_path / f"run{next(runs)}" / "s.tcap"
        out.parent.mkdir()
        parts = pack(
            filled.log,
            out,
            signer.keypair,
            PackOptions(split=True, max_bytes=limit, wire=wire, types=types),
        )
        assert all(p.size == p.path.stat().st_size <= limit for p in parts)
        verify_series([verify_capsule(p.path, signer.public_key) for p in parts])
        got = []
        for p in parts:
            with Capsule(p.path) as cap:
                got += list(cap.extract())
        want = [
            e
            for e in events
            if not types
            or e["type"] in types
            or (types[0] == "unote.*" and e["type"].startswith("unote."))
        ]
        assert got == want

    check()
