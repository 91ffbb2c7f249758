"""Resuming a job whose producer died or stopped: what may be resumed, from where, with which options.

Usage::

    check_resume_source("rtsp://cam/stream1")             # InputError: a live source cannot be replayed
    check_resumable(manifest, settings.topic_path, now)   # CannotResumeError: complete, live, still running, ...
    options = resume_options(manifest, heartbeat_interval=5.0)        # the job's own options
    check_same_source(manifest, fingerprint_of(source.info), source.info)   # CannotResumeError: another file
    plan = ResumePlan.of(manifest)                        # start at manifest.frames_confirmed
    kept = skip_published(kept_frames, plan, timestamp_of=lambda f: f.timestamp_us)   # left out, not encoded

How a job resumes (``python -m producer SOURCE --resume JOB``): the file (or folder) is decoded again
from its start, with the options the job started with, through the same timestamps and ``--fps``
sampling, so every frame gets the ``frame_index`` and ``timestamp_us`` the first run gave it or would
have given it. The frames before ``frames_confirmed`` — every one of them confirmed by Pub/Sub — are
left out before resizing and JPEG encoding; the rest are published as usual. Decoding from the start
is exact whatever the container (seeking is not: OpenCV seeks to keyframes, and the timestamp
fallback depends on every frame before); it costs the decoding of the skipped frames and nothing else
(vtest.avi, 768x576: 0.4 ms of CPU per skipped frame against 1.3 ms to decode and encode one, and no
publishing or inference). Frames published but not yet counted
by a heartbeat are published again: their results have deterministic names, so a worker finds them
there and acknowledges the duplicate.

Everything here is pure except :func:`fingerprint_of`, which reads at most 2 MiB of the file (or
lists the folder).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from framecontract.manifest import Manifest, utc_now_iso
from producer.errors import InputError
from producer.opening import classify_source
from producer.options import DEFAULT_IMAGE_FPS, DEFAULT_JPEG_QUALITY, JobOptions, ProducerOptions
from producer.redact import redact_url
from producer.sources import SourceInfo

T = TypeVar("T")

FINGERPRINT_BYTES = 1 << 20
"""A file's fingerprint hashes its first and its last MiB (and records its size)."""

RESUMABLE_KINDS = ("file", "images")
START_NEW_JOB = "start a new job for it (python -m producer SOURCE)"


class CannotResumeError(InputError):
    """This job cannot be resumed from this source (exit status 2)."""


def check_resume_source(source: str) -> None:
    """:class:`InputError` if ``source`` is a live source (URL or webcam): those cannot be replayed (pure)."""
    spec = classify_source(source)
    if spec.kind == "webcam" and not Path(source).exists():
        raise InputError(f"--resume continues a video file or a folder of images; {source!r} is a webcam, which "
                         "cannot be replayed", START_NEW_JOB)
    if spec.kind in ("http", "stream"):
        raise InputError(f"--resume continues a video file or a folder of images; {redact_url(source)!r} is a live "
                         "source, which cannot be replayed", START_NEW_JOB)


def check_resumable(manifest: Manifest, topic_path: str, now: dt.datetime, stale_after_s: float | None = None) -> None:
    """:class:`CannotResumeError` unless ``manifest`` is a job this producer may continue now (pure).

    Refused: a ``complete`` job; a live job (its frames cannot be produced again); a ``--latest-frame``
    job (its drops depended on timing); a job started before fingerprints were recorded; a job published
    to another topic; a ``running`` job whose producer is not stale yet (two producers on one job).
    """
    job = manifest.job_id
    if manifest.state == "complete":
        raise CannotResumeError(f"job {job!r} is already complete ({manifest.frames_published} frames published)",
                                "nothing to resume")
    if manifest.source_kind not in RESUMABLE_KINDS:
        raise CannotResumeError(f"job {job!r} was published from a live source ({manifest.source_kind} "
                                f"{manifest.source!r}), which cannot be replayed", START_NEW_JOB)
    if manifest.options.get("policy") == "latest-frame":
        raise CannotResumeError(f"job {job!r} was published with --latest-frame, whose drops depended on timing, "
                                "so its frame numbers cannot be given again", START_NEW_JOB)
    if not manifest.source_fingerprint:
        raise CannotResumeError(f"job {job!r} has no source fingerprint (it was started by an older producer), so "
                                "its source cannot be checked", START_NEW_JOB)
    published_to = manifest.options.get("topic")
    if published_to and published_to != topic_path:
        raise CannotResumeError(f"job {job!r} was published to {published_to!r}, not to {topic_path!r}",
                                "pass --topic/--project so that it goes where its workers listen")
    if manifest.state == "running" and manifest.producer_silence_s(now, stale_after_s) is None:
        age = manifest.heartbeat_age_s(now)
        threshold = manifest.stale_after_s(stale_after_s)
        heard = (f"its producer's last heartbeat was {age:.0f} s ago" if age is not None
                 else "its heartbeat is unreadable")
        raise CannotResumeError(f"job {job!r} is still running: {heard}",
                                "stop that producer first, or resume once it has been silent for "
                                f"{threshold:g} s (--stale-after S to change)")


