"""JPEG encoding of decoded frames.

Usage::

    jpeg = encode_jpeg(image, quality=90)
    jpeg.data, jpeg.width, jpeg.height
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class EncodeError(RuntimeError):
    """OpenCV could not encode a frame."""


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A JPEG and the size of the image in it."""

    data: bytes
    width: int
    height: int


def encode_jpeg(image: np.ndarray, quality: int) -> EncodedFrame:
    """Encode a BGR (or grayscale) ``uint8`` image as a baseline JPEG of the given quality (1..100)."""
    if image.ndim not in (2, 3) or image.size == 0:
        raise EncodeError(f"cannot encode an image of shape {image.shape}")
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise EncodeError(f"OpenCV failed to JPEG-encode an image of shape {image.shape}")
    height, width = image.shape[:2]
    return EncodedFrame(buffer.tobytes(), width, height)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to ``size`` = (width, height); the same object if it already has that size.

    Area interpolation when shrinking (no aliasing of fine detail), linear when enlarging.
    """
    height, width = image.shape[:2]
    if (width, height) == size:
        return image
    shrinking = size[0] * size[1] < width * height
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
