"""``--parallel`` at its edges: each refusal's exact line, a container that cannot be cut (published sequentially
with a warning), a video in Cloud Storage read by byte range (the storage emulator answers ``Range``), a frame
over the default inline limit through the claim check, and what a chunk's decoder reads of the file.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from framecontract.clients import make_storage_client
from framecontract.layout import parse_gs_uri
from framecontract.message import MAX_INLINE_PAYLOAD_BYTES, FrameAttributes
from framecontract.settings import Settings
from producer.byteranges import LocalRanges, open_byte_ranges, read_windows
from producer.chunkdecode import decode_chunk
from producer.chunkedjob import run_chunked_job
from producer.chunks import cut_chunks, plan_frames
from producer.cli import main
from producer.clips import make_h264_clip
from producer.demux import MAX_HEADER_BYTES, demux
from producer.job import resume_job, run_job
from producer.stopping import StopRequest
from tests.producer.helpers import job_options, pull_all, read_manifest
from tests.producer.slow_worker import gated_worker_main
from tests.producer.test_resume_jobs import wait_for


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> Path:
    """An H.264 clip with B-frames and open GOPs, 200 frames at 25 fps."""
    return make_h264_clip(tmp_path_factory.mktemp("clip") / "open.mp4", vtest_path, 320, 240, 200, keyint=20,
                          bframes=3, open_gop=True)


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> str:
    assert main(argv) == status
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_each_refusal_is_one_exact_line(tmp_path: Path, clip: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")  # nothing is reached: every refusal comes first
    assert one_error_line([str(clip), "--parallel", "0"], capsys) == (
        "error: --parallel must be at least 1, got 0 — omit it for one process per core, or give 1 to publish "
        "with one process")
    assert one_error_line(["rtsp://admin:s3cret@cam.example/stream1", "--parallel", "2"], capsys) == (
        "error: --parallel decodes a video file in chunks; 'rtsp://***@cam.example/stream1' is a live source, "
        "published as it arrives — omit --parallel")
    assert one_error_line(["http://cam.example/video.mjpg", "--parallel", "4"], capsys) == (
        "error: --parallel decodes a video file in chunks; 'http://cam.example/video.mjpg' is a live source, "
        "published as it arrives — omit --parallel")
    index = next(str(i) for i in range(63, 0, -1) if not Path(str(i)).exists())
    assert one_error_line([index, "--parallel", "2"], capsys) == (
        f"error: --parallel decodes a video file in chunks; '{index}' is a webcam, published as it arrives — "
        "omit --parallel")
    assert one_error_line([str(tmp_path), "--parallel", "2"], capsys) == (
        f"error: --parallel decodes a video file in chunks; '{tmp_path}' is a folder of images, published by one "
        "process — omit --parallel")
    assert one_error_line([str(clip), "--latest-frame", "--parallel", "2"], capsys) == (
        "error: --latest-frame cannot be used with --parallel 2: a file published in chunks never drops a frame — "
        "omit --latest-frame, or give --parallel 1")
    assert one_error_line([str(clip), "--resume", "some-job", "--parallel", "0"], capsys) == (
        "error: --parallel must be at least 1, got 0 — omit it for one process per core, or give 1 to publish "
        "with one process")
    assert one_error_line(["gs://bucket/video.mp4", "--resume", "x", "--fps", "2"], capsys) == (
        "error: --fps cannot be used with --resume: a resumed job keeps the options it started with — omit --fps")


def test_without_parallel_a_short_file_takes_one_process_and_a_long_one_all(pubsub_settings: Settings,
                                                                            vtest_path: Path, tmp_path: Path) -> None:
    long_clip = tmp_path / "long.avi"  # MJPEG: every frame a keyframe
    writer = cv2.VideoWriter(str(long_clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(2000):
        writer.write(np.full((48, 64, 3), i % 250, np.uint8))
    writer.release()
    short = run_job(vtest_path, job_options(job_id="short"), pubsub_settings, default_parallel=2)
    long = run_job(long_clip, job_options(job_id="long", fps=2), pubsub_settings, default_parallel=2)
    assert (short.chunks, short.frames_published) == (0, 795)
    assert (long.chunks, long.processes, long.frames_published) == (8, 2, 160)
    assert read_manifest(pubsub_settings, "long").options["parallel"] == 2
    pull_all(pubsub_settings, expected=955)


def test_a_sequential_job_resumes_sequentially(pubsub_settings: Settings, clip: Path) -> None:
    stop = StopRequest()
    stop.request("test: stopped before the first frame")
    run_job(clip, job_options(job_id="one-process", parallel=1), pubsub_settings, stop=stop)
    from producer.resume import CannotResumeError

    with pytest.raises(CannotResumeError) as caught:
        resume_job(clip, "one-process", pubsub_settings, parallel=2)
    assert str(caught.value) == ("job 'one-process' was published by one process, and resumes the same way — "
                                 "omit --parallel")
    assert resume_job(clip, "one-process", pubsub_settings).frames_published == 200


def test_a_container_that_cannot_be_cut_is_published_sequentially(
    pubsub_settings: Settings, clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import av

    stream_file = tmp_path / "clip.ts"  # MPEG-TS: a packet's bytes are spread over 188-byte TS packets
    with av.open(str(clip)) as source, av.open(str(stream_file), "w") as target:
        video = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                target.mux(packet)
    with caplog.at_level(logging.WARNING, logger="producer.chunkedjob"):
        report = run_job(stream_file, job_options(job_id="ts", parallel=2), pubsub_settings)
    assert (report.state, report.chunks, report.frames_published) == ("complete", 0, 200)
    assert caplog.messages == [
        f"'{stream_file}' cannot be cut into chunks exactly: its packets are not stored as contiguous bytes (MPEG-TS "
        "and other packetised containers); publishing it with one process"]
    assert read_manifest(pubsub_settings, "ts").chunks == ()


def upload(settings: Settings, path: Path, name: str) -> str:
    make_storage_client(settings).bucket(settings.bucket).blob(name).upload_from_filename(str(path))
    return f"gs://{settings.bucket}/{name}"


def by_index(settings: Settings, expected: int) -> dict[str, dict[int, tuple[FrameAttributes, bytes]]]:
    jobs: dict[str, dict[int, tuple[FrameAttributes, bytes]]] = {}
    for message in pull_all(settings, expected=expected, deadline_s=60):
        attrs = FrameAttributes.from_pubsub(message.attributes)
        frames = jobs.setdefault(attrs.job_id, {})
        assert attrs.frame_index not in frames
        frames[attrs.frame_index] = (attrs, message.data)
    return jobs


def test_a_video_in_cloud_storage_is_read_by_byte_range_and_resumes(pubsub_settings: Settings, clip: Path) -> None:
    uri = upload(pubsub_settings, clip, "videos/open gop.mp4")
    local = run_job(clip, job_options(job_id="local", parallel=1, fps=12), pubsub_settings)

    stop = StopRequest()

    def stop_once_a_heartbeat_counts_frames() -> None:
        try:  # the gated workers hold their publishes until this stop: it is always requested
            wait_for(lambda: (m := read_manifest_or_none(pubsub_settings, "from-gcs")) and m.frames_confirmed >= 10,
                     "a heartbeat with 10 frames confirmed")
        finally:
            stop.request("test stop")

    stopper = threading.Thread(target=stop_once_a_heartbeat_counts_frames)
    stopper.start()
    first = run_chunked_job(uri, job_options(job_id="from-gcs", fps=12, heartbeat_interval=1.0), pubsub_settings, 2,
                            stop=stop, worker_target=gated_worker_main)
    stopper.join()
    assert first.state == "stopped" and first.chunks > 1
    manifest = read_manifest(pubsub_settings, "from-gcs")
    assert (manifest.source, manifest.source_kind, manifest.source_fingerprint["method"]) == (
        uri, "file", "Cloud Storage object size + crc32c")
    assert manifest.source_fingerprint["size"] == clip.stat().st_size and manifest.source_fingerprint["crc32c"]

    report = resume_job(uri, "from-gcs", pubsub_settings, parallel=2)
    assert report.state == "complete" and report.frames_published == local.frames_published - first.frames_published
    jobs = by_index(pubsub_settings, 2 * local.frames_published)
    assert sorted(jobs["from-gcs"]) == sorted(jobs["local"]) == list(range(local.frames_published))
    for index, (attrs, data) in jobs["local"].items():
        other, other_data = jobs["from-gcs"][index]
        assert (other.timestamp_us, other.width, other.height, other_data) == (
            attrs.timestamp_us, attrs.width, attrs.height, data)


def read_manifest_or_none(settings: Settings, job_id: str):  # noqa: ANN201
    from tests.producer.test_parallel_resume import read_manifest_or_none as read

    return read(settings, job_id)


def test_a_missing_object_is_one_line(pubsub_settings: Settings, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("STORAGE_EMULATOR_HOST", pubsub_settings.storage_emulator_host),
                        ("PUBSUB_EMULATOR_HOST", pubsub_settings.pubsub_emulator_host),
                        ("GOOGLE_CLOUD_PROJECT", pubsub_settings.project), ("FRAMES_TOPIC", pubsub_settings.topic),
                        ("FRAMES_BUCKET", pubsub_settings.bucket)):
        monkeypatch.setenv(name, value or "")
    uri = f"gs://{pubsub_settings.bucket}/no/such.mp4"
    assert one_error_line([uri], capsys) == (
        f"error: no such object: '{uri}' — check the bucket and object name (gcloud storage ls gs://BUCKET/PATH)")


def test_a_frame_over_the_inline_limit_goes_through_the_claim_check_sequential_and_parallel(
    pubsub_settings: Settings, tmp_path: Path
) -> None:
    video = tmp_path / "noise.avi"  # 4K noise: its JPEG at quality 100 is over 7 MB
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (3840, 2160))
    rng = np.random.default_rng(3)
    for _ in range(2):
        writer.write(rng.integers(0, 256, (2160, 3840, 3), dtype=np.uint8))
    writer.release()
    for job_id, parallel in (("sequential", 1), ("parallel", 2)):
        report = run_job(video, job_options(job_id=job_id, parallel=parallel, jpeg_quality=100), pubsub_settings)
        assert (report.frames_published, report.chunks) == (2, 0 if parallel == 1 else 1)
    jobs = by_index(pubsub_settings, 4)
    bucket = make_storage_client(pubsub_settings).bucket(pubsub_settings.bucket)
    payloads = {}
    for job_id, frames in jobs.items():
        for index, (attrs, data) in frames.items():
            assert data == b"" and attrs.payload_uri is not None, "claim-checked: the JPEG is in the bucket"
            payloads[job_id, index] = bucket.blob(parse_gs_uri(attrs.payload_uri)[1]).download_as_bytes()
    for index in range(2):
        assert len(payloads["sequential", index]) > MAX_INLINE_PAYLOAD_BYTES
        assert payloads["parallel", index] == payloads["sequential", index]


class RecordingRanges(LocalRanges):
    """A local file that records every range read."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads: list[tuple[int, int]] = []

    def read(self, start: int, end: int) -> bytes:
        self.reads.append((start, end))
        return super().read(start, end)


