"""Tracking over ordered detections: Roboflow ``trackers``' ByteTrack, driven by the frames' timestamps.

Usage::

    tracker = FrameTracker(frame_rate=10.0)                     # the published frame rate
    ids = tracker.update(timestamp_us, record.detections)       # one per detection: track id, or None
    analysis = Analysis(track=True, lines=[spec], frame_rate=10.0, clock="stream")
    result = analysis.frame(timestamp_us, record.detections)    # FrameAnalysis: track ids + crossings
    analysis.summary()                                          # for the report

**Time, not frame counts.** ``trackers.ByteTrackTracker.update(detections, timestamp=seconds)`` takes
each frame's time: the Kalman step is the elapsed time in units of ``frame_rate`` frames, and a lost
track is dropped after ``lost_track_s`` seconds without a match (not after N calls). We give it the
frame's ``timestamp_us`` (seconds from the first frame tracked) and, as ``frame_rate``, the rate the
frames were published at (manifest ``sample_fps``, else ``source_fps``, else the median timestamp
gap: :func:`collector.plan.output_fps`), so a step between two consecutive published frames is one
frame whatever the sampling. **Gaps**: a missing frame, an error record or an unreadable result is
*not* fed as an empty frame (that would say "nothing there"); the tracker simply sees the next frame
later, predicts across the gap and keeps a track through it while the gap is shorter than
``lost_track_s``. Frames arrive here in timestamp order only (``follow`` drops late ones), so the
answer is the one a single process tracking the same frames in order would give.

ByteTrack is class-agnostic: a track keeps the label of the detection it is matched to. Track ids
are the library's (0, 1, 2, … in order of confirmation); a box whose track is not confirmed yet (its
first frame: ``min_consecutive_frames`` is 2) gets ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.lines import Crossing, LineCounter, LineSpec
from framecontract.records import Detection

LIBRARY = "trackers"


@dataclass(frozen=True)
class TrackerSettings:
    """ByteTrack's knobs, in our units. Defaults suit the worker's detectors (scores from 0.35)."""

    lost_track_s: float = 1.0
    """A track with no match for this long is dropped (the library counts it in 30 fps frames: × 30)."""
    activation: float = 0.5
    """Lowest score that starts a track."""
    high_confidence: float = 0.5
    """Scores from here are matched first; lower ones only extend existing tracks (ByteTrack's second stage)."""
    min_consecutive_frames: int = 2
    """Frames a new track must be matched in a row before it gets an id."""
    min_iou: float = 0.1
    """Overlap needed to match a box to a track's predicted box."""


class FrameTracker:
    """One ByteTrack tracker fed frame by frame, in timestamp order."""

    def __init__(self, frame_rate: float, settings: TrackerSettings | None = None) -> None:
        import trackers

        self.settings = settings or TrackerSettings()
        self.frame_rate = frame_rate
        self._tracker = trackers.ByteTrackTracker(
            lost_track_buffer=max(round(self.settings.lost_track_s * 30), 1),
            frame_rate=frame_rate,
            track_activation_threshold=self.settings.activation,
            minimum_consecutive_frames=self.settings.min_consecutive_frames,
            minimum_iou_threshold=self.settings.min_iou,
            high_conf_det_threshold=self.settings.high_confidence,
        )
        self._origin_us: int | None = None
        self._classes: dict[str, int] = {}
        self.tracks = 0
        """Tracks confirmed so far (ids are allocated 0, 1, 2, …): a number, not a set, so memory stays flat."""

    def update(self, timestamp_us: int, detections: Sequence[Detection]) -> list[int | None]:
        """Track one frame; the track id of each detection, in the given order (``None``: not confirmed)."""
        import numpy as np
        import supervision as sv

        if self._origin_us is None:
            self._origin_us = timestamp_us
        boxes = np.array([d.box for d in detections], dtype=float).reshape(-1, 4)
        scores = np.array([1.0 if d.score is None else d.score for d in detections], dtype=float)
        classes = np.array([self._classes.setdefault(d.label, len(self._classes)) for d in detections], dtype=int)
        frame = sv.Detections(xyxy=boxes, confidence=scores, class_id=classes,
                              data={"position": np.arange(len(detections))})
        tracked = self._tracker.update(frame, timestamp=(timestamp_us - self._origin_us) / 1_000_000)
        ids: list[int | None] = [None] * len(detections)
        if len(tracked):
            for position, track_id in zip(tracked.data["position"], tracked.tracker_id, strict=True):
                if track_id >= 0:
                    ids[int(position)] = int(track_id)
                    self.tracks = max(self.tracks, int(track_id) + 1)
        return ids


@dataclass(frozen=True)
class FrameAnalysis:
    """What tracking and counting add to one frame."""

    track_ids: list[int | None] | None = None
    """One per detection (``None`` when not tracked); the whole field is ``None`` without ``--track``."""
    crossings: list[Crossing] = field(default_factory=list)


class Analysis:
    """``--track`` and ``--line`` over frames in timestamp order: what ``follow`` and ``reassemble`` share."""

    def __init__(self, track: bool, lines: Sequence[LineSpec], frame_rate: float, clock: str = "stream",
                 settings: TrackerSettings | None = None) -> None:
        self.tracker = FrameTracker(frame_rate, settings) if track or lines else None
        self.lines = LineCounter(lines, clock) if lines else None

    @property
    def active(self) -> bool:
        return self.tracker is not None

    def frame(self, timestamp_us: int, detections: Sequence[Detection]) -> FrameAnalysis:
        """Track one frame and count its line crossings."""
        if self.tracker is None:
            return FrameAnalysis()
        ids = self.tracker.update(timestamp_us, detections)
        crossings = self.lines.update(timestamp_us, [d.box for d in detections], ids) if self.lines else []
        return FrameAnalysis(ids, crossings)

    def summary(self) -> dict[str, Any]:
        """``tracking`` and ``lines`` sections of a report (empty without ``--track``/``--line``)."""
        if self.tracker is None:
            return {}
        from importlib.metadata import version

        out: dict[str, Any] = {"tracking": {
            "library": f"{LIBRARY} {version(LIBRARY)}",
            "algorithm": "ByteTrack",
            "time": "timestamps",
            "frame_rate": self.tracker.frame_rate,
            "lost_track_s": self.tracker.settings.lost_track_s,
            "tracks": self.tracker.tracks,
        }}
        if self.lines is not None:
            out["lines"] = self.lines.summary()
        return out


def detection_dicts(detections: Sequence[Detection], analysis: FrameAnalysis) -> list[dict[str, Any]]:
    """The contract's detection dicts, with ``track_id`` added when tracking."""
    dicts = [d.to_dict() for d in detections]
    if analysis.track_ids is not None:
        for item, track_id in zip(dicts, analysis.track_ids, strict=True):
            item["track_id"] = track_id
    return dicts
