"""A folder of images as a frame source: sorted by name, timestamps at a fixed rate.

Usage::

    with open_image_folder("shots/", fps=25) as source:
        for frame in source.frames():          # frame i has timestamp round(i * 1e6 / fps)
            ...
        source.skipped                         # names of files that could not be decoded

Files are taken in *natural* name order (``frame2.png`` before ``frame10.png``; plain name order
for zero-padded names) and kept if their suffix is an image type OpenCV reads. The timestamp of the
i-th file in that order is ``i / fps`` (``--image-fps``), so a file that cannot be decoded leaves
a gap in time instead of shifting the others; it is skipped with a warning and counted. A folder
with no image file, or none that decodes, is refused before anything is published.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from producer.errors import InputError
from producer.sources import DecodedFrame, SourceInfo

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
                            ".ppm", ".pgm", ".pbm", ".pnm", ".jp2", ".sr", ".ras"})


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that compares runs of digits as numbers: ``img2`` < ``img10`` (pure)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in natural name order (hidden files excluded)."""
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()]
    return sorted(files, key=lambda p: (natural_key(p.name), p.name))


def read_image(path: Path) -> np.ndarray | None:
    """The image as BGR ``uint8``, ``None`` if it cannot be read or decoded."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


class ImageFolderSource:
    """Images of a folder as frames. Use :func:`open_image_folder`."""

    def __init__(self, files: list[Path], first_position: int, first_image: np.ndarray, info: SourceInfo) -> None:
        self._files = files
        self._first: tuple[int, np.ndarray] | None = (first_position, first_image)
        self.info = info
        self.skipped: list[str] = [p.name for p in files[:first_position]]

    def timestamp_us(self, position: int) -> int:
        return round(position * 1_000_000 / (self.info.fps or 1.0))

    def frames(self) -> Iterator[DecodedFrame]:
        """Every decodable image once, in order; the iterator can be taken only once."""
        if self._first is None:
            raise RuntimeError("frames() can be iterated only once")
        first_position, image = self._first
        self._first = None
        yield DecodedFrame(self.timestamp_us(first_position), image)
        for position in range(first_position + 1, len(self._files)):
            image = read_image(self._files[position])
            if image is None:
                self.skipped.append(self._files[position].name)
                log.warning("%s: skipped %s: not a decodable image", self.info.name, self._files[position].name)
                continue
            yield DecodedFrame(self.timestamp_us(position), image)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> ImageFolderSource:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_image_folder(folder: str | os.PathLike[str], fps: float) -> ImageFolderSource:
    """Open a folder of images and decode the first one that decodes; :class:`InputError` if there is none."""
    folder = Path(folder)
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputError(f"cannot read the folder {str(folder)!r}: permission denied", "check its permissions")
    files = list_images(folder)
    if not files:
        raise InputError(
            f"no images in the folder {str(folder)!r} (looked for .jpg, .png, .bmp, .tiff, .webp and the "
            "other image types OpenCV reads)",
            "give a folder of images or the path of a video file",
        )
    image, position = None, 0
    for position, path in enumerate(files):  # noqa: B007 — the position of the first decodable image is kept
        image = read_image(path)
        if image is not None:
            break
    if image is None:
        raise InputError(f"none of the {len(files)} images in {str(folder)!r} could be decoded",
                         "check that the files are images (not truncated or mis-named)")
    if position:
        log.warning("%s: skipped %d undecodable image(s) before %s", folder, position, files[position].name)
    height, width = image.shape[:2]
    info = SourceInfo(name=str(folder), kind="images", clock="stream", fps=fps, width=width, height=height,
                      frame_count=len(files))
    return ImageFolderSource(files, position, image, info)
