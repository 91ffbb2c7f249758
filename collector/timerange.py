"""``--from T`` / ``--to T``: parsing times and selecting the part of a timeline they cover. Pure.

Usage::

    start = parse_time("1:30")                    # TimePoint(text='1:30', offset_us=90_000_000)
    end = parse_time("2026-11-28T12:00:05Z")      # TimePoint(..., absolute_us=1795867205000000)
    check_range(start, parse_time("95.5"))        # None, or the problem as one line
    window = resolve_range(start, end, clock="stream", origin_us=0)   # TimeRange in the job's µs
    selected = select_slots(timeline.slots, estimate_timestamps(timeline.slots, fps), window)

A time ``T`` is one of

- seconds: ``90``, ``12.5``;
- a clock position ``[HH:]MM:SS[.fff]``: ``1:30``, ``01:02:03.250``;
- (live jobs only) an ISO 8601 date-time with a zone: ``2026-11-28T12:00:05Z``, ``...+01:00``.

Seconds and clock positions are offsets from the job's origin: the stream start for files
(``clock: stream``, timestamps are presentation times, origin 0), the first published frame for
live sources (``clock: wallclock``, origin ``first_timestamp_us`` of the manifest, else the earliest
timestamp seen). The range is half-open, ``from <= timestamp < to``, so ``--to 10`` and
``--from 10`` split a job without overlap or gap. A missing frame has no timestamp: it gets one by
linear interpolation (by index) between the known frames around it, extrapolated at the output
frame rate at either end, and is selected when that estimate is in range.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from collector.errors import CollectorError
from collector.plan import Slot

TIME_HELP = (
    "give seconds (90, 12.5), [HH:]MM:SS[.fff] (1:30, 01:02:03.5) or, for live jobs, "
    "an ISO 8601 time with a zone (2026-11-28T12:00:05Z)"
)

_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]")
_CLOCK = re.compile(r"(?:(?P<h>\d+):)?(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)")


@dataclass(frozen=True)
class TimePoint:
    """One parsed ``--from``/``--to`` value: an offset from the job's origin, or an absolute time."""

    text: str
    offset_us: int | None = None
    absolute_us: int | None = None
    """µs since the epoch (only for ISO 8601 date-times)."""

    @property
    def is_absolute(self) -> bool:
        return self.absolute_us is not None


def parse_time(text: str) -> TimePoint:
    """Parse a ``--from``/``--to`` value; ValueError ``invalid time 'x': give ...`` otherwise."""
    value = text.strip()
    if _SECONDS.fullmatch(value):
        return TimePoint(text, offset_us=round(float(value) * 1_000_000))
    clock = _CLOCK.fullmatch(value)
    if clock:
        minutes, seconds = int(clock["m"]), float(clock["s"])
        if (clock["h"] is not None and minutes >= 60) or seconds >= 60:
            raise ValueError(f"invalid time {text!r}: minutes and seconds must be below 60")
        total = int(clock["h"] or 0) * 3600 + minutes * 60 + seconds
        return TimePoint(text, offset_us=round(total * 1_000_000))
    if _DATE.match(value):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"invalid time {text!r}: {TIME_HELP}") from None
        if moment.tzinfo is None:
            raise ValueError(f"invalid time {text!r}: an ISO 8601 time needs a zone (Z or +HH:MM)")
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return TimePoint(text, absolute_us=(moment - epoch) // dt.timedelta(microseconds=1))
    raise ValueError(f"invalid time {text!r}: {TIME_HELP}")


def check_range(start: TimePoint | None, end: TimePoint | None) -> str | None:
    """The problem with a ``--from``/``--to`` pair as one line, ``None`` if it is usable."""
    if start is None or end is None:
        return None
    if start.is_absolute != end.is_absolute:
        return "--from and --to must both be offsets (seconds, [HH:]MM:SS) or both ISO 8601 times"
    first = start.absolute_us if start.is_absolute else start.offset_us
    last = end.absolute_us if end.is_absolute else end.offset_us
    assert first is not None and last is not None
    if first >= last:
        return f"--from {start.text} is not before --to {end.text} (the range is from <= t < to)"
    return None


@dataclass(frozen=True)
class TimeRange:
    """A half-open range ``[start_us, end_us)`` in the job's own timestamps (``None``: unbounded)."""

    start_us: int | None
    end_us: int | None
    origin_us: int
    """What offsets are counted from (0 for stream clocks, the first frame for wall clocks)."""
    text: str
    """The range as the user gave it, for messages: ``'from 1:30 to 2:00'``."""

    def contains(self, timestamp_us: int) -> bool:
        return (self.start_us is None or timestamp_us >= self.start_us) and (
            self.end_us is None or timestamp_us < self.end_us
        )

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "start_us": self.start_us, "end_us": self.end_us, "origin_us": self.origin_us}


