"""What the producer was asked to do, checked once (pure).

Usage::

    options = ProducerOptions(fps=5, max_frames=100, policy="latest-frame", max_side=640).validated()
    options.job_id_for("videos/vtest.avi")                      # the given id, else a generated one
    output_size(768, 576, options.max_side, options.resize)     # (640, 480)

:class:`ProducerOptions` holds the options as given (the command line's values, or a caller's);
:meth:`ProducerOptions.validated` checks every one of them, the job id included, exactly once, and
returns :class:`JobOptions`: typed values (``--resize`` parsed, the policy a :data:`Policy`) that
the job, the source opener and the manifest use as they are, without checking them again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, cast

from framecontract.jobid import InvalidJobIdError, generate_job_id, validate_job_id
from framecontract.manifest import DEFAULT_HEARTBEAT_INTERVAL_S
from producer.errors import UsageError

DEFAULT_JPEG_QUALITY = 90
"""JPEG quality used when none is given: visually lossless for detection, ~95 KB per 768x576 frame."""

DEFAULT_IMAGE_FPS = 25.0
"""Frame rate given to a folder of images (their timestamps are ``index / image_fps``)."""

DEFAULT_RECONNECT_TIMEOUT_S = 60.0
"""How long a live source may stay unreachable before the job gives up (``failed``)."""

DEFAULT_FRAME_TIMEOUT_S = 10.0
"""How long a live source may take to deliver one whole frame before its connection counts as lost."""

MIN_HEARTBEAT_INTERVAL_S = 1.0
"""Cloud Storage takes about one write per second to one object name: no faster heartbeat."""

Policy = Literal["every-frame", "latest-frame"]
POLICIES: tuple[str, ...] = ("every-frame", "latest-frame")

_RESIZE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")


@dataclass(frozen=True)
class ProducerOptions:
    """Options of one producer job as given, not yet checked; ``None`` means "not limited" / "generate"."""

    job_id: str | None = None
    fps: float | None = None
    """Target frames per second, sampled by timestamp; ``None`` publishes every decoded frame."""
    max_frames: int | None = None
    """Stop after publishing this many frames."""
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    policy: str | None = None
    """``every-frame`` (never drop; backpressure slows reading) or ``latest-frame`` (drop the oldest
    unpublished frames when publishing falls behind, counted); ``None``: every-frame for files and
    folders, latest-frame for live sources."""
    max_side: int | None = None
    """Scale frames down so that the longer side is at most this (never up)."""
    resize: str | None = None
    """``WIDTHxHEIGHT``: scale every frame to exactly this size."""
    duration: float | None = None
    """Stop after this many seconds of source time (files) or wall-clock time (live sources)."""
    image_fps: float = DEFAULT_IMAGE_FPS
    reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT_S
    """Give up on a live source that stays unreachable this long (0: never reconnect)."""
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT_S
    """Reconnect a live source that delivers no whole frame for this long (stalled, or trickling bytes)."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL_S
    """Rewrite the running manifest with the confirmed progress every this many seconds."""
    parallel: int | None = None
    """Processes that decode a video file in chunks (``--parallel``); ``None``: the caller's default (the
    command line's: one per core; :func:`~producer.job.run_job`'s: one)."""

    def validated(self) -> JobOptions:
        """The options checked and typed, else :class:`UsageError` naming the first unusable one."""
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise UsageError(f"--fps must be a number greater than 0, got {self.fps:g}",
                             "omit --fps to publish every frame")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageError(f"--max-frames must be at least 1, got {self.max_frames}",
                             "omit --max-frames to publish the whole video")
        if not 1 <= self.jpeg_quality <= 100:
            raise UsageError(f"--jpeg-quality must be between 1 and 100, got {self.jpeg_quality}",
                             f"omit it for the default ({DEFAULT_JPEG_QUALITY})")
        if self.policy is not None and self.policy not in POLICIES:
            raise UsageError(f"unknown frame policy {self.policy!r}", "use --every-frame or --latest-frame")
        if self.max_side is not None and self.max_side < 1:
            raise UsageError(f"--max-side must be at least 1, got {self.max_side}",
                             "omit it to keep the source's size")
        if self.max_side is not None and self.resize is not None:
            raise UsageError("--max-side and --resize cannot be used together", "give only one of them")
        resize = parse_resize(self.resize) if self.resize is not None else None
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise UsageError(f"--duration must be a number of seconds greater than 0, got {self.duration:g}",
                             "omit it to run until the source ends (or until SIGINT/SIGTERM for live sources)")
        if not (math.isfinite(self.image_fps) and self.image_fps > 0):
            raise UsageError(f"--image-fps must be a number greater than 0, got {self.image_fps:g}",
                             f"omit it for the default ({DEFAULT_IMAGE_FPS:g})")
        if math.isnan(self.reconnect_timeout) or self.reconnect_timeout < 0:
            raise UsageError(f"--reconnect-timeout must be 0 or more seconds, got {self.reconnect_timeout:g}",
                             f"omit it for the default ({DEFAULT_RECONNECT_TIMEOUT_S:g}), 0 never reconnects, "
                             "'inf' retries forever")
        if not (math.isfinite(self.frame_timeout) and self.frame_timeout > 0):
            raise UsageError(f"--frame-timeout must be a number of seconds greater than 0, got {self.frame_timeout:g}",
                             f"omit it for the default ({DEFAULT_FRAME_TIMEOUT_S:g})")
        if not (math.isfinite(self.heartbeat_interval) and self.heartbeat_interval >= MIN_HEARTBEAT_INTERVAL_S):
            raise UsageError(f"--heartbeat must be at least {MIN_HEARTBEAT_INTERVAL_S:g} second, got "
                             f"{self.heartbeat_interval:g}",
                             f"omit it for the default ({DEFAULT_HEARTBEAT_INTERVAL_S:g})")
        if self.parallel is not None and self.parallel < 1:
            raise UsageError(f"--parallel must be at least 1, got {self.parallel}",
                             "omit it for one process per core, or give 1 to publish with one process")
        if self.parallel is not None and self.parallel > 1 and self.policy == "latest-frame":
            raise UsageError(f"--latest-frame cannot be used with --parallel {self.parallel}: a file published in "
                             "chunks never drops a frame", "omit --latest-frame, or give --parallel 1")
        return JobOptions(
            job_id=check_job_id(self.job_id) if self.job_id is not None else None,
            fps=self.fps, max_frames=self.max_frames, jpeg_quality=self.jpeg_quality,
            policy=cast(Policy, self.policy), max_side=self.max_side, resize=resize, duration=self.duration,
            image_fps=self.image_fps, reconnect_timeout=self.reconnect_timeout,
            frame_timeout=self.frame_timeout,
            heartbeat_interval=self.heartbeat_interval,
            parallel=self.parallel,
        )


