"""Heartbeats, a producer killed mid-job, and ``--resume``, through the real Pub/Sub and storage emulators."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from collector.cli import EXIT_PRODUCER_STALE
from collector.cli import main as collector_main
from framecontract.clients import make_storage_client
from framecontract.layout import manifest_name
from framecontract.manifest import Manifest, utc_now_iso
from framecontract.message import FrameAttributes
from framecontract.settings import Settings
from producer.cli import main as producer_main
from producer.job import resume_job, run_job
from producer.sampling import TimestampSampler, sampled
from producer.sources import open_video_file
from producer.stopping import StopRequest
from tests.producer.helpers import (
    WAIT_S,
    Pulled,
    ScriptedSource,
    brightness_of,
    decode_jpeg,
    job_options,
    pull_all,
    read_manifest,
    write_synthetic_video,
)

REPO = Path(__file__).resolve().parents[2]


def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment that points both command lines at the test's emulators, bucket and topic."""
    return {
        "PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host or "",
        "STORAGE_EMULATOR_HOST": settings.storage_emulator_host or "",
        "GOOGLE_CLOUD_PROJECT": settings.project,
        "FRAMES_TOPIC": settings.topic,
        "FRAMES_BUCKET": settings.bucket,
        "FRAME_FANOUT_SETTINGS": str(tmp_path / "no-settings.json"),
    }