def test_a_chunk_reads_only_its_byte_range(clip: Path) -> None:
    with open_byte_ranges(clip) as ranges:
        table = demux(ranges)
    frames = plan_frames(table, table.fps, job_options())
    chunks = cut_chunks(table, frames, target=4)
    assert len(chunks) == 4
    for chunk in chunks:
        with RecordingRanges(clip) as ranges:
            decoded = [f.pts for f in decode_chunk(chunk, table.codec, ranges)]
        assert decoded == list(chunk.owned_pts)
        start, end = chunk.byte_range
        assert ranges.reads and all(start <= a and b <= end + MAX_HEADER_BYTES for a, b in ranges.reads), chunk.number
        assert sum(b - a for a, b in ranges.reads) <= end - start + MAX_HEADER_BYTES
        assert start > 0 or chunk.number == 0


def test_cloud_storage_ranges_are_the_file_s_bytes(gcs_settings: Settings, clip: Path) -> None:
    uri = upload(gcs_settings, clip, "clip.mp4")
    data = clip.read_bytes()
    with open_byte_ranges(uri, gcs_settings) as ranges:
        assert ranges.size == len(data)
        for window in read_windows([(0, 100), (5000, 20_000), (len(data) - 10, 10)], max_bytes=1 << 20):
            assert ranges.read(window.start, window.end) == data[window.start:window.end]
        assert demux(ranges) == dataclasses.replace(demux(LocalRanges(clip)), source=uri)
