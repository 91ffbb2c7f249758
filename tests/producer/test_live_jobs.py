"""Live and real-world sources through the real emulators: an MJPEG camera that drops the connection,
a TCP stream served by FFmpeg (PyAV), SIGINT/SIGTERM on a live job, --latest-frame drops, VFR sampling,
image folders and resizing. The policy tests stall Pub/Sub on events, not on sleeps."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from framecontract.message import FrameAttributes
from framecontract.settings import Settings
from producer.job import PREFETCH_FRAMES, JobClients, JobReport, run_job
from producer.publishing import PublishLimits
from producer.sampling import TimestampSampler
from producer.sources import open_video_file
from tests.producer.helpers import (
    WAIT_S,
    ScriptedSource,
    decode_jpeg,
    job_options,
    pull_all,
    read_manifest,
    write_synthetic_video,
)
from tests.producer.mjpeg_server import MjpegServer, closest_frame, vtest_jpegs
from tests.producer.test_cli import REPO, producer_env

PASSWORD = "s3cr3t-pw"


@pytest.fixture(scope="module")
def camera_jpegs(vtest_path: Path) -> list[bytes]:
    """30 real CCTV frames (vtest.avi) as the camera's JPEGs."""
    return vtest_jpegs(str(vtest_path), 30)


def by_index(messages: list[Any]) -> list[tuple[FrameAttributes, bytes]]:
    parsed = sorted(((FrameAttributes.from_pubsub(m.attributes), m.data) for m in messages),
                    key=lambda item: item[0].frame_index)
    assert [a.frame_index for a, _ in parsed] == list(range(len(parsed))), "indices 0..N-1, each once"
    return parsed


def test_mjpeg_camera_drops_the_connection_and_the_job_reconnects(
    pubsub_settings: Settings, camera_jpegs: list[bytes]
) -> None:
    with MjpegServer(camera_jpegs, fps=25, drop_first_after=10, credentials=("viewer", PASSWORD)) as camera:
        report = run_job(camera.url("viewer", PASSWORD), job_options(job_id="cam-reconnect", max_frames=25),
                         pubsub_settings)
        assert camera.connections == 2 and camera.unauthorized == 2
        assert [header[:5] for header in camera.authorizations] == ["", "Basic"] * 2, "Basic only when challenged"

    assert (report.state, report.frames_published, report.frames_dropped) == ("complete", 25, 0)
    frames = by_index(pull_all(pubsub_settings, expected=25))
    stamps = [attrs.timestamp_us for attrs, _ in frames]
    assert stamps == sorted(set(stamps))
    assert abs(stamps[0] / 1e6 - time.time()) < 60, "live timestamps are wall-clock µs since the epoch"
    # frames 0-9 come from the first connection, frame 10 onwards from the second (which starts over)
    served = [closest_frame(decode_jpeg(data), camera_jpegs) for _, data in frames]
    assert served == list(range(10)) + list(range(15))
    gap_us = stamps[10] - stamps[9]
    assert gap_us >= 400_000, "the reconnect waited for its backoff"
    assert max(b - a for a, b in zip(stamps[:10], stamps[1:10], strict=False)) < gap_us

    manifest = read_manifest(pubsub_settings, "cam-reconnect")
    assert (manifest.state, manifest.clock, manifest.source_kind) == ("complete", "wallclock", "stream")
    assert manifest.source == f"http://***@127.0.0.1:{camera.port}/stream"
    assert manifest.options["reader"] == "mjpeg" and manifest.options["policy"] == "latest-frame"
    assert len(manifest.gaps) == 1 and manifest.gaps_total == 1
    gap = manifest.gaps[0]
    assert (gap["after_timestamp_us"], gap["resumed_timestamp_us"]) == (stamps[9], stamps[10])
    assert gap["reason"] == "the server closed the connection" and gap["reconnect_attempts"] == 1
    assert gap["seconds"] == pytest.approx(gap_us / 1e6, abs=0.002)
    assert PASSWORD not in manifest.to_json() and "viewer" not in manifest.to_json()