@dataclass(frozen=True)
class JobOptions:
    """The options of one job, checked: made by :meth:`ProducerOptions.validated` and passed down as they are."""

    job_id: str | None
    """A valid job id, or ``None``: one is generated from the source's name (:meth:`job_id_for`)."""
    fps: float | None
    max_frames: int | None
    jpeg_quality: int
    policy: Policy | None
    max_side: int | None
    resize: tuple[int, int] | None
    """``(width, height)`` every frame is scaled to; ``None``: keep the size (or ``max_side``)."""
    duration: float | None
    image_fps: float
    reconnect_timeout: float
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT_S
    """Seconds a live source may take to deliver one whole frame before it is reconnected."""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL_S
    """Seconds between heartbeats (rewrites of the running manifest)."""
    parallel: int | None = None
    """Processes that decode a video file in chunks; ``None``: the caller's default."""

    def policy_for(self, live: bool) -> Policy:
        """The frame policy in force: the one asked for, else latest-frame for live sources."""
        return self.policy or ("latest-frame" if live else "every-frame")

    def job_id_for(self, source_name: str) -> str:
        """The job's id: the one given (checked already), else one generated from ``source_name``."""
        return self.job_id if self.job_id is not None else generate_job_id(source_name)


def parse_resize(text: str) -> tuple[int, int]:
    """``"640x480"`` → ``(640, 480)``; :class:`UsageError` for anything else.

    >>> parse_resize("640x480")
    (640, 480)
    """
    match = _RESIZE.fullmatch(text)
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise UsageError(f"--resize must be WIDTHxHEIGHT in pixels, e.g. 640x480, got {text!r}",
                         "give two whole numbers greater than 0 joined by 'x', or use --max-side")
    return int(match[1]), int(match[2])


def format_size(size: tuple[int, int]) -> str:
    """``(640, 480)`` → ``"640x480"``, as ``--resize`` is written.

    >>> format_size((640, 480))
    '640x480'
    """
    return f"{size[0]}x{size[1]}"


def output_size(width: int, height: int, max_side: int | None, resize: tuple[int, int] | None) -> tuple[int, int]:
    """The size frames of ``width`` x ``height`` are published at (pure).

    ``resize`` wins; ``max_side`` scales down keeping the aspect ratio (each side at least 1 pixel,
    never up); neither keeps the size.

    >>> output_size(768, 576, 384, None)
    (384, 288)
    """
    if resize is not None:
        return resize
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a valid job id, else :class:`UsageError` with the reason and a remedy."""
    try:
        return validate_job_id(job_id)
    except InvalidJobIdError as exc:
        raise UsageError(str(exc), "use lowercase letters, digits and '-' (at most 63, starting with a "
                         "letter or digit), or omit --job-id to generate one") from None
