"""What may be resumed, from where and with which options (producer.resume), without I/O but the fingerprints."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from framecontract.manifest import Manifest
from producer.errors import InputError
from producer.resume import (
    CannotResumeError,
    ResumePlan,
    check_resumable,
    check_resume_source,
    check_same_source,
    fingerprint_of,
    resume_options,
    resumed_manifest,
    skip_published,
)
from producer.sources import SourceInfo

TOPIC = "projects/p/topics/frames"
T0 = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)
FINGERPRINT = {"method": "size + sha256 of the first and last MiB", "size": 1000, "sha256": "ab" * 32}


def killed_job(**changes: object) -> Manifest:
    """A file job whose producer stopped beating at T0 with frames 0..411 confirmed."""
    manifest = Manifest(
        job_id="vtest", source="media/vtest.avi", source_kind="file", clock="stream", source_fps=10.0,
        sample_fps=5.0, width=768, height=576, heartbeat_interval_s=5.0, source_fingerprint=FINGERPRINT,
        options={"policy": "every-frame", "topic": TOPIC, "jpeg_quality": 80, "max_side": 640, "max_frames": None,
                 "duration_s": 90.0, "resize": None},
    ).beat(412, 0, 82_200_000, at="2026-11-28T12:00:00.000000Z")
    return dataclasses.replace(manifest, **changes)


def refusal(manifest: Manifest, now: dt.datetime = T0 + dt.timedelta(minutes=5), **kwargs: object) -> str:
    with pytest.raises(CannotResumeError) as refused:
        check_resumable(manifest, kwargs.pop("topic", TOPIC), now, **kwargs)  # type: ignore[arg-type]
    assert refused.value.exit_code == 2
    return str(refused.value)


def test_a_stale_stopped_or_failed_file_job_can_be_resumed() -> None:
    later = T0 + dt.timedelta(seconds=30)
    check_resumable(killed_job(), TOPIC, later)
    check_resumable(killed_job(), TOPIC, T0 + dt.timedelta(seconds=2), stale_after_s=1)
    check_resumable(killed_job().finish("stopped", frames_published=430), TOPIC, T0)
    check_resumable(killed_job(source_kind="images").finish("failed", error="x"), TOPIC, T0)


def test_refusals_say_why_and_what_to_do() -> None:
    assert refusal(killed_job().finish("complete", frames_published=795)) == (
        "job 'vtest' is already complete (795 frames published) — nothing to resume")
    assert refusal(killed_job(source_kind="stream", source="rtsp://***@cam/stream1", clock="wallclock")) == (
        "job 'vtest' was published from a live source (stream 'rtsp://***@cam/stream1'), which cannot be replayed "
        "— start a new job for it (python -m producer SOURCE)")
    assert refusal(killed_job(options={"policy": "latest-frame", "topic": TOPIC})) == (
        "job 'vtest' was published with --latest-frame, whose drops depended on timing, so its frame numbers cannot "
        "be given again — start a new job for it (python -m producer SOURCE)")
    assert refusal(killed_job(source_fingerprint=None)) == (
        "job 'vtest' has no source fingerprint (it was started by an older producer), so its source cannot be "
        "checked — start a new job for it (python -m producer SOURCE)")
    assert refusal(killed_job(), topic="projects/p/topics/other") == (
        "job 'vtest' was published to 'projects/p/topics/frames', not to 'projects/p/topics/other' — pass "
        "--topic/--project so that it goes where its workers listen")
    assert refusal(killed_job(), now=T0 + dt.timedelta(seconds=12)) == (
        "job 'vtest' is still running: its producer's last heartbeat was 12 s ago — stop that producer first, or "
        "resume once it has been silent for 30 s (--stale-after S to change)")
    assert refusal(killed_job(), now=T0 + dt.timedelta(seconds=12), stale_after_s=60) == (
        "job 'vtest' is still running: its producer's last heartbeat was 12 s ago — stop that producer first, or "
        "resume once it has been silent for 60 s (--stale-after S to change)")


@pytest.mark.parametrize(("source", "line"), [
    ("rtsp://admin:s3cret@cam.example/stream1",
     "--resume continues a video file or a folder of images; 'rtsp://***@cam.example/stream1' is a live source, "
     "which cannot be replayed — start a new job for it (python -m producer SOURCE)"),
    ("http://cam.example/video.mjpg",
     "--resume continues a video file or a folder of images; 'http://cam.example/video.mjpg' is a live source, "
     "which cannot be replayed — start a new job for it (python -m producer SOURCE)"),
    ("0", "--resume continues a video file or a folder of images; '0' is a webcam, which cannot be replayed — "
          "start a new job for it (python -m producer SOURCE)"),
])
def test_live_sources_cannot_be_resumed(source: str, line: str) -> None:
    with pytest.raises(InputError) as refused:
        check_resume_source(source)
    assert str(refused.value) == line


def test_files_and_folders_are_fine_to_resume(tmp_path: Path) -> None:
    check_resume_source(str(tmp_path / "clip.avi"))
    check_resume_source("file:///videos/clip.avi")
    (tmp_path / "0").mkdir()
    check_resume_source(str(tmp_path / "0"))


def test_the_job_keeps_its_own_options() -> None:
    options = resume_options(killed_job(), heartbeat_interval=2.0)
    assert (options.job_id, options.fps, options.jpeg_quality, options.max_side, options.duration) == (
        "vtest", 5.0, 80, 640, 90.0)
    assert (options.policy, options.max_frames, options.resize, options.heartbeat_interval) == (
        "every-frame", None, None, 2.0)
    folder = killed_job(source_kind="images", options={"resize": "320x240", "image_fps": 12.0, "max_frames": 50})
    options = resume_options(folder, heartbeat_interval=5.0)
    assert (options.resize, options.image_fps, options.max_frames, options.jpeg_quality) == ((320, 240), 12.0, 50, 90)


def info(name: str, kind: str = "file") -> SourceInfo:
    return SourceInfo(name=name, kind=kind, clock="stream", fps=10.0, width=768, height=576, frame_count=795)


def test_the_source_must_be_the_same_file_or_folder() -> None:
    job = killed_job()
    check_same_source(job, dict(FINGERPRINT), info("elsewhere/renamed.avi"))
    with pytest.raises(CannotResumeError) as refused:
        check_same_source(job, FINGERPRINT | {"size": 5}, info("other.avi"))
    assert str(refused.value) == ("'other.avi' is not the source job 'vtest' was published from ('media/vtest.avi'): "
                                  "5 bytes, the job's source had 1000 — give the same file or folder (moved or "
                                  "renamed is fine)")
    with pytest.raises(CannotResumeError) as refused:
        check_same_source(job, FINGERPRINT | {"sha256": "cd" * 32}, info("edited.avi"))
    assert str(refused.value) == ("'edited.avi' is not the source job 'vtest' was published from "
                                  "('media/vtest.avi'): same size, different content — give the same file or folder "
                                  "(moved or renamed is fine)")
    with pytest.raises(CannotResumeError) as refused:
        check_same_source(job, None, info("frames", kind="images"))
    assert str(refused.value) == ("'frames' is a folder of images, but job 'vtest' was published from a video file "
                                  "('media/vtest.avi') — give the same source")


def test_fingerprints_hash_the_ends_of_a_file_and_the_names_and_sizes_in_a_folder(tmp_path: Path) -> None:
    video = tmp_path / "big.bin"
    video.write_bytes(bytes(3 << 20))
    first = fingerprint_of(info(str(video)))
    assert first is not None and first["size"] == 3 << 20
    with video.open("r+b") as file:  # the middle is not hashed: cheap, and a size or end change is caught
        file.seek(1 << 20)
        file.write(b"x")
    assert fingerprint_of(info(str(video))) == first
    with video.open("r+b") as file:
        file.seek((3 << 20) - 1)
        file.write(b"x")
    assert fingerprint_of(info(str(video))) != first
    folder = tmp_path / "shots"
    folder.mkdir()
    (folder / "a1.png").write_bytes(b"12")
    (folder / "notes.txt").write_text("not an image")
    shots = fingerprint_of(info(str(folder), kind="images"))
    assert shots is not None and (shots["files"], shots["size"]) == (1, 2)
    (folder / "a2.png").write_bytes(b"3")
    assert fingerprint_of(info(str(folder), kind="images")) != shots
    assert fingerprint_of(info(str(tmp_path / "gone.avi"))) is None
    assert fingerprint_of(info("rtsp://cam/stream1", kind="stream")) is None


def test_skip_published_leaves_out_the_confirmed_frames_and_checks_the_last_one() -> None:
    stamps = [0, 200_000, 400_000, 600_000]
    assert list(skip_published(stamps, ResumePlan(0, None, None), lambda ts: ts)) == stamps
    assert list(skip_published(stamps, ResumePlan(4, 0, 600_000), lambda ts: ts)) == []
    with pytest.raises(InputError) as wrong:
        list(skip_published(stamps, ResumePlan(2, 0, 300_000), lambda ts: ts, job_id="vtest"))
    assert str(wrong.value) == (
        "job 'vtest': frame 1 decodes at 200000 µs, but the job recorded 300000 µs — the file does not decode as it "
        "did when the job started (another OpenCV/FFmpeg?); start a new job for it (python -m producer SOURCE)")
    with pytest.raises(InputError) as short:
        list(skip_published(stamps, ResumePlan(6, 0, 1_000_000), lambda ts: ts, job_id="vtest"))
    assert str(short.value).startswith(
        "job 'vtest': the source ended after 4 frames, before frame 6 where the job continues — ")


def test_the_resumed_manifest_runs_again_from_the_confirmed_frames() -> None:
    stopped = killed_job().finish("stopped", frames_published=430, error=None)
    plan = ResumePlan.of(stopped)
    assert plan == ResumePlan(412, 0, 82_200_000)
    again = resumed_manifest(stopped, plan, 5.0, at="2026-11-28T13:00:00.000000Z")
    assert (again.state, again.ended_at, again.error, again.heartbeat_at) == (
        "running", None, None, "2026-11-28T13:00:00.000000Z")
    assert (again.frames_published, again.frames_confirmed, again.last_frame_index) == (412, 412, 411)
    assert again.started_at == stopped.started_at
    assert again.resumes == ({"at": "2026-11-28T13:00:00.000000Z", "from_frame_index": 412,
                              "previous_state": "stopped", "previous_heartbeat_at": stopped.heartbeat_at},)
    assert ResumePlan.of(killed_job(frames_confirmed=0)) == ResumePlan(0, None, None)