def test_a_camera_trickling_a_frame_is_reconnected_and_the_gap_says_why(
    pubsub_settings: Settings, camera_jpegs: list[bytes]
) -> None:
    # the 6th part comes a byte every 10 ms: whole in minutes, so only the 0.5 s frame deadline ends the wait
    with MjpegServer(camera_jpegs, fps=25, trickle_first_after=5, trickle_interval=0.01) as camera:
        report = run_job(camera.url(), job_options(job_id="cam-trickle", max_frames=8, frame_timeout=0.5),
                         pubsub_settings)
        assert camera.connections == 2
    assert (report.state, report.frames_published) == ("complete", 8)
    frames = by_index(pull_all(pubsub_settings, expected=8))
    assert [closest_frame(decode_jpeg(data), camera_jpegs) for _, data in frames] == [0, 1, 2, 3, 4, 0, 1, 2]
    manifest = read_manifest(pubsub_settings, "cam-trickle")
    assert manifest.gaps_total == 1
    assert manifest.gaps[0]["reason"] == "no whole frame within 0.5 s (a stalled or trickling server)"
    assert manifest.gaps[0]["after_timestamp_us"] == frames[4][0].timestamp_us
    assert manifest.gaps[0]["resumed_timestamp_us"] == frames[5][0].timestamp_us


