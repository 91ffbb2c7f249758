"""Shared worker fixtures: one real pipeline per test session, real sample frames; detector checks."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Collection
from pathlib import Path

import cv2
import numpy as np
import pytest

from framecontract.assets import asset_path
from framecontract.message import FrameAttributes
from worker.detectors.nanodet import Detections
from worker.pipeline import Pipeline

_message_ids = itertools.count(1)


@pytest.fixture(scope="session")
def pipeline() -> Pipeline:
    """The default pipeline (NanoDet node → draw.bbox), loaded once."""
    return Pipeline.from_yaml()


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    from framecontract.assets import asset_path

    return asset_path("vtest")


@pytest.fixture(scope="session")
def vtest_jpeg(vtest_path: Path) -> bytes:
    """Frame 0 of vtest.avi (three pedestrians) as JPEG bytes."""
    capture = cv2.VideoCapture(str(vtest_path))
    ok, frame = capture.read()
    capture.release()
    assert ok, f"cannot read {vtest_path}"
    return cv2.imencode(".jpg", frame)[1].tobytes()


def push_envelope(data: bytes, attributes: dict[str, str], message_id: str | None = None) -> dict:
    """A Pub/Sub wrapped push envelope as the emulator sends it."""
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": attributes,
            "messageId": message_id or str(next(_message_ids)),
            "publishTime": "2026-11-28T12:00:00.000Z",
        },
        "subscription": "projects/test-project/subscriptions/frames-push",
    }


def frame_attributes(job_id: str, index: int, timestamp_us: int | None = None, width: int = 768,
                     height: int = 576) -> dict[str, str]:
    ts = index * 100_000 if timestamp_us is None else timestamp_us
    return FrameAttributes(job_id, index, ts, width, height).to_pubsub()


def blank_jpeg(width: int = 64, height: int = 48) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 127, np.uint8))[1].tobytes()


@pytest.fixture(scope="session")
def dog_image() -> np.ndarray:
    image = cv2.imread(str(asset_path("dog")))
    assert image is not None
    return image


def boxes_contain(bboxes_px: np.ndarray, point: tuple[int, int]) -> bool:
    """Does any box (pixels, x1 y1 x2 y2) contain ``point``?"""
    x, y = point
    inside_x = (bboxes_px[:, 0] <= x) & (x <= bboxes_px[:, 2])
    return bool(np.any(inside_x & (bboxes_px[:, 1] <= y) & (y <= bboxes_px[:, 3])))


def assert_well_formed(found: Detections, labels: Collection[str]) -> None:
    """A detector's output: float32 normalised boxes, descending scores, labels from ``labels``."""
    assert found.bboxes.dtype == np.float32 and found.bboxes.shape == (len(found), 4)
    assert found.scores.dtype == np.float32 and found.scores.shape == (len(found),)
    assert np.all((found.bboxes >= 0) & (found.bboxes <= 1))
    assert np.all(found.bboxes[:, 0] < found.bboxes[:, 2]) and np.all(found.bboxes[:, 1] < found.bboxes[:, 3])
    assert np.all(np.diff(found.scores) <= 0), "scores must be in descending order"
    assert all(label in labels for label in found.labels)
