"""What the producer was asked to do, and the checks on it (pure).

Usage::

    options = ProducerOptions(fps=5, max_frames=100).validated()
    job_id = resolve_job_id(options.job_id, "videos/vtest.avi")
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from framecontract.jobid import InvalidJobIdError, generate_job_id, validate_job_id
from producer.errors import UsageError

DEFAULT_JPEG_QUALITY = 90
"""JPEG quality used when none is given: visually lossless for detection, ~95 KB per 768x576 frame."""


@dataclass(frozen=True)
class ProducerOptions:
    """Options of one producer job; ``None`` means "not limited" / "generate"."""

    job_id: str | None = None
    fps: float | None = None
    """Target frames per second, sampled by timestamp; ``None`` publishes every decoded frame."""
    max_frames: int | None = None
    """Stop after publishing this many frames."""
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

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
        if self.job_id is not None:
            resolve_job_id(self.job_id, "")
        return self


def resolve_job_id(job_id: str | None, source_name: str) -> str:
    """The given job id if valid, else one generated from the source name; :class:`UsageError` if invalid."""
    if job_id is None:
        return generate_job_id(source_name)
    try:
        return validate_job_id(job_id)
    except InvalidJobIdError as exc:
        raise UsageError(str(exc), "use lowercase letters, digits and '-' (at most 63, starting with a "
                         "letter or digit), or omit --job-id to generate one") from None
