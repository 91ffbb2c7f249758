"""Drawing track ids and counting lines on an annotated frame (BGR, OpenCV).

Usage::

    image = draw_analysis(image, record.detections, analysis_result, lines, counter.counts())

The worker has already drawn its boxes (PeekingDuck's ``draw.bbox``); this adds, per tracked box, a
box outline in the track's colour with ``#id`` above it, and each counting line with its name and
``in N  out M``. Used by ``reassemble --track/--line`` (on every video frame) and ``follow --serve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from collector.lines import LineSpec
from collector.tracking import FrameAnalysis
from framecontract.records import Detection

LINE_BGR = (0, 215, 255)
"""Counting lines: amber."""
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per track id."""
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 220, 255]]], dtype=np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    thickness = max(round(scale * 2), 1)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = min(max(x, 0), max(image.shape[1] - tw - 2, 0))
    y = min(max(y, th + 2), image.shape[0] - base - 1)
    cv2.rectangle(image, (x, y - th - 2), (x + tw + 2, y + base), colour, -1)
    cv2.putText(image, text, (x + 1, y), _FONT, scale, (0, 0, 0), thickness, cv2.LINE_AA)


def draw_analysis(image: np.ndarray, detections: Sequence[Detection], analysis: FrameAnalysis,
                  lines: Sequence[LineSpec] = (), counts: Mapping[str, tuple[int, int]] | None = None) -> np.ndarray:
    """``image`` (modified in place and returned) with track ids and counting lines drawn."""
    scale = max(image.shape[0] / 900, 0.35)
    for detection, track_id in zip(detections, analysis.track_ids or [None] * len(detections), strict=True):
        if track_id is None:
            continue
        colour = track_colour(track_id)
        x1, y1, x2, y2 = (round(v) for v in detection.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        _label(image, f"#{track_id}", x1, y1 - 3, colour, scale)
    for spec in lines:
        start, end = (round(spec.x1), round(spec.y1)), (round(spec.x2), round(spec.y2))
        cv2.line(image, start, end, LINE_BGR, 2, cv2.LINE_AA)
        got_in, got_out = (counts or {}).get(spec.name, (0, 0))
        _label(image, f"{spec.name}  in {got_in}  out {got_out}", min(start[0], end[0]),
               min(start[1], end[1]) - 4, LINE_BGR, scale)
    return image
