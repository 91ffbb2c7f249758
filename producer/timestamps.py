"""Presentation timestamps: trust the decoder's while they increase, else extrapolate (pure).

Usage::

    tracker = TimestampTracker(nominal_fps=10.0)
    tracker.timestamp_us(0, 0.0)     # 0
    tracker.timestamp_us(1, 100.0)   # 100000
    tracker.timestamp_us(2, 0.0)     # 200000 — not increasing: from here on index / fps

OpenCV's ``CAP_PROP_POS_MSEC`` is exact for most containers but approximate or always zero for
some (raw streams, some AVI/MPEG-TS). A timestamp that is missing, not a number, or not strictly
greater than the previous one switches the tracker to *fallback* for the rest of the stream:
timestamps continue from the last trusted one at the nominal frame interval, so they stay
monotonic and never mix two clocks. Negative timestamps (edit lists) are clamped to 0.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

DEFAULT_FALLBACK_FPS = 25.0
"""Frame rate assumed for the fallback when the container does not say (or says nonsense)."""


def usable_fps(fps: float | None) -> float | None:
    """``fps`` if it is a plausible frame rate (0 < fps <= 1000), else ``None``."""
    if fps is None or not math.isfinite(fps) or not 0 < fps <= 1000:
        return None
    return float(fps)


class TimestampTracker:
    """Turns reported presentation times (ms) into strictly increasing µs timestamps."""

    def __init__(self, nominal_fps: float | None, source_name: str = "video") -> None:
        self.nominal_fps = usable_fps(nominal_fps)
        self.source_name = source_name
        self.fallback_reason: str | None = None
        """Why the tracker stopped trusting the decoder; ``None`` while it trusts it."""
        self.fallback_from_index: int | None = None
        self.clamped_negative = 0
        self._last_index: int | None = None
        self._last_us = 0
        self._anchor_index = 0
        self._anchor_us = 0

    @property
    def interval_us(self) -> float:
        """The nominal frame interval used by the fallback."""
        return 1_000_000 / (self.nominal_fps or DEFAULT_FALLBACK_FPS)

    def timestamp_us(self, position: int, reported_ms: float | None) -> int:
        """The timestamp of the frame at ``position`` (0, 1, 2, ... in decode order; not a ``frame_index``)."""
        if self._last_index is not None and position <= self._last_index:
            raise ValueError(f"position {position} after {self._last_index}; positions must increase")
        if self.fallback_reason is None:
            reported_us = self._trusted(position, reported_ms)
            if reported_us is not None:
                return self._emit(position, reported_us)
            self._anchor_index, self._anchor_us = self._last_index or 0, self._last_us
            self.fallback_from_index = position
        ts = self._anchor_us + round((position - self._anchor_index) * self.interval_us)
        return self._emit(position, ts)

    def _trusted(self, position: int, reported_ms: float | None) -> int | None:
        """The reported time in µs if it can be trusted; else record why and return ``None``."""
        if reported_ms is None or not math.isfinite(reported_ms):
            reason = f"no usable timestamp ({reported_ms!r})"
        else:
            reported_us = round(reported_ms * 1000)
            if reported_us < 0:
                self.clamped_negative += 1
                reported_us = 0
            if self._last_index is None or reported_us > self._last_us:
                return reported_us
            reason = f"timestamp {reported_us} µs is not after the previous {self._last_us} µs"
        fps_note = f"{self.nominal_fps:g} fps" if self.nominal_fps else f"an assumed {DEFAULT_FALLBACK_FPS:g} fps"
        self.fallback_reason = reason
        log.warning(
            "%s: frame %d has %s; the container's timestamps are unreliable, so from this frame on "
            "timestamps are extrapolated at %s", self.source_name, position, reason, fps_note,
        )
        return None

    def _emit(self, position: int, ts: int) -> int:
        self._last_index, self._last_us = position, ts
        return ts
