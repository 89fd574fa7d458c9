"""Finding events by time: the seq range an RFC 3339 instant or interval corresponds to.

Events are timestamped by the writer when their batch commits, so ``ts`` never decreases
along the log as long as the writer's clock does not step back; lookups bisect on that.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from ledger.errors import BadInput
from ledger.log import EventLog

__all__ = ["first_seq_at_or_after", "last_seq_at_or_before", "parse_instant", "resolve_bound"]


def parse_instant(text: str) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``+HH:MM``); anything else is ``E-BAD-INPUT``."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadInput("E-BAD-INPUT", f"not an RFC 3339 time: {text!r}") from None
    if when.tzinfo is None:
        raise BadInput("E-BAD-INPUT", f"RFC 3339 time needs an offset (Z or +HH:MM): {text!r}")
    return when.astimezone(UTC)


def _ts(log: EventLog, seq: int) -> datetime:
    return datetime.fromisoformat(log.get(seq).ts)


def _last_where(log: EventLog, pred: Callable[[datetime], bool]) -> int | None:
    """The last seq whose time satisfies ``pred`` (true on a prefix of the log), or ``None``."""
    lo, hi = 0, log.head().seq
    if not pred(_ts(log, lo)):
        return None
    while lo < hi:  # invariant: pred(ts(lo))
        mid = (lo + hi + 1) // 2
        if pred(_ts(log, mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo


def last_seq_at_or_before(log: EventLog, when: datetime) -> int | None:
    """The last event written at or before ``when`` (``None``: the log starts later)."""
    return _last_where(log, lambda ts: ts <= when)


def first_seq_at_or_after(log: EventLog, when: datetime) -> int | None:
    """The first event written at or after ``when`` (``None``: the log ends earlier)."""
    before = _last_where(log, lambda ts: ts < when)
    nxt = 0 if before is None else before + 1
    return nxt if nxt <= log.head().seq else None


def resolve_bound(log: EventLog, value: str | None, *, upper: bool) -> int | None:
    """A ``--from``/``--to`` value: a seq (digits) or an RFC 3339 time (the first event at or
    after it for ``--from``, the last at or before it for ``--to``). ``None`` stays ``None``;
    a time outside the log gives -1 (nothing) for ``--to`` and head+1 for ``--from``."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    when = parse_instant(value)
    if upper:
        seq = last_seq_at_or_before(log, when)
        return -1 if seq is None else seq
    seq = first_seq_at_or_after(log, when)
    return log.head().seq + 1 if seq is None else seq
