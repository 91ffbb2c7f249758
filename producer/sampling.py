"""Which frames to publish: evenly by timestamp for a target fps (pure).

Usage::

    sampler = TimestampSampler(target_fps=5)
    kept = [ts for ts in timestamps_us if sampler.accept(ts)]

    for frame in sampled(decoded_frames, TimestampSampler(5), lambda f: f.timestamp_us):
        ...                                  # numbered later, when published: producer.numbering

Sampling is by *time*, not by index, so variable-frame-rate sources (phones, screen recordings,
dropped camera frames) are sampled evenly too. Time is cut into slots of ``1 / target_fps``
starting at the first frame; a frame is kept when it is the first one in a slot after the slot
of the previous kept frame *and* at least half a slot after it. So:

- at most one frame per slot: over any span of time, never more than the target rate (+1 for
  the fence post);
- kept frames are at least half a period apart, so a burst of frames is never passed through;
- the slot grid is fixed to the first frame, so the kept timestamps do not drift.

A source slower than the target keeps every frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

SLOT_TOLERANCE_US = 1000
"""At most this much (and at most 1 % of a period) early still counts as on time."""


class TimestampSampler:
    """Decides, frame by frame in timestamp order, whether to keep it for ``target_fps``."""

    def __init__(self, target_fps: float | None) -> None:
        if target_fps is not None and not target_fps > 0:
            raise ValueError(f"target_fps must be > 0, got {target_fps}")
        self.target_fps = target_fps
        self.period_us = 1_000_000 / target_fps if target_fps else 0.0
        self.tolerance_us = min(SLOT_TOLERANCE_US, self.period_us / 100)
        """Timestamps rounded to whole µs (e.g. 333333 for 1/3 s) still count as on the slot boundary."""
        self._origin_us: int | None = None
        self._next_due_us = 0.0

    def accept(self, timestamp_us: int) -> bool:
        """True if the frame at ``timestamp_us`` is to be published. Timestamps must not decrease."""
        if self.target_fps is None:
            return True
        if self._origin_us is None:
            self._origin_us = timestamp_us
        elif timestamp_us < self._next_due_us - self.tolerance_us:
            return False
        offset = timestamp_us - self._origin_us + self.tolerance_us
        next_slot_start = self._origin_us + (offset // self.period_us + 1) * self.period_us
        self._next_due_us = max(next_slot_start, timestamp_us + self.period_us / 2)
        return True


def sampled(frames: Iterable[T], sampler: TimestampSampler, timestamp_of: Callable[[T], int]) -> Iterator[T]:
    """The frames ``sampler`` keeps, in order; nothing is numbered here (see :mod:`producer.numbering`).

    >>> list(sampled([0, 100_000, 200_000, 300_000], TimestampSampler(5), lambda ts: ts))
    [0, 200000]
    """
    return (frame for frame in frames if sampler.accept(timestamp_of(frame)))
