"""End to end through the real emulators and gunicorn workers: the first 60 frames of vtest.avi.

Producer CLI → Pub/Sub emulator → push → 2 gunicorn workers (NanoDet + draw.bbox) → storage
emulator → collector wait → collector reassemble → decode the MP4 and check it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import requests

from deploy.demo import run_video_job
from deploy.local import start_stack, stop_stack
from deploy.stack_config import StackConfig
from framecontract.clients import make_publisher, make_storage_client
from framecontract.layout import parse_result_name
from framecontract.manifest import Manifest
from framecontract.message import FrameAttributes

FRAMES = 60
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def vtest_path() -> Path:
    from framecontract.assets import asset_path

    return asset_path("vtest")


@pytest.fixture(scope="module", params=["pull", "push"])
def stack(request, tmp_path_factory):
    """The local stack in each mode: pull (the default) and push (the emulator pushes to gunicorn)."""
    config = StackConfig(workers=2, port=None, pubsub_port=None, storage_port=None, mode=request.param,
                         stack_dir=tmp_path_factory.mktemp("stack"))
    handle = start_stack(config)
    yield handle
    stop_stack(handle)


def source_frames(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32))
    capture.release()
    return frames


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in ("h264", "libx264")
        return [f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(stream)]


def test_vtest_clip_end_to_end(stack, tmp_path, vtest_path) -> None:
    run = run_video_job(stack, vtest_path, tmp_path / "out", max_frames=FRAMES, wait_timeout_s=600)

    # every frame stored exactly once, no errors, manifest complete
    client = make_storage_client(stack.settings)
    names = [b.name for b in client.list_blobs(stack.settings.bucket, prefix=f"jobs/{run.job_id}/")]
    parsed = [p for p in map(parse_result_name, names) if p is not None]
    per_kind = Counter(p.kind for p in parsed)
    assert per_kind == {"frames": FRAMES, "detections": FRAMES}, per_kind
    for kind in ("frames", "detections"):
        assert sorted(p.frame_index for p in parsed if p.kind == kind) == list(range(FRAMES))
    manifest = Manifest.from_json(client.bucket(stack.settings.bucket).blob(f"jobs/{run.job_id}/manifest.json")
                                  .download_as_bytes())
    assert (manifest.state, manifest.frames_published) == ("complete", FRAMES)

    # reassembled in order: each output frame is closest to the source frame of the same index
    output = decoded_frames(run.video)
    assert len(output) == FRAMES
    source = source_frames(vtest_path, FRAMES)
    for i, frame in enumerate(output):
        candidates = range(max(0, i - 2), min(FRAMES, i + 3))
        errors = {j: float(np.mean((frame - source[j]) ** 2)) for j in candidates}
        assert min(errors, key=errors.get) == i, (i, errors)

    # detections in order, people where people are (vtest.avi always shows pedestrians)
    lines = [json.loads(line) for line in run.detections.read_text().splitlines()]
    assert [r["frame_index"] for r in lines] == list(range(FRAMES))
    assert [r["timestamp_us"] for r in lines] == sorted(r["timestamp_us"] for r in lines)
    assert run.frames == FRAMES
    assert run.frames_with_people >= 0.9 * FRAMES
    assert run.people_boxes >= 3 * FRAMES


def test_redelivered_frame_is_acknowledged_and_stored_once(stack) -> None:
    """At-least-once delivery: the same frame published again changes nothing in the bucket."""
    client = make_storage_client(stack.settings)
    bucket = client.bucket(stack.settings.bucket)
    job = "redelivery-test"
    attributes = FrameAttributes(job, 0, 0, 64, 48).to_pubsub()
    jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()
    publisher = make_publisher(stack.settings)
    for _ in range(3):
        publisher.publish(stack.settings.topic_path, jpeg, **attributes).result(timeout=30)
    metrics_url = stack.settings.worker_url + "/metrics"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = requests.get(metrics_url, timeout=10).text
        if _metric(text, 'frames_total{outcome="duplicate"}') >= 2:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the worker did not acknowledge two duplicates:\n" + text[-2000:])
    names = sorted(b.name for b in client.list_blobs(bucket.name, prefix=f"jobs/{job}/"))
    assert [parse_result_name(n).kind for n in names] == ["detections", "frames"]
    assert _metric(text, 'frames_total{outcome="processed"}') >= 1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