def resolve_range(start: TimePoint | None, end: TimePoint | None, clock: str, origin_us: int) -> TimeRange:
    """``--from``/``--to`` in the job's timestamps; CollectorError for an absolute time on a stream clock."""
    bounds: list[int | None] = []
    for point in (start, end):
        if point is None:
            bounds.append(None)
        elif point.is_absolute:
            if clock != "wallclock":
                raise CollectorError(
                    f"{point.text!r} is a date-time, but this job's timestamps are positions in the stream "
                    f"(clock {clock!r}); give seconds or [HH:]MM:SS"
                )
            bounds.append(point.absolute_us)
        else:
            assert point.offset_us is not None
            bounds.append(origin_us + point.offset_us)
    words = [f"{label} {p.text}" for label, p in (("from", start), ("to", end)) if p is not None]
    return TimeRange(bounds[0], bounds[1], origin_us, " ".join(words) or "everything")


def estimate_timestamps(slots: Sequence[Slot], fps: float) -> list[int]:
    """Each slot's timestamp: the known one, or for a missing slot an estimate (see the module doc)."""
    interval = 1_000_000 / fps if fps > 0 else 100_000.0
    known = [(i, s) for i, s in enumerate(slots) if s.timestamp_us is not None]
    out: list[int] = []
    k = 0  # index into known of the first known slot at or after position i
    for position, slot in enumerate(slots):
        while k < len(known) and known[k][0] < position:
            k += 1
        if slot.timestamp_us is not None:
            out.append(slot.timestamp_us)
            continue
        before = known[k - 1][1] if k > 0 else None
        after = known[k][1] if k < len(known) else None
        out.append(_interpolate(slot.frame_index, before, after, interval))
    return out


def _interpolate(index: int, before: Slot | None, after: Slot | None, interval: float) -> int:
    if before is not None and after is not None and after.frame_index > before.frame_index:
        assert before.timestamp_us is not None and after.timestamp_us is not None
        step = (after.timestamp_us - before.timestamp_us) / (after.frame_index - before.frame_index)
        return round(before.timestamp_us + (index - before.frame_index) * step)
    if before is not None:
        assert before.timestamp_us is not None
        return round(before.timestamp_us + (index - before.frame_index) * interval)
    if after is not None:
        assert after.timestamp_us is not None
        return round(after.timestamp_us - (after.frame_index - index) * interval)
    return round(index * interval)


def select_slots(slots: Sequence[Slot], timestamps: Sequence[int], window: TimeRange) -> tuple[Slot, ...]:
    """The slots whose (known or estimated) timestamp lies in ``window``, in timeline order."""
    return tuple(slot for slot, ts in zip(slots, timestamps, strict=True) if window.contains(ts))


def format_offset(timestamp_us: int, origin_us: int) -> str:
    """``timestamp_us`` as seconds from the origin, for messages: ``'12.5 s'``."""
    seconds = (timestamp_us - origin_us) / 1_000_000
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + " s" if math.isfinite(seconds) else "?"


WINDOW_MARGIN_US = 10_000_000
"""Listed on each side of a ``--from``/``--to`` range, so that a missing frame near its edges has known
neighbours to take its estimated timestamp from."""


def listing_window(
    window: TimeRange, first_us: int | None, last_us: int | None
) -> tuple[int | None, int | None] | None:
    """The timestamps to list for ``window``, or ``None`` to list the whole job.

    A bounded listing pays one request per result folder (48) instead of one per 1,000 objects, so it
    is used only when the window plus :data:`WINDOW_MARGIN_US` on each side covers less than half of
    the job's span ``[first_us, last_us]`` (from the final manifest; ``None``: unknown → whole job).
    Returns ``(start_us, end_us)``, either ``None`` where the window is open or reaches the job's end.
    """
    if first_us is None or last_us is None or last_us <= first_us:
        return None
    start = None if window.start_us is None or window.start_us - WINDOW_MARGIN_US <= first_us else (
        window.start_us - WINDOW_MARGIN_US)
    end = None if window.end_us is None or window.end_us + WINDOW_MARGIN_US > last_us else (
        window.end_us + WINDOW_MARGIN_US)
    covered = (end if end is not None else last_us + 1) - (start if start is not None else first_us)
    if covered * 2 >= last_us + 1 - first_us:
        return None
    return start, end
