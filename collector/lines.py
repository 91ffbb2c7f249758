"""Line counts: ``--line NAME:x1,y1,x2,y2``, in/out crossings of tracked objects, totals and per-minute buckets.

Usage::

    spec = parse_line("door:100,200,400,200")        # LineSpec; ValueError with the exact reason
    counter = LineCounter([spec])
    crossings = counter.update(timestamp_us, boxes, track_ids, labels)   # in timestamp order, after tracking
    counter.summary()     # {"door": {"line": [...], "in": 3, "out": 1, "per_minute": [...]}}

Crossings are counted by supervision's ``LineZone`` (one per line, its default triggers: all four
corners of a box must have passed, so a box straddling the line counts once it is wholly across).
Directions follow LineZone: **in** is a crossing to the left-hand side of the line seen from
``(x1, y1)`` looking towards ``(x2, y2)`` (image coordinates, y down) — for a line drawn from top to
bottom, moving left to right across the picture; **out** the other way. Only tracked boxes count
(a track is confirmed on its second frame), so ``--line`` implies ``--track``.

Per-minute buckets are by the frame's timestamp: minute ``m`` covers ``[m, m+1) × 60 s`` of the stream
(files) or of UTC (live cameras, wall-clock timestamps), and only minutes with a crossing are listed.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LINE_HELP = "give NAME:x1,y1,x2,y2 in pixels of the frame (e.g. door:100,200,400,200)"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
MINUTE_US = 60_000_000


@dataclass(frozen=True)
class LineSpec:
    """A named counting line from ``(x1, y1)`` to ``(x2, y2)``, in pixels of the frame."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def points(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


def parse_line(text: str) -> LineSpec:
    """``NAME:x1,y1,x2,y2`` → :class:`LineSpec`; ValueError ``invalid line 'x': ...`` otherwise.

    >>> parse_line("door:100,200,400,200.5")
    LineSpec(name='door', x1=100.0, y1=200.0, x2=400.0, y2=200.5)
    """
    name, colon, rest = text.partition(":")
    if not colon:
        raise ValueError(f"invalid line {text!r}: {LINE_HELP}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid line {text!r}: the name must be 1-40 letters, digits, '_', '-' or '.'")
    parts = rest.split(",")
    if len(parts) != 4:
        raise ValueError(f"invalid line {text!r}: give 4 coordinates x1,y1,x2,y2, got {len(parts)}")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"invalid line {text!r}: {part.strip()!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid line {text!r}: coordinates are pixels, 0 or more, got {part.strip()!r}")
        values.append(value)
    x1, y1, x2, y2 = values
    if (x1, y1) == (x2, y2):
        raise ValueError(f"invalid line {text!r}: its two ends are the same point")
    return LineSpec(name, x1, y1, x2, y2)


def check_lines(lines: Sequence[LineSpec]) -> str | None:
    """The problem with a set of ``--line`` values as one line, ``None`` if they are usable (unique names)."""
    seen: set[str] = set()
    for line in lines:
        if line.name in seen:
            return f"--line {line.name} is given twice; each line needs a name of its own"
        seen.add(line.name)
    return None


@dataclass(frozen=True)
class Crossing:
    """One tracked object crossing one line in one frame."""

    line: str
    direction: str
    """``in`` or ``out``."""
    track_id: int
    timestamp_us: int

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "direction": self.direction, "track_id": self.track_id}


def minute_label(minute: int, clock: str) -> str:
    """How a bucket is named in reports: ``'0:03'`` (stream minutes) or ``'2026-11-28T12:03Z'`` (UTC)."""
    if clock == "wallclock":
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
        return moment.strftime("%Y-%m-%dT%H:%MZ")
    return f"{minute // 60}:{minute % 60:02d}"


class LineCounter:
    """Counts crossings of several lines by tracked boxes, frame by frame in timestamp order."""

    def __init__(self, lines: Sequence[LineSpec], clock: str = "stream") -> None:
        import supervision as sv

        self.specs = list(lines)
        self.clock = clock
        self._zones = [sv.LineZone(start=sv.Point(s.x1, s.y1), end=sv.Point(s.x2, s.y2)) for s in self.specs]
        self._buckets: list[Counter[tuple[int, str]]] = [Counter() for _ in self.specs]

    def update(self, timestamp_us: int, boxes: Sequence[Sequence[float]], track_ids: Sequence[int | None],
               ) -> list[Crossing]:
        """Feed one frame's tracked boxes (``None``: not tracked yet, ignored); the crossings it completes."""
        import numpy as np
        import supervision as sv

        keep = [i for i, t in enumerate(track_ids) if t is not None]
        xyxy = np.array([list(boxes[i]) for i in keep], dtype=float).reshape(-1, 4)
        ids = np.array([track_ids[i] for i in keep], dtype=int)
        detections = sv.Detections(xyxy=xyxy, tracker_id=ids)
        crossings: list[Crossing] = []
        for spec, zone, bucket in zip(self.specs, self._zones, self._buckets, strict=True):
            crossed_in, crossed_out = zone.trigger(detections)
            for direction, crossed in (("in", crossed_in), ("out", crossed_out)):
                for position in np.flatnonzero(crossed):
                    crossings.append(Crossing(spec.name, direction, int(ids[position]), timestamp_us))
                    bucket[(timestamp_us // MINUTE_US, direction)] += 1
        return crossings

    def counts(self) -> dict[str, tuple[int, int]]:
        """``{name: (in, out)}`` so far."""
        return {s.name: (z.in_count, z.out_count) for s, z in zip(self.specs, self._zones, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Per line: its points, ``in`` and ``out`` totals, and the per-minute buckets with a crossing."""
        out: dict[str, Any] = {}
        for spec, zone, bucket in zip(self.specs, self._zones, self._buckets, strict=True):
            minutes = sorted({m for m, _ in bucket})
            out[spec.name] = {
                "line": spec.points,
                "in": zone.in_count,
                "out": zone.out_count,
                "per_minute": [
                    {"minute": minute_label(m, self.clock), "start_us": m * MINUTE_US,
                     "in": bucket[(m, "in")], "out": bucket[(m, "out")]}
                    for m in minutes
                ],
            }
        return out
