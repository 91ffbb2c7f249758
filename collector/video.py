"""Writing the reassembled video: an H.264 ``yuv420p`` MP4 via PyAV's bundled ``libx264``.

Usage::

    with VideoEncoder.open("out.mp4", fps=10.0, width=768, height=576) as video:
        video.write_bgr(frame)             # numpy uint8 (H, W, 3), BGR as OpenCV decodes it
    video.codec_name, video.frames_written

H.264 in ``yuv420p`` with the index at the front of the file (``movflags=+faststart``) plays in
browsers. If the PyAV build has no H.264 encoder, the encoder falls back to MPEG-4 Part 2
(``mpeg4``) and says so with :data:`MPEG4_FALLBACK_WARNING` — such files play in desktop players
but not in browsers. Odd sizes are cropped to even ones (4:2:0 needs them).
"""

from __future__ import annotations

import sys
import warnings
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

H264_ENCODERS = ("libx264", "h264")
FALLBACK_ENCODER = "mpeg4"
DEFAULT_PRESET = "veryfast"
DEFAULT_CRF = 23
MPEG4_FALLBACK_WARNING = (
    "warning: H.264 encoder (libx264) is not available in this PyAV build; writing MPEG-4 Part 2 "
    "(mpeg4) instead — the file plays in desktop players but not in web browsers"
)


class MPEG4FallbackWarning(UserWarning):
    """Issued when no H.264 encoder exists and the video is written as MPEG-4 Part 2."""


def encoder_available(name: str) -> bool:
    """True if FFmpeg inside PyAV has an encoder called ``name``."""
    try:
        av.codec.Codec(name, "w")
    except (ValueError, av.codec.codec.UnknownCodecError):
        return False
    return True


def choose_encoder(preferred: tuple[str, ...] = H264_ENCODERS) -> str:
    """The first available H.264 encoder, else ``mpeg4`` with :class:`MPEG4FallbackWarning`."""
    for name in preferred:
        if encoder_available(name):
            return av.codec.Codec(name, "w").name
    warnings.warn(MPEG4_FALLBACK_WARNING, MPEG4FallbackWarning, stacklevel=2)
    print(MPEG4_FALLBACK_WARNING, file=sys.stderr)
    return FALLBACK_ENCODER


def frame_rate(fps: float) -> Fraction:
    """``fps`` as an exact-enough fraction (29.97 → 2997/100, 25.0 → 25)."""
    if not fps or fps <= 0:
        raise ValueError(f"frame rate must be positive, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


class VideoEncoder:
    """A streaming MP4 writer: one frame in, nothing kept (the encoder buffers a few frames itself)."""

    def __init__(self, container: Any, stream: Any, width: int, height: int) -> None:
        self._container = container
        self._stream = stream
        self.width = width
        self.height = height
        self.codec_name: str = stream.codec_context.name
        self.frames_written = 0

    @classmethod
    def open(
        cls,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        codec: str | None = None,
        preset: str = DEFAULT_PRESET,
        crf: int = DEFAULT_CRF,
    ) -> VideoEncoder:
        """Open ``path`` (always MP4, whatever the suffix) for frames of ``width`` x ``height``."""
        width, height = width - width % 2, height - height % 2
        if width < 2 or height < 2:
            raise ValueError(f"frame size {width}x{height} is too small to encode")
        codec_name = codec or choose_encoder()
        container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
        try:
            stream = container.add_stream(codec_name, rate=frame_rate(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec_name == "libx264":
                stream.options = {"preset": preset, "crf": str(crf)}
            elif codec_name == FALLBACK_ENCODER:
                stream.options = {"qscale": "3"}
            stream.codec_context.thread_type = "AUTO"
        except Exception:
            container.close()
            raise
        return cls(container, stream, width, height)

    def write_bgr(self, image: np.ndarray) -> None:
        """Encode one BGR frame; frames of another size are cropped or padded to the video's."""
        if image.shape[0] != self.height or image.shape[1] != self.width:
            image = fit_to(image, self.width, self.height)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = self.frames_written
        self._mux(frame)
        self.frames_written += 1

    def _mux(self, frame: Any) -> None:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file (idempotent)."""
        if self._container is None:
            return
        try:
            self._mux(None)
        finally:
            self._container.close()
            self._container = None

    def abort(self) -> None:
        """Close the file without flushing (after a failure; the caller deletes it)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def fit_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Crop or pad (black) ``image`` to ``width`` x ``height``, keeping the top-left corner."""
    out = np.zeros((height, width, 3), dtype=np.uint8)
    h, w = min(height, image.shape[0]), min(width, image.shape[1])
    out[:h, :w] = image[:h, :w]
    return out
