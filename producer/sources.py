"""Frame sources: decode a video file into frames with presentation timestamps.

Usage::

    with open_video_file("videos/vtest.avi") as source:
        print(source.info.fps, source.info.width, source.info.height)
        for frame in source.frames():
            frame.timestamp_us, frame.image          # BGR uint8 array; numbered only when published

The first frame is decoded when the file is opened, so a file that is missing, not a video,
corrupt or empty fails *before* anything is published, with a message that says what to do.
Timestamps come from OpenCV's ``CAP_PROP_POS_MSEC`` through :class:`TimestampTracker`
(monotonic, negatives clamped, index/fps fallback with a logged warning).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from producer.errors import InputError
from producer.timestamps import TimestampTracker, usable_fps


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """One decoded frame: its presentation time and the BGR image.

    It carries no number: ``frame_index`` is given only to frames that are published
    (:func:`producer.numbering.number_published`). A source's own read position stays inside it.
    """

    timestamp_us: int
    image: np.ndarray


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What is known about a source before decoding it all."""

    name: str
    """The source as recorded in the manifest and logs (credentials stripped for URLs)."""
    kind: str
    """``file`` (later also ``images``, ``stream``, ``webcam``)."""
    clock: str
    """``stream``: timestamps from the stream start; ``wallclock``: µs since the epoch."""
    fps: float | None
    width: int
    height: int
    frame_count: int | None
    """The container's frame count: an estimate, ``None`` if unknown."""


@runtime_checkable
class FrameSource(Protocol):
    """Anything that yields :class:`DecodedFrame` in decode order."""

    info: SourceInfo

    def frames(self) -> Iterator[DecodedFrame]: ...

    def close(self) -> None: ...


class VideoFileSource:
    """A video file decoded with OpenCV's FFmpeg backend. Use :func:`open_video_file`."""

    def __init__(self, capture: cv2.VideoCapture, first_image: np.ndarray, first_ms: float, info: SourceInfo) -> None:
        self._capture = capture
        self._first: tuple[np.ndarray, float] | None = (first_image, first_ms)
        self.info = info
        self.timestamps = TimestampTracker(info.fps, info.name)

    @property
    def first_image(self) -> np.ndarray | None:
        """The first frame, decoded when the file was opened (``None`` once :meth:`frames` has started)."""
        return self._first[0] if self._first is not None else None

    def frames(self) -> Iterator[DecodedFrame]:
        """Yield every frame once, in decode order; the iterator can be taken only once."""
        if self._first is None:
            raise RuntimeError("frames() can be iterated only once")
        image, reported_ms = self._first
        self._first = None
        position = 0  # in decode order: what the timestamp fallback extrapolates from
        while image is not None:
            yield DecodedFrame(self.timestamps.timestamp_us(position, reported_ms), image)
            position += 1
            ok, image = self._capture.read()
            if not ok:
                image = None
            reported_ms = self._capture.get(cv2.CAP_PROP_POS_MSEC)

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoFileSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def quiet_decoder_logs() -> None:
    """Silence FFmpeg's and OpenCV's own stderr chatter (the producer reports problems itself).

    Call before the first file is opened: OpenCV reads ``OPENCV_FFMPEG_LOGLEVEL`` once.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


TEXT_INPUTS = (b"#EXTM3U", b"ffconcat", b"v=0")
"""Text files FFmpeg legitimately opens as video: HLS playlists, concat lists, SDP descriptions."""


def looks_like_text(path: Path, sniff_bytes: int = 4096) -> bool:
    """True if the file starts with printable UTF-8 text that is not a playlist or SDP.

    FFmpeg's ``tty`` demuxer "plays" any text file as a video of rendered characters, so a
    mistaken ``notes.txt`` would otherwise be published as frames. Video containers start with
    binary headers; the text formats FFmpeg really reads as video (:data:`TEXT_INPUTS`) pass.
    """
    try:
        with path.open("rb") as file:
            head = file.read(sniff_bytes)
    except OSError:
        return False
    if not head or head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(TEXT_INPUTS):
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a multi-byte character cut at the end
            return False
        text = head[: exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def open_video_file(path: str | os.PathLike[str]) -> VideoFileSource:
    """Open a video file and decode its first frame; :class:`InputError` with a remedy if that fails."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {str(path)!r}", "check the path to the video")
    if path.is_dir():
        raise InputError(f"{str(path)!r} is a directory, not a video file", "give the path of a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {str(path)!r}: permission denied", "check the file's permissions")
    if looks_like_text(path):
        raise InputError(f"{str(path)!r} is a text file, not a video",
                         "give the path of a video file, a folder of images, or a stream URL")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise InputError(
            f"{str(path)!r} is not a video OpenCV can open (not a video file, corrupt, or an unsupported format)",
            "check that the file plays in a video player, or re-encode it (e.g. to H.264 MP4)",
        )
    ok, first_image = capture.read()
    if not ok or first_image is None:
        capture.release()
        raise InputError(
            f"no frames could be decoded from {str(path)!r}",
            "the file may be truncated, corrupt or use an unsupported codec; re-encode it or try another file",
        )
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    height, width = first_image.shape[:2]
    info = SourceInfo(
        name=str(path), kind="file", clock="stream", fps=usable_fps(capture.get(cv2.CAP_PROP_FPS)),
        width=width, height=height, frame_count=count if count > 0 else None,
    )
    return VideoFileSource(capture, first_image, capture.get(cv2.CAP_PROP_POS_MSEC), info)