def resume_options(manifest: Manifest, heartbeat_interval: float) -> JobOptions:
    """The options the job started with (from its manifest), checked; ``heartbeat_interval`` is this run's."""
    given = manifest.options
    return ProducerOptions(
        job_id=manifest.job_id, fps=manifest.sample_fps, max_frames=given.get("max_frames"),
        jpeg_quality=given.get("jpeg_quality") or DEFAULT_JPEG_QUALITY, policy="every-frame",
        max_side=given.get("max_side"), resize=given.get("resize"), duration=given.get("duration_s"),
        image_fps=given.get("image_fps") or DEFAULT_IMAGE_FPS, heartbeat_interval=heartbeat_interval,
    ).validated()


def fingerprint_of(info: SourceInfo) -> dict[str, Any] | None:
    """What identifies a file or a folder of images (``None`` for live sources or a path that is gone).

    File: its size and the SHA-256 of its first and last MiB. Folder: its image files' names and sizes.
    """
    path = Path(info.name)
    try:
        if info.kind == "file":
            return _file_fingerprint(path)
        if info.kind == "images":
            return _folder_fingerprint(path)
    except OSError:
        return None
    return None


def _file_fingerprint(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        size = file.seek(0, 2)
        file.seek(0)
        digest.update(file.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            file.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            digest.update(file.read(FINGERPRINT_BYTES))
    return {"method": "size + sha256 of the first and last MiB", "size": size, "sha256": digest.hexdigest()}


def _folder_fingerprint(path: Path) -> dict[str, Any]:
    from producer.images import list_images

    files = [(p.name, p.stat().st_size) for p in list_images(path)]
    digest = hashlib.sha256("".join(f"{name}\t{size}\n" for name, size in files).encode())
    return {"method": "image names and sizes", "files": len(files), "size": sum(s for _, s in files),
            "sha256": digest.hexdigest()}


def check_same_source(manifest: Manifest, fingerprint: dict[str, Any] | None, info: SourceInfo) -> None:
    """:class:`CannotResumeError` unless ``info`` (with ``fingerprint``) is the source the job was published from."""
    job, was, given = manifest.job_id, manifest.source, info.name
    what = {"file": "a video file", "images": "a folder of images"}
    if info.kind != manifest.source_kind:
        raise CannotResumeError(f"{given!r} is {what.get(info.kind, info.kind)}, but job {job!r} was published from "
                                f"{what.get(manifest.source_kind, manifest.source_kind)} ({was!r})",
                                "give the same source")
    recorded = manifest.source_fingerprint or {}
    if fingerprint is None or any(fingerprint.get(key) != recorded.get(key)
                                  for key in ("size", "files", "sha256", "crc32c")):
        size, expected = (fingerprint or {}).get("size"), recorded.get("size")
        differs = ("same size, different content" if size == expected
                   else f"{size} bytes, the job's source had {expected}")
        raise CannotResumeError(f"{given!r} is not the source job {job!r} was published from ({was!r}): {differs}",
                                "give the same file or folder (moved or renamed is fine)")


@dataclass(frozen=True)
class ResumePlan:
    """Where a resumed job continues: ``start`` = the first frame not confirmed, and what is known up to it."""

    start: int
    first_timestamp_us: int | None
    """``timestamp_us`` of frame 0 (``None`` when nothing was confirmed)."""
    confirmed_timestamp_us: int | None
    """``timestamp_us`` of frame ``start - 1``: checked against the replay."""

    @classmethod
    def of(cls, manifest: Manifest) -> ResumePlan:
        """The plan for continuing ``manifest``'s job (frames ``0..frames_confirmed-1`` are published)."""
        start = manifest.frames_confirmed
        return cls(start, manifest.first_timestamp_us if start else None,
                   manifest.confirmed_timestamp_us if start else None)


def resumed_manifest(manifest: Manifest, plan: ResumePlan, heartbeat_interval_s: float,
                     at: str | None = None) -> Manifest:
    """``manifest`` running again from ``plan.start``, the resume recorded in ``resumes`` (pure but for the time)."""
    at = at or utc_now_iso()
    entry = {"at": at, "from_frame_index": plan.start, "previous_state": manifest.state,
             "previous_heartbeat_at": manifest.heartbeat_at}
    running = dataclasses.replace(manifest, state="running", ended_at=None, error=None,
                                  heartbeat_interval_s=heartbeat_interval_s, resumes=(*manifest.resumes, entry))
    return running.beat(plan.start, plan.first_timestamp_us, plan.confirmed_timestamp_us, at=at)


def skip_published(frames: Iterable[T], plan: ResumePlan, timestamp_of: Callable[[T], int],
                   job_id: str = "") -> Iterator[T]:
    """``frames`` (kept by sampling and bounds, in order) without the first ``plan.start`` of them.

    The last frame left out must have the timestamp the job recorded for frame ``start - 1``; if not,
    or if the source ends before ``start``, the source does not decode as it did (:class:`InputError`).

    >>> list(skip_published([0, 100, 200, 300], ResumePlan(2, 0, 100), timestamp_of=lambda ts: ts))
    [200, 300]
    """
    remedy = "the file does not decode as it did when the job started (another OpenCV/FFmpeg?); " + START_NEW_JOB
    frames = iter(frames)
    last: T | None = None
    for skipped in range(plan.start):
        last = next(frames, None)
        if last is None:
            raise InputError(f"job {job_id!r}: the source ended after {skipped} frames, before frame {plan.start} "
                             "where the job continues", remedy)
    if last is not None and timestamp_of(last) != plan.confirmed_timestamp_us:
        raise InputError(f"job {job_id!r}: frame {plan.start - 1} decodes at {timestamp_of(last)} µs, but the job "
                         f"recorded {plan.confirmed_timestamp_us} µs", remedy)
    yield from frames
