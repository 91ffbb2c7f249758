"""Helpers for the producer tests: synthetic videos and pulling everything a job published.

Usage::

    path = write_synthetic_video(tmp_path / "clip.avi", frames=24, fps=12)
    report = run_job(path, job_options(job_id="clip", fps=4), settings)
    messages = pull_all(settings, expected=24)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from framecontract.clients import make_storage_client
from framecontract.layout import manifest_name
from framecontract.manifest import Manifest
from framecontract.settings import Settings
from producer.options import JobOptions, ProducerOptions

SYNTHETIC_SIZE = (160, 120)
"""(width, height) of synthetic clips."""

WAIT_S = 30.0
"""How long a test waits for an event or a state before failing: only something broken waits this long."""


def job_options(**given: Any) -> JobOptions:
    """``ProducerOptions(**given)``, checked as the command line checks them: what ``run_job`` takes."""
    return ProducerOptions(**given).validated()


def brightness_of(frame_number: int) -> int:
    """The grey level of synthetic frame ``frame_number``: tells frames apart after JPEG round trips."""
    return (frame_number * 9) % 240 + 8


def write_synthetic_video(path: Path, frames: int, fps: float, fourcc: str = "MJPG",
                          size: tuple[int, int] = SYNTHETIC_SIZE) -> Path:
    """A clip whose frame ``i`` is flat grey ``brightness_of(i)`` with a white square moving right."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    width, height = size
    for i in range(frames):
        image = np.full((height, width, 3), brightness_of(i), np.uint8)
        x = (i * 4) % (width - 16)
        image[8:24, x:x + 16] = 255
        writer.write(image)
    writer.release()
    return path


@dataclass(frozen=True)
class Pulled:
    """One pulled message."""

    data: bytes
    attributes: dict[str, str]


def pull_all(settings: Settings, expected: int | None = None, deadline_s: float = 30.0) -> list[Pulled]:
    """Pull and ack every message on ``settings.subscription`` until it is empty (and ``expected`` reached).

    Keeps pulling for up to ``deadline_s`` while fewer than ``expected`` have arrived; then one more
    pull must come back empty, so extra (duplicate) messages are seen too.
    """
    from framecontract.clients import make_subscriber

    subscriber = make_subscriber(settings)
    pulled: list[Pulled] = []
    deadline = time.monotonic() + deadline_s
    try:
        while True:
            with warnings.catch_warnings():  # deprecated, but the way to ask "anything left?" without waiting
                warnings.simplefilter("ignore", DeprecationWarning)
                response = subscriber.pull(subscription=settings.subscription_path, max_messages=500,
                                           return_immediately=True, timeout=10)
            received = response.received_messages
            if received:
                pulled.extend(Pulled(r.message.data, dict(r.message.attributes)) for r in received)
                subscriber.acknowledge(subscription=settings.subscription_path,
                                       ack_ids=[r.ack_id for r in received])
                continue
            if expected is None or len(pulled) >= expected or time.monotonic() > deadline:
                return pulled
            time.sleep(0.1)
    finally:
        subscriber.close()


def read_manifest(settings: Settings, job_id: str) -> Manifest:
    """The job's manifest as stored in the bucket."""
    blob = make_storage_client(settings).bucket(settings.bucket).blob(manifest_name(job_id))
    return Manifest.from_json(blob.download_as_bytes())


def decode_jpeg(data: bytes) -> np.ndarray:
    """A JPEG as a BGR image (asserts it decodes)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a decodable JPEG"
    return image


class ScriptedSource:
    """A :class:`~producer.sources.FrameSource` wrapper that calls ``before_frame(n)`` before the n-th frame
    read (0-based) and ``after_last()`` once the source has no more frames.

    Lets a test act at an exact point of a job: read the manifest, send a signal, raise, open a gate.
    """

    def __init__(self, inner: Any, before_frame: Callable[[int], None],
                 after_last: Callable[[], None] = lambda: None) -> None:
        self.inner = inner
        self.info = inner.info
        self.before_frame = before_frame
        self.after_last = after_last

    def frames(self) -> Iterator[Any]:
        for read, frame in enumerate(self.inner.frames()):
            self.before_frame(read)
            yield frame
        self.after_last()

    def close(self) -> None:
        self.inner.close()
