"""Per-frame work: check the header, decode, run the pipeline, encode, list the detections.

Usage::

    limits = ImageLimits.for_push()
    frame = process_frame(jpeg_bytes, lambda image, timings: pipeline.run(image, timings=timings), limits)
    frame.annotated_jpeg, frame.detections, frame.latency_ms

The header is read before anything is decoded (:mod:`worker.imageinfo`): an image of a format the
path does not accept, larger than the limits, or not the size its message declares is refused as a
:class:`~worker.errors.PermanentFrameError` at the cost of reading a few bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from framecontract.records import Detection
from worker.errors import ImageTooLargeError, PermanentFrameError
from worker.imageinfo import IMAGE_FORMATS, UnreadableHeaderError, read_image_header

JPEG_QUALITY = 90
DEFAULT_MAX_PIXELS = 50_000_000
"""50 megapixels: an 8K frame is 33 MP. Decoding costs 3 bytes per pixel (150 MB here)."""
DEFAULT_MAX_SIDE = 16_384
"""Longest side accepted; JPEG itself cannot encode a side above 65,535."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What a path accepts before it decodes: formats, and the size the header may declare."""

    formats: Collection[str] = ("jpeg",)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE

    @classmethod
    def for_push(cls, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE) -> ImageLimits:
        """Frame messages: JPEG only, as the contract says."""
        return cls(("jpeg",), max_pixels, max_side)

    @classmethod
    def for_predict(cls, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = DEFAULT_MAX_SIDE) -> ImageLimits:
        """The front door: JPEG, PNG, WebP, BMP."""
        return cls(IMAGE_FORMATS, max_pixels, max_side)


@dataclass(frozen=True)
class ProcessedFrame:
    """What the pipeline made of one frame."""

    annotated_jpeg: bytes
    width: int
    height: int
    detections: tuple[Detection, ...]
    latency_ms: dict[str, float]


def decode_image(data: bytes, limits: ImageLimits, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Check the header against ``limits`` (and the declared ``(width, height)``), then decode to BGR.

    Raises :class:`PermanentFrameError` (or its :class:`ImageTooLargeError`) with the reason.
    """
    accepted = _names(limits.formats)
    if not data:
        raise PermanentFrameError("image data is empty")
    try:
        header = read_image_header(data)
    except UnreadableHeaderError as exc:
        raise PermanentFrameError(f"image data is not a {accepted} image ({exc})") from None
    if header.format not in limits.formats:
        raise PermanentFrameError(f"image is {_names([header.format])}; accepted: {accepted}")
    size = f"{header.width}x{header.height}"
    if max(header.width, header.height) > limits.max_side:
        raise ImageTooLargeError(f"image is {size}; the longest side allowed is {limits.max_side} pixels")
    if header.pixels > limits.max_pixels:
        raise ImageTooLargeError(f"image is {size} ({header.pixels:,} pixels); at most {limits.max_pixels:,}")
    if expected_size is not None and (header.width, header.height) != expected_size:
        raise PermanentFrameError(f"image is {size} but its message says {expected_size[0]}x{expected_size[1]}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise PermanentFrameError(f"image data cannot be decoded (its {_names([header.format])} header says {size})")
    if image.shape[1] != header.width or image.shape[0] != header.height:
        raise PermanentFrameError(f"image decodes to {image.shape[1]}x{image.shape[0]}, its header says {size}")
    return image


def _names(formats: Collection[str]) -> str:
    """``JPEG``, ``JPEG or PNG``, ``JPEG, PNG, WebP or BMP``."""
    names = [{"webp": "WebP"}.get(f, f.upper()) for f in formats]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def encode_annotated_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """The annotated frame as JPEG bytes (sizes were checked on the way in, so this does not fail)."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding of a {image.shape[1]}x{image.shape[0]} frame failed")
    return buffer.tobytes()


def detections_from_outputs(outputs: dict[str, Any], width: int, height: int) -> tuple[Detection, ...]:
    """Turn PeekingDuck's normalised ``bboxes``/``bbox_labels``/``bbox_scores`` into pixel boxes."""
    bboxes = np.asarray(outputs.get("bboxes", np.empty((0, 4))), dtype=np.float64).reshape(-1, 4)
    labels = list(outputs.get("bbox_labels", []))
    scores = list(outputs.get("bbox_scores", [None] * len(bboxes)))
    scale = np.array([width, height, width, height], dtype=np.float64)
    detections = []
    for box, label, score in zip(bboxes, labels, scores, strict=False):
        x1, y1, x2, y2 = (np.clip(box, 0.0, 1.0) * scale).round(1).tolist()
        detections.append(Detection(str(label), None if score is None else round(float(score), 4), (x1, y1, x2, y2)))
    return tuple(detections)


def process_frame(
    data: bytes,
    run_pipeline: Callable[[np.ndarray, dict[str, float]], dict[str, Any]],
    limits: ImageLimits,
    expected_size: tuple[int, int] | None = None,
) -> ProcessedFrame:
    """Decode ``data``, run the pipeline on it, and encode the annotated frame.

    ``run_pipeline(image, timings)`` is ``pipeline.run``, or a wrapper that serialises it: decoding
    and encoding stay outside, so they overlap another request's inference.
    """
    latency: dict[str, float] = {}
    started = time.perf_counter()
    image = decode_image(data, limits, expected_size)
    latency["decode"] = (time.perf_counter() - started) * 1000
    height, width = image.shape[:2]
    outputs = run_pipeline(image, latency)
    started = time.perf_counter()
    annotated = encode_annotated_jpeg(outputs.get("img", image))
    latency["encode"] = (time.perf_counter() - started) * 1000
    detections = detections_from_outputs(outputs, width, height)
    return ProcessedFrame(annotated, width, height, detections, {k: round(v, 2) for k, v in latency.items()})
