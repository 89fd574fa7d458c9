"""read_bounded: the small input files users name are read with a cap, and every bad path
is E-BAD-INPUT rather than a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import BadInput
from ledger.infile import read_bounded


def test_reads_a_file_up_to_its_limit(tmp_path):
    f = tmp_path / "p"
    f.write_bytes(b"x" * 10)
    assert read_bounded(f, 10, "payload") == b"x" * 10


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (Path("/nonexistent/p"), "not found"),
        (Path("bad\x00name"), "NUL"),
        (Path("/dev/zero"), "larger than 1024"),
        (Path("/"), "cannot read"),
    ],
)
def test_bad_paths_are_bad_input(path, words):
    with pytest.raises(BadInput) as info:
        read_bounded(path, 1024, "payload")
    assert info.value.code == "E-BAD-INPUT" and words in info.value.message
