"""MJPEG over HTTP (``multipart/x-mixed-replace``): split the byte stream into JPEGs (pure).

Usage::

    boundary = boundary_from_content_type(response.headers["Content-Type"])
    parser = MultipartJpegParser(boundary)
    for chunk in chunks:                  # bytes exactly as they come off the socket
        for jpeg in parser.feed(chunk):
            ...

IP cameras are loose with the format, so the parser accepts: a boundary with or without the
leading ``--`` in the header (``boundary=--frame`` with lines ``--frame``), ``\\r\\n`` or bare
``\\n`` line ends, parts with or without ``Content-Length`` (without it, the part ends at the next
boundary), any part headers, and junk before the first boundary. A part larger than
``max_part_bytes`` or a header block larger than 16 KiB raises :class:`MjpegProtocolError`, so a
misbehaving server cannot make the buffer grow without bound.
"""

from __future__ import annotations

import re

MAX_PART_BYTES = 32_000_000
MAX_HEADER_BYTES = 16_384

_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";,]+)"?', re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"^content-length\s*:\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)


class MjpegProtocolError(ValueError):
    """The server's bytes are not a multipart stream this parser can follow."""


def is_multipart(content_type: str | None) -> bool:
    """True for ``multipart/x-mixed-replace`` (and other ``multipart/*``) content types."""
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower().startswith("multipart/")


def boundary_from_content_type(content_type: str) -> str:
    """The boundary parameter of a multipart content type, without leading dashes.

    >>> boundary_from_content_type('multipart/x-mixed-replace; boundary="--frame"')
    'frame'
    """
    match = _BOUNDARY.search(content_type or "")
    boundary = match[1].strip().lstrip("-") if match else ""
    if not boundary:
        raise MjpegProtocolError(f"no boundary in content type {content_type!r}")
    return boundary


class MultipartJpegParser:
    """Incremental multipart parser: ``feed`` bytes, get the bodies of the parts completed so far."""

    def __init__(self, boundary: str, max_part_bytes: int = MAX_PART_BYTES) -> None:
        self._marker = b"--" + boundary.lstrip("-").encode("latin-1")
        self._max_part = max_part_bytes
        self._buffer = bytearray()
        self._state = "boundary"
        self._length: int | None = None
        self.parts = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the bodies of every part completed by it, in order."""
        self._buffer += data
        bodies: list[bytes] = []
        while True:
            body = self._step()
            if body is None:
                return bodies
            if body:
                bodies.append(body)

    def _step(self) -> bytes | None:
        """Advance by one state; the body of a completed part (``b""`` to continue), ``None`` to wait."""
        buffer = self._buffer
        if self._state == "boundary":
            at = buffer.find(self._marker)
            if at < 0:
                del buffer[: max(0, len(buffer) - len(self._marker))]  # keep a possible partial marker
                return None
            line_end = buffer.find(b"\n", at)
            if line_end < 0:
                return None
            del buffer[: line_end + 1]
            self._state = "headers"
            return b""
        if self._state == "headers":
            end, skip = _header_end(buffer)
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise MjpegProtocolError(f"part headers longer than {MAX_HEADER_BYTES} bytes")
                return None
            match = _CONTENT_LENGTH.search(bytes(buffer[:end]))
            self._length = int(match[1]) if match else None
            if self._length is not None and self._length > self._max_part:
                raise MjpegProtocolError(f"part of {self._length} bytes is larger than {self._max_part}")
            del buffer[: end + skip]
            self._state = "body"
            return b""
        # body
        if self._length is not None:
            if len(buffer) < self._length:
                return None
            body = bytes(buffer[: self._length])
            del buffer[: self._length]
        else:
            at = buffer.find(self._marker)
            if at < 0:
                if len(buffer) > self._max_part:
                    raise MjpegProtocolError(f"part larger than {self._max_part} bytes without a boundary")
                return None
            body = bytes(buffer[:at]).rstrip(b"\r\n")
            del buffer[:at]
        self._state = "boundary"
        self.parts += 1
        return body or b""


def _header_end(buffer: bytearray) -> tuple[int, int]:
    """Index of the blank line ending the headers and its length; ``(-1, 0)`` if not there yet.

    A part without headers (the blank line right after the boundary line) has its end at 0.
    """
    if buffer.startswith(b"\r\n"):
        return 0, 2
    if buffer.startswith(b"\n"):
        return 0, 1
    crlf, lf = buffer.find(b"\r\n\r\n"), buffer.find(b"\n\n")
    candidates = [(i, n) for i, n in ((crlf, 4), (lf, 2)) if i >= 0]
    if not candidates:
        return -1, 0
    at, skip = min(candidates)
    return at, skip
