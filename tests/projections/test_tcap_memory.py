"""Packing a full 50 MB capsule keeps memory bounded: events are streamed, not held."""

from __future__ import annotations

import json
import random
import subprocess
import sys

from ledger.log import Append
from projections.tcap import CAPSULE_LIMIT
from tests.conftest import REPO, TEST_KEY, cli_env

PACK_AND_MEASURE = r"""
import json, sys, threading, time
from pathlib import Path
from ledger.keys import StaticKeyProvider, load_private_key
from ledger.ledger import Ledger
from projections.tcap import PackOptions, pack

def anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

data, sk, out, key = sys.argv[1:5]
led = Ledger.open(Path(data), StaticKeyProvider(bytes.fromhex(key)))
signer = load_private_key(Path(sk))
base, peak, stop = anon(), [0], threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], anon())
        time.sleep(0.002)
t = threading.Thread(target=sample); t.start()
parts = pack(led.log, Path(out), signer, PackOptions(split=True))
stop.set(); t.join(); led.close()
print(json.dumps({"base": base, "peak": peak[0], "sizes": [p.size for p in parts]}))
"""


def test_pack_of_a_50_mb_capsule_has_bounded_peak_rss(ledger, data_dir, signer, tmp_path):
    rng = random.Random(5)
    n = CAPSULE_LIMIT // 1100 + 2000  # ~1.2 KB blocks: more than one full capsule
    for start in range(0, n, 4000):
        ledger.log.append_many(
            [
                Append("bulk.event", {"i": i, "blob": rng.randbytes(400).hex(), "tag": "t" * 40})
                for i in range(start, min(n, start + 4000))
            ]
        )
    ledger.close()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PACK_AND_MEASURE,
            str(data_dir.root),
            str(signer.sk_path),
            str(tmp_path / "big.tcap"),
            TEST_KEY.hex(),
        ],
        capture_output=True,
        env=cli_env(),
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    m = json.loads(proc.stdout)
    assert len(m["sizes"]) == 2 and m["sizes"][0] > CAPSULE_LIMIT - 5000  # one full capsule
    extra = m["peak"] - m["base"]
    print(f"peak extra anonymous RSS packing {m['sizes'][0]:,} bytes: {extra / 1e6:.1f} MB")
    # Only one small index row and Merkle state per block stay in memory (~150 bytes each
    # for ~45,000 blocks), never the events or the capsule.
    assert extra < 32_000_000


KILL_DURING_PACK = r"""
import sys
from pathlib import Path
from ledger.keys import StaticKeyProvider, load_private_key
from ledger.ledger import Ledger
from projections.tcap import PackOptions, pack

data, sk, out, key = sys.argv[1:5]
led = Ledger.open(Path(data), StaticKeyProvider(bytes.fromhex(key)))
pack(led.log, Path(out), load_private_key(Path(sk)), PackOptions())
"""


def test_kill_9_mid_pack_leaves_no_capsule_and_a_rerun_works(ledger, data_dir, signer, tmp_path):
    import os
    import signal
    import time

    from projections.tcap import verify_capsule

    for start in range(0, 40_000, 5000):
        ledger.log.append_many(
            [Append("bulk.event", {"i": i, "blob": "ab" * 200}) for i in range(start, start + 5000)]
        )
    ledger.close()
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "c.tcap"
    args = [str(data_dir.root), str(signer.sk_path), str(out), TEST_KEY.hex()]
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_DURING_PACK, *args], env=cli_env(), cwd=REPO
    )
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".blocks") for p in outdir.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None, "pack never started writing"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # a capsule appears only complete, sealed and synced
    assert all(p.name.startswith(".") for p in outdir.iterdir())  # scratch files are hidden
    done = subprocess.run(
        [sys.executable, "-c", KILL_DURING_PACK, *args], env=cli_env(), cwd=REPO, timeout=120
    )
    assert done.returncode == 0
    assert verify_capsule(out, signer.public_key).blocks == 40_001


def test_a_file_over_the_limit_is_refused_before_reading(tmp_path):
    from ledger.errors import CheckFailed
    from projections.tcap import verify_capsule

    big = tmp_path / "big.tcap"
    with open(big, "wb") as f:
        f.truncate(CAPSULE_LIMIT + 1)  # sparse: costs no disk
    import pytest

    with pytest.raises(CheckFailed) as info:
        verify_capsule(big)
    assert info.value.code == "E-CAPSULE-TOO-LARGE"