def test_an_unreachable_camera_fails_before_a_job_exists(pubsub_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from producer.live import StreamUnavailableError

    with pytest.raises(StreamUnavailableError) as caught:
        run_job(f"http://admin:{PASSWORD}@127.0.0.1:{port}/video", job_options(job_id="no-camera"),
                pubsub_settings)
    message = str(caught.value)
    assert message.startswith(
        f"cannot read the stream http://***@127.0.0.1:{port}/video: cannot connect (ConnectionError: ")
    assert message.endswith("— check the URL, that the camera is on and reachable from here, and its user name "
                            "and password")
    assert PASSWORD not in message and "admin" not in message
    assert caught.value.exit_code == 1
    assert pull_all(pubsub_settings) == []


def test_a_camera_that_never_comes_back_fails_the_job_with_its_gap(
    pubsub_settings: Settings, camera_jpegs: list[bytes]
) -> None:
    from producer.live import StreamUnavailableError

    with MjpegServer(camera_jpegs, fps=25, drop_first_after=5, max_connections=1) as camera:
        options = job_options(job_id="cam-gone", reconnect_timeout=1.5, policy="every-frame")
        with pytest.raises(StreamUnavailableError) as caught:
            run_job(camera.url(), options, pubsub_settings)
        assert camera.refused >= 1
    assert str(caught.value).startswith(
        f"job cam-gone: http://127.0.0.1:{camera.port}/stream: stream lost (the server closed the connection) and not "
        "back after 1.5 s (")
    assert "answered HTTP 503" in str(caught.value)
    assert "stream lost (the server closed the connection) and not back after 1.5 s" in str(caught.value)
    manifest = read_manifest(pubsub_settings, "cam-gone")
    assert manifest.state == "failed" and manifest.frames_published == 5
    assert len(manifest.gaps) == 1 and manifest.gaps[0]["resumed_timestamp_us"] is None
    assert manifest.gaps[0]["reconnect_attempts"] >= 1
    assert len(pull_all(pubsub_settings, expected=5)) == 5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_live_job_and_every_frame_read_is_published(
    sig: signal.Signals, pubsub_settings: Settings, camera_jpegs: list[bytes]
) -> None:
    job_id = f"live-{sig.name.lower()}"
    with MjpegServer(camera_jpegs, fps=20, credentials=("viewer", PASSWORD)) as camera:
        process = subprocess.Popen(
            [sys.executable, "-m", "producer", camera.url("viewer", PASSWORD), "--job-id", job_id, "-v",
             "--max-side", "384"],
            cwd=REPO, env=producer_env(pubsub_settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            camera.wait_for_frames(25)
            process.send_signal(sig)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 128 + sig, stderr
    assert stdout.splitlines()[-1] == job_id
    assert PASSWORD not in stderr and "viewer:" not in stderr
    assert f"{sig.name} received: stopping" in stderr and "http://***@127.0.0.1" in stderr
    summary = [line for line in stderr.splitlines() if line.startswith(f"job {job_id} stopped")]
    assert summary, stderr
    manifest = read_manifest(pubsub_settings, job_id)
    assert (manifest.state, manifest.width, manifest.height) == ("stopped", 384, 288)
    frames = by_index(pull_all(pubsub_settings, expected=manifest.frames_published))
    assert len(frames) == manifest.frames_published >= 10
    decoded = int(summary[0].split("(of ")[1].split(" decoded")[0])
    assert decoded == manifest.frames_published + manifest.frames_dropped, "every frame read is published or counted"
    assert all((attrs.width, attrs.height) == (384, 288) for attrs, _ in frames)


class GatedPublisher:
    """A real publisher client whose first ``publish`` waits until ``gate`` is set: a Pub/Sub that stalls
    while the reader goes on. ``publishing`` is set once that first publish has begun."""

    def __init__(self, client: Any, gate: threading.Event) -> None:
        self._client, self._gate = client, gate
        self.publishing = threading.Event()

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        if not self.publishing.is_set():
            self.publishing.set()
            assert self._gate.wait(WAIT_S), "the gate never opened"
        return self._client.publish(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


FAST_FRAMES = 120
"""Frames of the 30 fps clip of the policy tests."""


def gated_job(pubsub_settings: Settings, video: Path, policy: str, open_gate_at: int | None) -> JobReport:
    """Publish ``video`` as job ``policy-<policy>`` while Pub/Sub stalls on frame 0: the reader reads frame 1 on
    only once frame 0 is being published, and that publish goes on once frame ``open_gate_at`` is read
    (``None``: once every frame is read)."""
    gate = threading.Event()
    real = JobClients.from_settings(pubsub_settings, PublishLimits())
    publisher = GatedPublisher(real.publisher, gate)

    def before_frame(read: int) -> None:
        if read == 1:
            assert publisher.publishing.wait(WAIT_S), "frame 0 was never published"
        if read == open_gate_at:
            gate.set()

    source = ScriptedSource(open_video_file(video), before_frame, after_last=gate.set)
    return run_job(source, job_options(job_id=f"policy-{policy}", policy=policy), pubsub_settings,
                   clients=dataclasses.replace(real, publisher=publisher))


def test_latest_frame_drops_the_oldest_waiting_frames_and_numbers_the_rest_contiguously(
    pubsub_settings: Settings, tmp_path: Path
) -> None:
    video = write_synthetic_video(tmp_path / "fast.avi", frames=FAST_FRAMES, fps=30)
    report = gated_job(pubsub_settings, video, "latest-frame", open_gate_at=None)

    # frame 0 was being published while frames 1..119 were read into the 8-frame read-ahead: the 8 newest remain
    kept = [0, *range(FAST_FRAMES - PREFETCH_FRAMES, FAST_FRAMES)]
    dropped = FAST_FRAMES - len(kept)
    assert (report.frames_decoded, report.frames_published, report.frames_dropped) == (
        FAST_FRAMES, len(kept), dropped)
    frames = by_index(pull_all(pubsub_settings, expected=len(kept)))  # asserts frame_index 0..N-1, each once
    assert [attrs.timestamp_us for attrs, _ in frames] == [round(i * 1e6 / 30) for i in kept]
    manifest = read_manifest(pubsub_settings, "policy-latest-frame")
    assert (manifest.frames_published, manifest.frames_dropped, manifest.last_frame_index) == (
        len(kept), dropped, len(kept) - 1)
    assert manifest.options["policy"] == "latest-frame"


def test_every_frame_waits_for_a_stalled_publisher_and_drops_nothing(
    pubsub_settings: Settings, tmp_path: Path
) -> None:
    video = write_synthetic_video(tmp_path / "fast.avi", frames=FAST_FRAMES, fps=30)
    # the gate opens when frames 1..8 fill the read-ahead and frame 9 has been read, with no room for it
    report = gated_job(pubsub_settings, video, "every-frame", open_gate_at=PREFETCH_FRAMES + 1)

    assert (report.frames_decoded, report.frames_published, report.frames_dropped) == (FAST_FRAMES, FAST_FRAMES, 0)
    frames = by_index(pull_all(pubsub_settings, expected=FAST_FRAMES))
    assert [attrs.timestamp_us for attrs, _ in frames] == [round(i * 1e6 / 30) for i in range(FAST_FRAMES)]
    assert read_manifest(pubsub_settings, "policy-every-frame").options["policy"] == "every-frame"


def write_vfr_video(path: Path, stamps_ms: list[int]) -> Path:
    """An MKV (MJPEG) whose frame i is shown at ``stamps_ms[i]``: a variable-frame-rate file."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=1000)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuvj420p"
        stream.time_base = Fraction(1, 1000)
        for i, ms in enumerate(stamps_ms):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), (i * 7) % 250, np.uint8), format="bgr24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_sampling_a_variable_frame_rate_file_goes_by_timestamp(pubsub_settings: Settings, tmp_path: Path) -> None:
    # 1 s at 60 fps, 1 s at 5 fps, 1 s at 30 fps with jitter
    rng = np.random.default_rng(5)
    stamps = [round(i * 1000 / 60) for i in range(60)] + [1000 + i * 200 for i in range(5)]
    stamps += sorted({2000 + round(i * 1000 / 30 + rng.uniform(-8, 8)) for i in range(30)})
    video = write_vfr_video(tmp_path / "vfr.mkv", stamps)
    with open_video_file(video) as source:
        decoded = [f.timestamp_us for f in source.frames()]
    assert decoded == [ms * 1000 for ms in stamps], "OpenCV gives the file's own presentation times"

    run_job(video, job_options(job_id="vfr", fps=10), pubsub_settings)
    published = [a.timestamp_us for a, _ in by_index(pull_all(pubsub_settings, expected=25))]
    sampler = TimestampSampler(10)
    assert published == [ts for ts in decoded if sampler.accept(ts)]
    for second in range(3):
        in_second = [ts for ts in published if second * 1e6 <= ts < (second + 1) * 1e6]
        assert len(in_second) == (5 if second == 1 else 10), f"second {second}: {in_second}"
    by_index_every_6th = decoded[::6]
    assert published != by_index_every_6th, "not sampled by index"


def test_an_image_folder_is_published_in_name_order_resized(pubsub_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"cam-{i}.jpg"), np.full((300, 400, 3), 10 + i * 20, np.uint8))
    report = run_job(folder, job_options(job_id="folder", image_fps=4, resize="200x100"), pubsub_settings)
    assert report.frames_published == 12
    frames = by_index(pull_all(pubsub_settings, expected=12))
    assert [a.timestamp_us for a, _ in frames] == [i * 250_000 for i in range(12)]
    assert [round(float(decode_jpeg(d).mean())) for _, d in frames] == pytest.approx(
        [10 + i * 20 for i in range(12)], abs=2)
    assert all((a.width, a.height) == (200, 100) for a, _ in frames)
    manifest = read_manifest(pubsub_settings, "folder")
    assert (manifest.source_kind, manifest.width, manifest.height, manifest.options["source_width"]) == (
        "images", 200, 100, 400)
    assert manifest.options["image_fps"] == 4 and manifest.options["policy"] == "every-frame"


def test_duration_bounds_a_file_by_video_time(pubsub_settings: Settings, synthetic_video: Path) -> None:
    report = run_job(synthetic_video, job_options(job_id="first-second", duration=1.0), pubsub_settings)
    assert report.state == "complete" and report.frames_published == 12
    assert read_manifest(pubsub_settings, "first-second").last_timestamp_us == round(11 * 1e6 / 12)


def test_duration_bounds_a_live_job_by_wall_clock(pubsub_settings: Settings, camera_jpegs: list[bytes]) -> None:
    with MjpegServer(camera_jpegs, fps=10) as camera:
        started = time.monotonic()
        report = run_job(camera.url(), job_options(job_id="live-duration", duration=1.5), pubsub_settings)
        elapsed = time.monotonic() - started
    assert report.state == "complete" and 1.5 <= elapsed < 8
    manifest = read_manifest(pubsub_settings, "live-duration")
    assert 10 <= manifest.frames_published <= 17
    assert (manifest.last_timestamp_us or 0) - (manifest.first_timestamp_us or 0) < 1_500_000
    assert json.loads(manifest.to_json())["options"]["duration_s"] == 1.5
