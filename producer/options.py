"""What the producer was asked to do, and the checks on it (pure).

Usage::

    options = ProducerOptions(fps=5, max_frames=100, policy="latest-frame", max_side=640).validated()
    job_id = resolve_job_id(options.job_id, "videos/vtest.avi")
    output_size(768, 576, options.max_side, options.resize)     # (640, 480)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from framecontract.jobid import InvalidJobIdError, generate_job_id, validate_job_id
from producer.errors import UsageError

DEFAULT_JPEG_QUALITY = 90
"""JPEG quality used when none is given: visually lossless for detection, ~95 KB per 768x576 frame."""

DEFAULT_IMAGE_FPS = 25.0
"""Frame rate given to a folder of images (their timestamps are ``index / image_fps``)."""

DEFAULT_RECONNECT_TIMEOUT_S = 60.0
"""How long a live source may stay unreachable before the job gives up (``failed``)."""

Policy = Literal["every-frame", "latest-frame"]
POLICIES: tuple[str, ...] = ("every-frame", "latest-frame")

_RESIZE = re.compile(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*")


@dataclass(frozen=True)
class ProducerOptions:
    """Options of one producer job; ``None`` means "not limited" / "generate"."""

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

    def validated(self) -> ProducerOptions:
        """Return ``self`` if every value is usable, else raise :class:`UsageError` naming the option."""
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
        if self.resize is not None:
            parse_resize(self.resize)
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
        if self.job_id is not None:
            resolve_job_id(self.job_id, "")
        return self

    def policy_for(self, live: bool) -> str:
        """The frame policy in force: the one asked for, else latest-frame for live sources."""
        return self.policy or ("latest-frame" if live else "every-frame")


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


def output_size(width: int, height: int, max_side: int | None, resize: str | None) -> tuple[int, int]:
    """The size frames of ``width`` x ``height`` are published at (pure).

    ``resize`` wins; ``max_side`` scales down keeping the aspect ratio (each side at least 1 pixel,
    never up); neither keeps the size.

    >>> output_size(768, 576, 384, None)
    (384, 288)
    """
    if resize is not None:
        return parse_resize(resize)
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resolve_job_id(job_id: str | None, source_name: str) -> str:
    """The given job id if valid, else one generated from the source name; :class:`UsageError` if invalid."""
    if job_id is None:
        return generate_job_id(source_name)
    try:
        return validate_job_id(job_id)
    except InvalidJobIdError as exc:
        raise UsageError(str(exc), "use lowercase letters, digits and '-' (at most 63, starting with a "
                         "letter or digit), or omit --job-id to generate one") from None
