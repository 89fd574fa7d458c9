"""Print the worked example of docs/EVENTS.md ("Worked example") from fixed inputs.

Run ``python ops/docs/events_example.py`` and paste its output into the document when the
format changes; ``tests/ledger/test_events_doc.py`` recomputes every value in the document
independently of ``ledger/``, so a stale example fails the suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.canonical import canonicalize
from ledger.chain import ZERO, MacKey, kid_for_key, next_b3
from ledger.events import Event, encode_body, event_id
from ledger.log import GENESIS_TYPE, genesis_payload

KEY = bytes(range(32))
LEDGER_ID = "5f0c8a1e9b2d4c7fa3e61d0b8c9f4a27"
EVENTS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("2025-01-01T00:00:00.000000Z", GENESIS_TYPE, "cli:alice", genesis_payload(LEDGER_ID)),
    (
        "2025-01-01T00:00:01.250000Z",
        "attestation.issue",
        "cli:alice",
        {"subject": "alice", "score": 7},
    ),
    (
        "2025-01-01T00:00:02.500000Z",
        "ubl.entry",
        "svc:billing",
        {
            "memo": "café, 5 €",
            "amount": -130,
            "tags": ["q1", "audit"],
            "settled": True,
            "ref": None,
            "limit": 18446744073709551615,
        },
    ),
]


def build() -> tuple[str, list[tuple[Event, bytes]]]:
    kid = kid_for_key(KEY)
    key = MacKey(KEY)
    b3, mac = ZERO, ZERO
    out = []
    for seq, (ts, type_, actor, payload) in enumerate(EVENTS):
        eid = event_id(LEDGER_ID, seq)
        body = encode_body(seq, eid, ts, type_, actor, payload, kid)
        b3 = next_b3(b3, body)
        mac = key.mac(mac, b3)
        ev = Event(
            seq, eid, ts, type_, actor, canonicalize(payload, allow_bytes=False), kid, b3, mac
        )
        out.append((ev, body))
    return kid, out


def annotate(body: bytes) -> list[str]:
    """The body of a small event, element by element (each element packed on its own)."""
    doc = msgpack.unpackb(body)
    rows: list[tuple[bytes, str]] = []
    packer = msgpack.Packer(use_bin_type=True)

    def walk_map(m: dict[str, Any], indent: str) -> None:
        rows.append((packer.pack_map_header(len(m)), f"{indent}map, {len(m)} entries"))
        for k, v in m.items():
            rows.append((packer.pack(k), f"{indent}  key {json.dumps(k, ensure_ascii=False)}"))
            if isinstance(v, dict):
                walk_map(v, indent + "    ")
            else:
                text = json.dumps(v, ensure_ascii=False)
                rows.append((packer.pack(v), f"{indent}    {text}"))

    walk_map(doc, "")
    assert b"".join(r[0] for r in rows) == body
    width = max(len(r[0].hex(" ")) for r in rows)
    return [f"{r[0].hex(' '):<{width}}  | {r[1]}" for r in rows]


def main() -> None:
    kid, events = build()
    print("```")
    print(f"key  {KEY.hex()}")
    print(f"kid  {kid}")
    print("```")
    print()
    print("The events, as `cap-agent ledger log --json` prints them:")
    print()
    print("```json")
    for ev, _ in events:
        print(json.dumps(ev.to_json(), ensure_ascii=False))
    print("```")
    print()
    print("Their canonical bodies (hex):")
    print()
    print("```")
    for ev, body in events:
        print(f"body[{ev.seq}]  {body.hex()}")
    print("```")
    print()
    print("`body[1]` byte by byte:")
    print()
    print("```")
    for line in annotate(events[1][1]):
        print(line)
    print("```")
    print()
    print("and its two chain steps:")
    print()
    ev0, ev1 = events[0][0], events[1][0]
    print("```")
    print(f"b3[1]  = BLAKE3({ev0.b3.hex()} || body[1])")
    print(f"       = {ev1.b3.hex()}")
    print(f"mac[1] = HMAC-SHA256(key, {ev0.mac.hex()} || b3[1])")
    print(f"       = {ev1.mac.hex()}")
    print("```")


if __name__ == "__main__":
    main()
