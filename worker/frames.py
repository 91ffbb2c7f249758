"""Per-frame work: decode, run the pipeline, encode, and build the detections record.

Usage::

    result = process_frame(jpeg_bytes, lambda image, timings: pipeline.run(image, timings=timings))
    result.annotated_jpeg, result.detections, result.latency_ms
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from worker.errors import PermanentFrameError

JPEG_QUALITY = 90


@dataclass(frozen=True)
class FrameResult:
    """What the pipeline made of one frame."""

    annotated_jpeg: bytes
    width: int
    height: int
    detections: list[dict[str, Any]]
    latency_ms: dict[str, float]


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes to a BGR array; :class:`PermanentFrameError` if they are not an image."""
    if not data:
        raise PermanentFrameError("frame data is empty")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise PermanentFrameError("frame data is not a decodable image")
    return image


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode a BGR array as JPEG."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buffer.tobytes()


def detections_from_outputs(outputs: dict[str, Any], width: int, height: int) -> list[dict[str, Any]]:
    """Turn PeekingDuck's normalised ``bboxes``/``bbox_labels``/``bbox_scores`` into pixel boxes."""
    bboxes = np.asarray(outputs.get("bboxes", np.empty((0, 4))), dtype=np.float64).reshape(-1, 4)
    labels = list(outputs.get("bbox_labels", []))
    scores = list(outputs.get("bbox_scores", [None] * len(bboxes)))
    scale = np.array([width, height, width, height], dtype=np.float64)
    detections = []
    for box, label, score in zip(bboxes, labels, scores, strict=False):
        x1, y1, x2, y2 = (np.clip(box, 0.0, 1.0) * scale).round(1).tolist()
        detections.append(
            {
                "label": str(label),
                "score": None if score is None else round(float(score), 4),
                "box": [x1, y1, x2, y2],
            }
        )
    return detections


def process_frame(data: bytes, run_pipeline: Callable[[np.ndarray, dict[str, float]], dict[str, Any]]) -> FrameResult:
    """Decode ``data``, run the pipeline on it, and encode the annotated frame.

    ``run_pipeline(image, timings)`` is ``pipeline.run``, or a wrapper that serialises it: decoding
    and encoding stay outside, so they overlap another request's inference.
    """
    latency: dict[str, float] = {}
    started = time.perf_counter()
    image = decode_image(data)
    latency["decode"] = (time.perf_counter() - started) * 1000
    height, width = image.shape[:2]
    outputs = run_pipeline(image, latency)
    started = time.perf_counter()
    annotated = encode_jpeg(outputs.get("img", image))
    latency["encode"] = (time.perf_counter() - started) * 1000
    detections = detections_from_outputs(outputs, width, height)
    return FrameResult(annotated, width, height, detections, {k: round(v, 2) for k, v in latency.items()})
