"""Synthetic jobs for tests and benchmarks: frames with a machine-readable burned-in counter.

Usage::

    image = counter_frame(42, width=768, height=576)      # BGR, index 42 encoded as blocks
    read_counter(decoded_image)                           # 42, even after H.264 at CRF 23
    seed_job(bucket, "synthetic", indices=range(100), fps=10.0, width=768, height=576)
    walker = MovingBox("person", box=(20, 150, 50, 210), velocity=(40, 0))     # 40 px/s to the right
    seed_job(bucket, "walkers", range(60), boxes=[walker])    # detections follow the boxes, drawn on the frames
    write_frame(bucket, "live", 7, timestamp_us=700_000, boxes=[walker])       # one frame's results, as a worker

The counter is :data:`COUNTER_BITS` black/white blocks across the top of the frame with their
inverse in a second row; :func:`read_counter` compares the two rows, so a misread raises instead of
returning a wrong index. The rest of the frame is a gradient with a moving disc and the index in
digits, so that the encoder sees ordinary moving content.

:class:`MovingBox` objects move at a constant velocity in *time* (pixels per second of timestamp), so a
job sampled at another rate, or with holes, shows the same motion: tracking and line counts over them
have exact expected answers (tests/collector/test_tracking.py).

:func:`seed_job` writes a job the way the producer and the worker do (manifest via
:class:`framecontract.manifest.Manifest`, annotated JPEG, and the records through
:mod:`framecontract.records`, the types the worker writes, under
:func:`framecontract.layout.result_name`) in shuffled order.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from framecontract.layout import manifest_name, result_name
from framecontract.manifest import Manifest
from framecontract.records import Detection, DetectionsRecord, ErrorRecord

COUNTER_BITS = 16


def _cell(width: int) -> int:
    return max(width // COUNTER_BITS, 4)


def counter_frame(index: int, width: int = 768, height: int = 576) -> np.ndarray:
    """A BGR frame showing ``index`` as blocks (top two rows) and as digits."""
    if not 0 <= index < 2**COUNTER_BITS:
        raise ValueError(f"index {index} does not fit in {COUNTER_BITS} bits")
    cell = _cell(width)
    if height < 4 * cell:
        raise ValueError(f"frame {width}x{height} is too small for the counter")
    ramp = np.linspace(40, 200, width, dtype=np.uint8)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = ramp[None, :, None]
    image[..., 0] = np.linspace(60, 160, height, dtype=np.uint8)[:, None]
    cx = int((index * 7) % max(width - 80, 1)) + 40
    cv2.circle(image, (cx, height // 2 + cell), max(cell, 20), (30, 90, 230), -1)
    cv2.putText(image, str(index), (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 255), 4)
    for bit in range(COUNTER_BITS):
        on = (index >> (COUNTER_BITS - 1 - bit)) & 1
        x0 = bit * cell
        image[0:cell, x0 : x0 + cell] = 255 if on else 0
        image[cell : 2 * cell, x0 : x0 + cell] = 0 if on else 255
    return image


def read_counter(image: np.ndarray) -> int:
    """The index burned in by :func:`counter_frame`; ValueError if the blocks do not read cleanly."""
    width = image.shape[1]
    cell = _cell(width)
    gray = image.mean(axis=2) if image.ndim == 3 else image
    lo, hi = cell // 4, cell - cell // 4
    value = 0
    for bit in range(COUNTER_BITS):
        x0 = bit * cell
        top = gray[lo:hi, x0 + lo : x0 + hi].mean()
        bottom = gray[cell + lo : cell + hi, x0 + lo : x0 + hi].mean()
        if abs(top - bottom) < 96:
            raise ValueError(f"counter bit {bit} unreadable (top {top:.0f}, bottom {bottom:.0f})")
        value = (value << 1) | int(top > bottom)
    return value


def synthetic_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a synthetic BGR frame."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


def timestamp_of(index: int, fps: float) -> int:
    """The presentation time (µs) of frame ``index`` at ``fps``."""
    return round(index * 1_000_000 / fps)


@dataclass(frozen=True)
class MovingBox:
    """A synthetic object: ``box`` (x1, y1, x2, y2) at ``appears_s``, moving ``velocity`` (px/s) until ``leaves_s``."""

    label: str
    box: tuple[float, float, float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    appears_s: float = 0.0
    leaves_s: float = float("inf")
    score: float = 0.9

    def at(self, timestamp_us: int) -> Detection | None:
        """Where it is at ``timestamp_us`` (seconds from the stream start), ``None`` when not in view."""
        t = timestamp_us / 1_000_000
        if not self.appears_s <= t < self.leaves_s:
            return None
        dx, dy = ((t - self.appears_s) * v for v in self.velocity)
        x1, y1, x2, y2 = self.box
        return Detection(self.label, self.score, (x1 + dx, y1 + dy, x2 + dx, y2 + dy))


def boxes_at(boxes: Sequence[MovingBox], timestamp_us: int) -> tuple[Detection, ...]:
    """The detections of ``boxes`` in the frame at ``timestamp_us`` (those in view, in the given order)."""
    found = (b.at(timestamp_us) for b in boxes)
    return tuple(d for d in found if d is not None)


def detections_record(job_id: str, index: int, timestamp_us: int, width: int, height: int,
                      boxes: Sequence[MovingBox] | None = None, origin_us: int = 0) -> DetectionsRecord:
    """A detections record, through the type the worker writes: ``boxes`` where they are at ``timestamp_us``
    (counted from ``origin_us``), or without them one fake person per frame."""
    x = float(10 + index % 50)
    detections = boxes_at(boxes, timestamp_us - origin_us) if boxes is not None else (
        Detection("person", 0.9, (x, 20.0, x + 40.0, 120.0)),)
    return DetectionsRecord(
        job_id=job_id,
        frame_index=index,
        timestamp_us=timestamp_us,
        width=width,
        height=height,
        image=result_name("frames", job_id, index, timestamp_us),
        detections=detections,
        model="synthetic",
        latency_ms={"decode": 0.1, "queue": 0.0, "model": 0.1, "draw": 0.1, "encode": 0.1, "store_image": 0.1},
        message_id=str(1000 + index),
    )


def annotated_frame(index: int, timestamp_us: int, width: int, height: int,
                    boxes: Sequence[MovingBox] | None = None) -> bytes:
    """The annotated JPEG a worker would store: the counter frame with ``boxes`` outlined in green."""
    image = counter_frame(index, width, height)
    for detection in boxes_at(boxes or (), timestamp_us):
        x1, y1, x2, y2 = (round(v) for v in detection.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 255, 0), 2)
    return synthetic_jpeg(image)


def write_frame(bucket: Any, job_id: str, index: int, timestamp_us: int, width: int = 320, height: int = 240,
                boxes: Sequence[MovingBox] | None = None, error: str | None = None, origin_us: int = 0) -> None:
    """Write one frame's results as a worker does: the annotated JPEG, then its detections record (or only
    an error record when ``error`` is given). ``boxes`` move in time counted from ``origin_us``."""
    if error is not None:
        name = result_name("errors", job_id, index, timestamp_us)
        data = error_record(job_id, index, timestamp_us, error).to_json()
        bucket.blob(name).upload_from_string(data, content_type="application/json")
        return
    image = annotated_frame(index, timestamp_us - origin_us, width, height, boxes)
    bucket.blob(result_name("frames", job_id, index, timestamp_us)).upload_from_string(image, content_type="image/jpeg")
    record = detections_record(job_id, index, timestamp_us, width, height, boxes, origin_us)
    bucket.blob(result_name("detections", job_id, index, timestamp_us)).upload_from_string(
        record.to_json(), content_type="application/json")


def error_record(job_id: str, index: int, timestamp_us: int, reason: str) -> ErrorRecord:
    """An error record, through the type the worker writes."""
    return ErrorRecord(job_id=job_id, frame_index=index, timestamp_us=timestamp_us, reason=reason,
                       message_id=str(1000 + index))


def synthetic_manifest(
    job_id: str,
    published: int | None,
    fps: float,
    width: int,
    height: int,
    state: str = "complete",
    origin_us: int = 0,
) -> Manifest:
    """A manifest as the producer writes it; ``state='running'`` leaves frames_published at 0.

    ``origin_us`` > 0 makes it a live job (``clock: wallclock``, first frame at ``origin_us``).
    """
    started = Manifest(
        job_id=job_id,
        source="synthetic.avi" if not origin_us else "rtsp://camera.example/synthetic",
        source_kind="file" if not origin_us else "stream",
        clock="stream" if not origin_us else "wallclock",
        source_fps=fps,
        sample_fps=None,
        width=width,
        height=height,
    )
    if state == "running" or published is None:
        return started
    return started.finish(
        state,  # type: ignore[arg-type]
        frames_published=published,
        first_timestamp_us=origin_us,
        last_timestamp_us=origin_us + timestamp_of(published - 1, fps) if published else None,
        last_frame_index=published - 1 if published else None,
    )


def seed_job(
    bucket: Any,
    job_id: str,
    indices: Iterable[int],
    fps: float = 10.0,
    width: int = 320,
    height: int = 240,
    published: int | None = None,
    state: str = "complete",
    errors: Mapping[int, str] | None = None,
    images_only: Collection[int] = (),
    shuffle_seed: int | None = 7,
    timestamp_offsets: Mapping[int, int] | None = None,
    origin_us: int = 0,
    boxes: Sequence[MovingBox] | None = None,
) -> Manifest:
    """Write a synthetic job into ``bucket`` (a ``google.cloud.storage.Bucket``) like the worker would.

    ``indices`` get an annotated JPEG + detections JSON, ``errors`` (index → reason) an error record,
    ``images_only`` just the JPEG (in flight). ``published`` defaults to the highest index + 1.
    ``timestamp_offsets`` shifts chosen frames' timestamps (to test ordering by time); ``origin_us`` > 0
    makes a live job whose timestamps are wall-clock µs starting there. ``boxes`` give every frame the
    detections of those :class:`MovingBox` objects (drawn on its JPEG too). Objects are
    uploaded in shuffled order (``shuffle_seed=None`` keeps index order).
    """
    errors = dict(errors or {})
    indices = sorted(set(indices))
    all_indices = set(indices) | set(errors) | set(images_only)
    if published is None:
        published = max(all_indices) + 1 if all_indices else 0
    offsets = {i: origin_us for i in all_indices}
    for index, shift in (timestamp_offsets or {}).items():
        offsets[index] = origin_us + shift
    uploads: list[tuple[str, Any]] = []
    for index in indices:
        ts = timestamp_of(index, fps) + offsets.get(index, 0)
        uploads.append(("frames", (index, ts)))
        uploads.append(("detections", (index, ts)))
    for index in images_only:
        uploads.append(("frames", (index, timestamp_of(index, fps) + offsets.get(index, 0))))
    for index in errors:
        uploads.append(("errors", (index, timestamp_of(index, fps) + offsets.get(index, 0))))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(uploads)
    manifest = synthetic_manifest(job_id, published, fps, width, height, state, origin_us)
    bucket.blob(manifest_name(job_id)).upload_from_string(manifest.to_json(), content_type="application/json")
    for kind, (index, ts) in uploads:
        name = result_name(kind, job_id, index, ts)  # type: ignore[arg-type]
        if kind == "frames":
            data, content_type = annotated_frame(index, ts - origin_us, width, height, boxes), "image/jpeg"
        elif kind == "detections":
            record = detections_record(job_id, index, ts, width, height, boxes, origin_us)
            data, content_type = record.to_json(), "application/json"
        else:
            data, content_type = error_record(job_id, index, ts, errors[index]).to_json(), "application/json"
        bucket.blob(name).upload_from_string(data, content_type=content_type)
    return manifest
