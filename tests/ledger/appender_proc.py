"""A separate OS process appending to a ledger, for the multi-process and kill -9 tests.

``python -m tests.ledger.appender_proc DIR NAME COUNT THREADS [GO_FILE]`` appends COUNT
events ``{"who": NAME, "i": i}`` from THREADS threads, one event per append, and prints
``seq i`` for each as soon as it is acknowledged (so a parent killing this process knows
exactly what was acknowledged). With GO_FILE, waits for that file to exist before starting.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from ledger.keys import StaticKeyProvider
from ledger.ledger import Ledger
from tests.conftest import TEST_KEY


def main(root: str, name: str, count: int, threads: int, go: str | None = None) -> None:
    out = threading.Lock()
    with Ledger.open(Path(root), StaticKeyProvider(TEST_KEY)) as led:
        if go is not None:
            while not Path(go).exists():
                time.sleep(0.001)

        def work(part: range) -> None:
            for i in part:
                ev = led.log.append("test.proc", {"who": name, "i": i}, f"proc:{name}")
                with out:
                    sys.stdout.write(f"{ev.seq} {i}\n")
                    sys.stdout.flush()

        workers = [
            threading.Thread(target=work, args=(range(t, count, threads),)) for t in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:6])
