"""Producer jobs through the real Pub/Sub emulator and storage emulator (fixtures in tests/conftest.py)."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest

from framecontract.clients import make_storage_client
from framecontract.layout import manifest_name, parse_gs_uri, result_name
from framecontract.manifest import Manifest
from framecontract.message import FrameAttributes
from framecontract.settings import Settings
from producer.errors import JobExistsError, ResourceNotFoundError
from producer.job import run_job
from producer.sources import open_video_file
from producer.stopping import StopRequest
from tests.producer.conftest import SYNTHETIC_FPS, SYNTHETIC_FRAMES
from tests.producer.helpers import (
    SYNTHETIC_SIZE,
    ScriptedSource,
    brightness_of,
    decode_jpeg,
    job_options,
    pull_all,
    read_manifest,
    write_synthetic_video,
)


def frames_by_index(messages) -> dict[int, tuple[FrameAttributes, bytes]]:
    parsed = {}
    for message in messages:
        attrs = FrameAttributes.from_pubsub(message.attributes)
        assert attrs.frame_index not in parsed, f"frame {attrs.frame_index} published twice"
        parsed[attrs.frame_index] = (attrs, message.data)
    return parsed


def test_every_frame_of_a_clip_is_published_in_order_with_manifests(
    pubsub_settings: Settings, synthetic_video: Path
) -> None:
    seen_while_running: list[Manifest] = []

    def read_manifest_at_frame_3(read: int) -> None:
        if read == 3:
            seen_while_running.append(read_manifest(pubsub_settings, "clip-job"))

    source = ScriptedSource(open_video_file(synthetic_video), read_manifest_at_frame_3)
    report = run_job(source, job_options(job_id="clip-job"), pubsub_settings)

    assert (report.job_id, report.state, report.frames_published, report.frames_decoded) == (
        "clip-job", "complete", SYNTHETIC_FRAMES, SYNTHETIC_FRAMES)
    frames = frames_by_index(pull_all(pubsub_settings, expected=SYNTHETIC_FRAMES))
    assert sorted(frames) == list(range(SYNTHETIC_FRAMES))
    for index, (attrs, data) in frames.items():
        assert attrs.job_id == "clip-job" and attrs.payload_uri is None
        assert attrs.timestamp_us == round(index * 1e6 / SYNTHETIC_FPS)
        assert (attrs.width, attrs.height) == SYNTHETIC_SIZE
        image = decode_jpeg(data)
        assert (image.shape[1], image.shape[0]) == SYNTHETIC_SIZE
        assert abs(float(image[40:].mean()) - brightness_of(index)) < 5, f"frame {index} has another frame's image"

    running = seen_while_running[0]
    assert running.state == "running" and running.ended_at is None and running.frames_published == 0
    assert (running.source, running.source_kind, running.clock) == (str(synthetic_video), "file", "stream")
    assert (running.source_fps, running.sample_fps, running.width, running.height) == (12.0, None, 160, 120)
    assert running.options["sampling"] == "every-frame" and running.options["jpeg_quality"] == 90
    assert running.options["topic"] == pubsub_settings.topic_path

    final = read_manifest(pubsub_settings, "clip-job")
    assert final.state == "complete" and final.error is None and final.ended_at is not None
    assert final.started_at == running.started_at
    assert (final.frames_published, final.last_frame_index, final.frames_dropped) == (SYNTHETIC_FRAMES, 23, 0)
    assert (final.first_timestamp_us, final.last_timestamp_us) == (0, round(23 * 1e6 / SYNTHETIC_FPS))


def test_fps_sampling_and_contiguous_indices(pubsub_settings: Settings, synthetic_video: Path) -> None:
    report = run_job(synthetic_video, job_options(job_id="sampled", fps=4), pubsub_settings)
    frames = frames_by_index(pull_all(pubsub_settings, expected=8))
    assert report.frames_published == 8 and report.frames_decoded == SYNTHETIC_FRAMES
    assert sorted(frames) == list(range(8))
    assert [frames[i][0].timestamp_us for i in range(8)] == [i * 250_000 for i in range(8)]
    manifest = read_manifest(pubsub_settings, "sampled")
    assert (manifest.sample_fps, manifest.options["sampling"], manifest.frames_published) == (4, "by-timestamp", 8)


def test_max_frames_is_honoured_without_decoding_further(pubsub_settings: Settings, synthetic_video: Path) -> None:
    report = run_job(synthetic_video, job_options(job_id="first-five", max_frames=5), pubsub_settings)
    assert (report.frames_published, report.frames_decoded) == (5, 5)
    assert sorted(frames_by_index(pull_all(pubsub_settings, expected=5))) == [0, 1, 2, 3, 4]
    manifest = read_manifest(pubsub_settings, "first-five")
    assert (manifest.state, manifest.frames_published, manifest.last_frame_index) == ("complete", 5, 4)


def test_first_frames_of_vtest(pubsub_settings: Settings, vtest_path: Path) -> None:
    report = run_job(vtest_path, job_options(job_id="vtest-10", max_frames=10), pubsub_settings)
    frames = frames_by_index(pull_all(pubsub_settings, expected=10))
    assert report.frames_published == 10 and sorted(frames) == list(range(10))
    for index, (attrs, data) in frames.items():
        assert (attrs.width, attrs.height, attrs.timestamp_us) == (768, 576, index * 100_000)
        assert decode_jpeg(data).shape == (576, 768, 3)
    manifest = read_manifest(pubsub_settings, "vtest-10")
    assert (manifest.source_fps, manifest.width, manifest.height, manifest.last_timestamp_us) == (
        10.0, 768, 576, 900_000)


def test_large_frames_go_through_the_claim_check(pubsub_settings: Settings, synthetic_video: Path) -> None:
    run_job(synthetic_video, job_options(job_id="claimed", max_frames=4), pubsub_settings, inline_limit_bytes=100)
    frames = frames_by_index(pull_all(pubsub_settings, expected=4))
    bucket = make_storage_client(pubsub_settings).bucket(pubsub_settings.bucket)
    for index, (attrs, data) in frames.items():
        assert data == b""
        bucket_name, object_name = parse_gs_uri(attrs.payload_uri or "")
        assert bucket_name == pubsub_settings.bucket
        assert object_name == result_name("payloads", "claimed", index, attrs.timestamp_us)
        blob = bucket.blob(object_name)
        image = decode_jpeg(blob.download_as_bytes())
        assert (image.shape[1], image.shape[0]) == SYNTHETIC_SIZE
        blob.reload()
        assert blob.content_type == "image/jpeg"


def test_sigterm_stops_cleanly_and_publishes_every_frame_read(pubsub_settings: Settings, tmp_path: Path) -> None:
    video = write_synthetic_video(tmp_path / "long.avi", frames=300, fps=25)

    def terminate_at_frame_10(read: int) -> None:
        if read == 10:
            os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    source = ScriptedSource(open_video_file(video), terminate_at_frame_10)
    report = run_job(source, job_options(job_id="stopped-job"), pubsub_settings, handle_signals=True)

    assert signal.getsignal(signal.SIGTERM) is handler_before, "the job restores the signal handlers"
    assert (report.state, report.stop_reason, report.stop_signal) == ("stopped", "SIGTERM received", signal.SIGTERM)
    # frames decoded ahead of publishing when the signal came are published too: nothing read is lost
    assert report.frames_published == report.frames_decoded
    assert 11 <= report.frames_published < 40, "it stopped soon after the signal"
    published = report.frames_published
    assert sorted(frames_by_index(pull_all(pubsub_settings, expected=published))) == list(range(published))
    manifest = read_manifest(pubsub_settings, "stopped-job")
    assert (manifest.state, manifest.frames_published, manifest.last_frame_index) == (
        "stopped", published, published - 1)


def test_a_failure_mid_job_leaves_a_failed_manifest(pubsub_settings: Settings, synthetic_video: Path) -> None:
    def explode_at_frame_5(read: int) -> None:
        if read == 5:
            raise OSError("disk went away")

    source = ScriptedSource(open_video_file(synthetic_video), explode_at_frame_5)
    with pytest.raises(OSError, match="disk went away"):
        run_job(source, job_options(job_id="broken-job"), pubsub_settings)
    manifest = read_manifest(pubsub_settings, "broken-job")
    assert (manifest.state, manifest.error) == ("failed", "disk went away")
    assert manifest.frames_published == 5 and manifest.ended_at is not None
    assert sorted(frames_by_index(pull_all(pubsub_settings, expected=5))) == list(range(5))


def test_missing_topic_fails_before_anything_is_written(pubsub_settings: Settings, synthetic_video: Path) -> None:
    settings = dataclasses.replace(pubsub_settings, topic="no-such-topic")
    with pytest.raises(ResourceNotFoundError) as caught:
        run_job(synthetic_video, job_options(job_id="no-topic"), settings)
    assert str(caught.value) == (
        f"Pub/Sub topic 'projects/{settings.project}/topics/no-such-topic' not found — start the local stack with "
        "'python -m deploy.local up', or create the topic ('gcloud pubsub topics create no-such-topic'), "
        "or pass --topic/--project"
    )
    assert caught.value.exit_code == 1
    bucket = make_storage_client(settings).bucket(settings.bucket)
    assert not bucket.blob(manifest_name("no-topic")).exists()


def test_missing_bucket_fails_before_anything_is_published(pubsub_settings: Settings, synthetic_video: Path) -> None:
    settings = dataclasses.replace(pubsub_settings, bucket="no-such-bucket-here")
    with pytest.raises(ResourceNotFoundError) as caught:
        run_job(synthetic_video, job_options(job_id="no-bucket"), settings)
    assert str(caught.value) == (
        "GCS bucket 'no-such-bucket-here' not found — start the local stack with 'python -m deploy.local up', "
        "or create the bucket ('gcloud storage buckets create gs://no-such-bucket-here'), or pass --bucket"
    )
    assert pull_all(pubsub_settings) == []


def test_a_job_id_cannot_be_reused(pubsub_settings: Settings, synthetic_video: Path) -> None:
    run_job(synthetic_video, job_options(job_id="once", max_frames=2), pubsub_settings)
    assert len(pull_all(pubsub_settings, expected=2)) == 2
    with pytest.raises(JobExistsError) as caught:
        run_job(synthetic_video, job_options(job_id="once", max_frames=2), pubsub_settings)
    assert str(caught.value) == (
        f"job 'once' already exists (gs://{pubsub_settings.bucket}/jobs/once/manifest.json) — "
        "choose another --job-id, or omit it to generate a new one"
    )
    assert caught.value.exit_code == 2
    assert pull_all(pubsub_settings) == []
    assert read_manifest(pubsub_settings, "once").frames_published == 2


def test_a_stop_before_the_first_frame_gives_a_stopped_job_with_no_frames(
    pubsub_settings: Settings, synthetic_video: Path
) -> None:
    stop = StopRequest()
    stop.request("asked to stop")
    report = run_job(synthetic_video, job_options(job_id="never-started"), pubsub_settings, stop=stop)
    assert (report.state, report.frames_published, report.frames_decoded) == ("stopped", 0, 0)
    manifest = read_manifest(pubsub_settings, "never-started")
    assert (manifest.state, manifest.frames_published, manifest.first_timestamp_us) == ("stopped", 0, None)
    assert pull_all(pubsub_settings) == []
