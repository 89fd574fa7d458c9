"""``env.cap_log``, the one host function a verifier gets, and the bounded log it writes to.

wasmtime-py keeps a module-global "last exception" for errors raised by host functions, so
one that raised could surface in another thread's call. ``cap_log`` therefore never raises:
it reads at most what the log still has room for, and ignores anything it cannot read.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import wasmtime

__all__ = ["MAX_LINE_BYTES", "MAX_LOG_BYTES", "MAX_LOG_LINES", "LogSink", "cap_log", "capture"]

MAX_LOG_LINES = 64
MAX_LOG_BYTES = 8192
MAX_LINE_BYTES = 512
_LEVELS = ("trace", "debug", "info", "warn", "error")
_U32 = 0xFFFFFFFF
_current = threading.local()


@dataclass(slots=True)
class LogSink:
    """The lines one call logged, bounded in count and total bytes; the rest is counted."""

    lines: list[str] = field(default_factory=list)
    size: int = 0
    dropped: int = 0

    def room(self) -> int:
        if len(self.lines) >= MAX_LOG_LINES:
            return 0
        return min(MAX_LINE_BYTES, MAX_LOG_BYTES - self.size)

    def add(self, level: int, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        # Printable only: lines end up on terminals and in events.
        if not text.isprintable():
            text = "".join(c if c.isprintable() else "\ufffd" for c in text)
        name = _LEVELS[level] if 0 <= level < len(_LEVELS) else f"level{level}"
        self.lines.append(f"{name}: {text}")
        self.size += len(raw)


@contextlib.contextmanager
def capture(sink: LogSink) -> Iterator[LogSink]:
    """Route this thread's ``cap_log`` calls to ``sink`` (wasm runs on the calling thread)."""
    previous = getattr(_current, "sink", None)
    _current.sink = sink
    try:
        yield sink
    finally:
        _current.sink = previous


def cap_log(caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
    """Append ``memory[ptr:ptr+length]`` (truncated to the room left) to the current log."""
    try:
        sink = getattr(_current, "sink", None)
        if sink is None:
            return
        room = sink.room()
        if room <= 0:
            sink.dropped += 1
            return
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return
        start, n = ptr & _U32, length & _U32
        size = memory.data_len(caller)
        if start > size or n > size - start:
            sink.add(level, b"<cap_log: range outside linear memory>")
            return
        base = ctypes.addressof(memory.data_ptr(caller).contents)
        sink.add(level, ctypes.string_at(base + start, min(n, room)))
    except BaseException:  # a host function must never raise (see the module docstring)
        return