@pytest.fixture
def cli_settings(pubsub_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``pubsub_settings``, with the environment set so that ``producer.cli.main``/``collector.cli.main`` use them."""
    for name, value in cli_env(pubsub_settings, tmp_path).items():
        monkeypatch.setenv(name, value)
    return pubsub_settings


def by_job(messages: list[Pulled]) -> dict[str, list[tuple[FrameAttributes, bytes]]]:
    grouped: dict[str, list[tuple[FrameAttributes, bytes]]] = {}
    for message in messages:
        attrs = FrameAttributes.from_pubsub(message.attributes)
        grouped.setdefault(attrs.job_id, []).append((attrs, message.data))
    return grouped


def wait_for(condition, what: str, deadline_s: float = WAIT_S):  # noqa: ANN001, ANN201
    """Poll ``condition()`` until it returns something true; fail naming ``what`` after ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def stop_at_read(read: int, stop: StopRequest):  # noqa: ANN201
    """A ``before_frame`` that asks the job to stop when frame ``read`` (0-based, in decode order) is read."""
    return lambda n: stop.request("test stop") if n == read else None


def test_the_running_manifest_carries_a_heartbeat_with_the_confirmed_progress(
    pubsub_settings: Settings, synthetic_video: Path
) -> None:
    seen: list[Manifest] = []

    def hold_frame_6_until_a_heartbeat_counts_frames_0_to_5(read: int) -> None:
        if read == 6:  # frames 0..5 are read: publishing them goes on while this decode thread waits
            seen.append(wait_for(lambda: (m := read_manifest(pubsub_settings, "beating")).frames_confirmed == 6 and m,
                                 "a heartbeat with frames 0..5 confirmed"))

    source = ScriptedSource(open_video_file(synthetic_video), hold_frame_6_until_a_heartbeat_counts_frames_0_to_5)
    report = run_job(source, job_options(job_id="beating", heartbeat_interval=1.0), pubsub_settings)

    beat = seen[0]
    assert (beat.state, beat.heartbeat_interval_s, beat.frames_published, beat.last_frame_index) == (
        "running", 1.0, 6, 5)
    assert (beat.first_timestamp_us, beat.confirmed_timestamp_us, beat.last_timestamp_us) == (0, 416_667, 416_667)
    assert beat.heartbeat_at is not None and beat.heartbeat_at > beat.started_at
    assert beat.source_fingerprint == {"method": "size + sha256 of the first and last MiB",
                                       "size": synthetic_video.stat().st_size,
                                       "sha256": beat.source_fingerprint["sha256"]}
    final = read_manifest(pubsub_settings, "beating")
    assert (report.state, final.state, final.frames_published, final.frames_confirmed) == (
        "complete", "complete", 24, 24)
    assert final.confirmed_timestamp_us == final.last_timestamp_us == round(23 * 1e6 / 12)
    assert final.heartbeat_at == final.ended_at  # the last write is the final one, never a late heartbeat


def test_a_stopped_file_job_resumes_with_every_frame_once_under_its_own_index(
    pubsub_settings: Settings, synthetic_video: Path
) -> None:
    stop = StopRequest()
    first = run_job(ScriptedSource(open_video_file(synthetic_video), stop_at_read(11, stop)),
                    job_options(job_id="stopped-clip", fps=6), pubsub_settings, stop=stop)
    assert first.state == "stopped" and 0 < first.frames_published < 12

    report = resume_job(synthetic_video, "stopped-clip", pubsub_settings)

    kept = list(sampled(range(24), TimestampSampler(6), lambda i: round(i * 1e6 / 12)))  # the frames --fps 6 keeps
    assert (report.state, report.resumed_from, report.frames_published) == (
        "complete", first.frames_published, len(kept) - first.frames_published)
    assert report.summary().startswith(f"job stopped-clip complete: resumed at frame {first.frames_published} and "
                                       f"published {len(kept) - first.frames_published} frames, {len(kept)} in all "
                                       "(24 decoded) in ")
    frames = by_job(pull_all(pubsub_settings, expected=len(kept)))["stopped-clip"]
    assert sorted(a.frame_index for a, _ in frames) == list(range(len(kept))), "every frame exactly once"
    for attrs, data in frames:
        decoded = kept[attrs.frame_index]
        assert attrs.timestamp_us == round(decoded * 1e6 / 12)
        assert abs(float(decode_jpeg(data)[40:].mean()) - brightness_of(decoded)) < 5, "another frame's image"
    final = read_manifest(pubsub_settings, "stopped-clip")
    assert (final.state, final.frames_published, final.frames_confirmed, final.last_frame_index) == (
        "complete", len(kept), len(kept), len(kept) - 1)
    assert [(r["from_frame_index"], r["previous_state"]) for r in final.resumes] == [
        (first.frames_published, "stopped")]


def test_a_stopped_image_folder_resumes_with_the_same_timestamps(pubsub_settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for i in range(12):
        cv2.imwrite(str(folder / f"shot{i}.png"), np.full((48, 64, 3), brightness_of(i), np.uint8))
    (folder / "shot4.png").write_bytes(b"not a png")  # skipped, and leaves its slot in time empty
    stop = StopRequest()
    from producer.images import open_image_folder

    first = run_job(ScriptedSource(open_image_folder(folder, 10.0), stop_at_read(6, stop)),
                    job_options(job_id="stopped-shots", image_fps=10.0), pubsub_settings, stop=stop)
    assert first.state == "stopped"

    resume_job(folder, "stopped-shots", pubsub_settings)

    decodable = [i for i in range(12) if i != 4]
    frames = by_job(pull_all(pubsub_settings, expected=11))["stopped-shots"]
    assert sorted((a.frame_index, a.timestamp_us) for a, _ in frames) == [
        (index, position * 100_000) for index, position in enumerate(decodable)]
    final = read_manifest(pubsub_settings, "stopped-shots")
    assert (final.state, final.frames_published, final.images_skipped) == ("complete", 11, 1)


def test_a_producer_killed_mid_job_is_stale_and_resume_completes_it(
    cli_settings: Settings, vtest_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_settings
    reference = run_job(vtest_path, job_options(job_id="reference", fps=5), settings)  # uninterrupted
    total = reference.frames_published

    env = dict(os.environ) | cli_env(settings, tmp_path)
    killed = subprocess.Popen(
        [sys.executable, "-m", "tests.producer.slow_producer", "0.05", str(vtest_path), "--job-id", "killed",
         "--fps", "5", "--heartbeat", "1", "--no-progress", "--parallel", "1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running_with_progress() -> Manifest | None:
            assert killed.poll() is None, f"the producer ended before it was killed: {killed.communicate()}"
            blob = make_storage_client(settings).bucket(settings.bucket).blob(manifest_name("killed"))
            manifest = Manifest.from_json(blob.download_as_bytes()) if blob.exists() else None
            return manifest if manifest is not None and manifest.frames_confirmed >= 20 else None

        wait_for(running_with_progress, "a heartbeat with 20 frames confirmed")
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate()
    assert killed.returncode == -signal.SIGKILL

    left = read_manifest(settings, "killed")
    confirmed = left.frames_confirmed
    assert left.state == "running" and 20 <= confirmed < total and left.heartbeat_interval_s == 1.0

    # the collector calls it what it is: stale, with how long; `wait` ends with its own exit code
    def stale_status() -> dict | None:
        assert collector_main(["status", "--job", "killed", "--json", "--stale-after", "1"]) == 0
        status = json.loads(capsys.readouterr().out)
        return status if status["stale"] else None

    status = wait_for(stale_status, "the collector to call the producer stale")
    assert (status["state"], status["producer"], status["heartbeat_at"], status["frames_confirmed"]) == (
        "running", "stale", left.heartbeat_at, confirmed)
    assert status["stale_after_s"] == 1.0 and status["heartbeat_age_s"] >= 1.0 and status["done"] is False
    assert collector_main(["status", "--job", "killed", "--stale-after", "1"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert re.fullmatch(rf"producer   stale: no heartbeat for \d+ s \(last at {re.escape(left.heartbeat_at)}\); "
                        rf"{confirmed} frames confirmed by Pub/Sub", text[2]), text
    assert text[3] == f"published  unknown (producer stale; at least {confirmed})"
    assert collector_main(["wait", "--job", "killed", "--stale-after", "1", "--poll", "0.1"]) == EXIT_PRODUCER_STALE
    assert re.fullmatch(rf"job killed: 0 of {confirmed}\+ processed, 0 errors \(state running\); producer stale: no "
                        rf"heartbeat for \d+ s \(last at {re.escape(left.heartbeat_at)}\) — resume a file or "
                        r"image-folder job with 'python -m producer SOURCE --resume killed'",
                        capsys.readouterr().err.strip())

    resumed = subprocess.run([sys.executable, "-m", "producer", str(vtest_path), "--resume", "killed",
                              "--stale-after", "1", "--no-progress"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == "killed"
    assert resumed.stderr.splitlines()[-1].startswith(
        f"job killed complete: resumed at frame {confirmed} and published {total - confirmed} frames, {total} in all "
        "(795 decoded) in ")

    pulled = by_job(pull_all(settings, expected=2 * total))
    expected = {attrs.frame_index: (attrs.timestamp_us, data) for attrs, data in pulled["reference"]}
    assert sorted(expected) == list(range(total))
    counts: dict[int, int] = {}
    for attrs, data in pulled["killed"]:
        counts[attrs.frame_index] = counts.get(attrs.frame_index, 0) + 1
        assert (attrs.timestamp_us, data) == expected[attrs.frame_index], f"frame {attrs.frame_index} differs"
    assert sorted(counts) == list(range(total)), "every frame at least once"
    assert all(counts[i] == 1 for i in range(confirmed)), "a frame confirmed before the kill was published again"
    final = read_manifest(settings, "killed")
    assert (final.state, final.frames_published, final.frames_confirmed, final.error) == (
        "complete", total, total, None)
    assert final.started_at == left.started_at
    assert [(r["from_frame_index"], r["previous_state"], r["previous_heartbeat_at"]) for r in final.resumes] == [
        (confirmed, "running", left.heartbeat_at)]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = producer_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.splitlines()


def stopped_clip(settings: Settings, video: Path, job_id: str) -> Manifest:
    stop = StopRequest()
    run_job(ScriptedSource(open_video_file(video), stop_at_read(5, stop)), job_options(job_id=job_id),
            settings, stop=stop)
    return read_manifest(settings, job_id)


def test_resume_refuses_what_it_cannot_continue(
    cli_settings: Settings, synthetic_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli_settings
    bucket = settings.bucket
    assert run_cli(capsys, str(synthetic_video), "--resume", "nojob") == (2, [
        f"error: job 'nojob' not found: no manifest at gs://{bucket}/jobs/nojob/manifest.json — check the job id, "
        "and --bucket/--project"])

    run_job(synthetic_video, job_options(job_id="done-job", max_frames=3), settings)
    assert run_cli(capsys, str(synthetic_video), "--resume", "done-job") == (2, [
        "error: job 'done-job' is already complete (3 frames published) — nothing to resume"])

    stopped_clip(settings, synthetic_video, "half-job")
    other = write_synthetic_video(tmp_path / "other.avi", 30, 12.0)
    assert run_cli(capsys, str(other), "--resume", "half-job") == (2, [
        f"error: '{other}' is not the source job 'half-job' was published from ('{synthetic_video}'): "
        f"{other.stat().st_size} bytes, the job's source had {synthetic_video.stat().st_size} — give the same file "
        "or folder (moved or renamed is fine)"])

    assert run_cli(capsys, "rtsp://admin:s3cret@cam.example/stream1", "--resume", "half-job") == (2, [
        "error: --resume continues a video file or a folder of images; 'rtsp://***@cam.example/stream1' is a live "
        "source, which cannot be replayed — start a new job for it (python -m producer SOURCE)"])
    assert run_cli(capsys, str(synthetic_video), "--resume", "half-job", "--fps", "5") == (2, [
        "error: --fps cannot be used with --resume: a resumed job keeps the options it started with — omit --fps"])
    assert run_cli(capsys, str(synthetic_video), "--resume", "half-job", "--every-frame") == (2, [
        "error: --every-frame/--latest-frame cannot be used with --resume: a resumed job keeps the options it "
        "started with — omit --every-frame/--latest-frame"])
    assert run_cli(capsys, str(synthetic_video), "--stale-after", "5") == (2, [
        "error: --stale-after goes with --resume — omit it, or add --resume JOB"])

    blob = make_storage_client(settings).bucket(bucket).blob(manifest_name("half-job"))
    half = Manifest.from_json(blob.download_as_bytes())
    alive = dataclasses.replace(half, state="running", ended_at=None, heartbeat_at=utc_now_iso())
    blob.upload_from_string(alive.to_json(), content_type="application/json")
    code, lines = run_cli(capsys, str(synthetic_video), "--resume", "half-job")
    assert code == 2 and len(lines) == 1
    assert re.fullmatch(r"error: job 'half-job' is still running: its producer's last heartbeat was \d+ s ago — stop "
                        r"that producer first, or resume once it has been silent for 30 s \(--stale-after S to "
                        r"change\)", lines[0]), lines
    assert Manifest.from_json(blob.download_as_bytes()) == alive, "a refused resume writes nothing"

    code, lines = run_cli(capsys, str(synthetic_video), "--resume", "half-job", "--stale-after", "0", "--no-progress")
    assert code == 0 and lines[-1].startswith("job half-job complete: resumed at frame ")
    assert read_manifest(settings, "half-job").frames_published == 24
