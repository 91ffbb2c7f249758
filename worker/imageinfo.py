"""An image's format and size from its header bytes, before anything is decoded (pure).

Usage::

    info = read_image_header(data)       # ImageHeader(format='jpeg', width=768, height=576)
    info.pixels                          # 442368

Decoding a hostile image costs what its header claims (a 2.5 MB PNG can declare 30000x30000 and
take gigabytes and tens of seconds to decode), so the worker reads the header first and refuses
what is too large or not an accepted format. Formats: JPEG (baseline, progressive, lossless),
PNG, WebP (lossy, lossless, extended) and BMP. :class:`UnreadableHeaderError` says why a header
cannot be read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

ImageFormat = Literal["jpeg", "png", "webp", "bmp"]
IMAGE_FORMATS: tuple[ImageFormat, ...] = ("jpeg", "png", "webp", "bmp")
MEDIA_TYPES: dict[str, ImageFormat] = {
    "image/jpeg": "jpeg", "image/png": "png", "image/webp": "webp", "image/bmp": "bmp",
}

_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_HEADER_SCAN_LIMIT = 4 * 1024 * 1024
"""The frame header comes before the image data; no real JPEG puts 4 MB of metadata before it."""


class UnreadableHeaderError(ValueError):
    """Bytes whose header does not give an image's format and size."""


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """Format and size as the header declares them."""

    format: ImageFormat
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_image_header(data: bytes) -> ImageHeader:
    """Format and size of ``data``; :class:`UnreadableHeaderError` if it is not one of :data:`IMAGE_FORMATS`.

    >>> read_image_header(bytes.fromhex("89504e470d0a1a0a0000000d494844520000000200000001")).width
    2
    """
    if data[:2] == b"\xff\xd8":
        width, height = _jpeg_size(data)
        return _checked("jpeg", width, height)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise UnreadableHeaderError("PNG has no IHDR chunk")
        width, height = struct.unpack(">II", data[16:24])
        return _checked("png", width, height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _checked("webp", *_webp_size(data))
    if data[:2] == b"BM":
        if len(data) < 26:
            raise UnreadableHeaderError("BMP header is truncated")
        (header_size,) = struct.unpack("<I", data[14:18])
        if header_size == 12:
            width, height = struct.unpack("<HH", data[18:22])
        elif header_size >= 40:
            width, height = struct.unpack("<ii", data[18:26])
        else:
            raise UnreadableHeaderError(f"BMP header of {header_size} bytes is not a known kind")
        return _checked("bmp", width, abs(height))
    if not data:
        raise UnreadableHeaderError("no bytes")
    raise UnreadableHeaderError("unknown signature")


def _checked(fmt: ImageFormat, width: int, height: int) -> ImageHeader:
    if width <= 0 or height <= 0:
        raise UnreadableHeaderError(f"{fmt.upper()} header declares an empty image ({width}x{height})")
    return ImageHeader(fmt, width, height)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the marker segments to the first SOFn (start of frame) and read its size."""
    position, end = 2, min(len(data), _JPEG_HEADER_SCAN_LIMIT)
    while position + 4 <= end:
        if data[position] != 0xFF:
            raise UnreadableHeaderError(f"JPEG marker expected at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if length < 2:
            raise UnreadableHeaderError(f"JPEG segment at byte {position} has length {length}")
        if marker in _SOF_MARKERS:
            if position + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            if height == 0:
                raise UnreadableHeaderError("JPEG declares its height later (DNL); not supported")
            return width, height
        position += 2 + length
    raise UnreadableHeaderError("JPEG has no frame header (truncated or not a JPEG)")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise UnreadableHeaderError("WebP header is truncated or of an unknown kind")
