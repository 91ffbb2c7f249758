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
boundary), any part headers, and junk before the first boundary.

Everything it holds is bounded, so a misbehaving server cannot make it grow without bound: junk
before a boundary is dropped as it is searched; a boundary line, and a part's header block, longer
than ``max_header_bytes`` (:data:`MAX_HEADER_BYTES`, 16 KiB), and a part (one JPEG, with or without
``Content-Length``) larger than ``max_part_bytes`` (:data:`MAX_PART_BYTES`, 32 MB) raise
:class:`MjpegProtocolError` — for a stream, a lost connection. What it buffers is at most the larger
of those limits plus the chunk being fed.

Every search resumes where the previous one stopped (less the length of what it looks for), so a
part trickling in one byte at a time costs time linear in its size, not quadratic: each byte is
examined at most ``len(b"--" + boundary)`` times (:attr:`MultipartJpegParser.scanned_bytes` counts).
"""

from __future__ import annotations

import re
from typing import Literal

MAX_PART_BYTES = 32_000_000
"""The largest part (one JPEG) accepted, with or without ``Content-Length``."""
MAX_HEADER_BYTES = 16_384
"""The longest boundary line, and the longest header block of one part (lines and their ends)."""
_MAX_LENGTH_DIGITS = 20

_BOUNDARY = re.compile(r'boundary\s*=\s*"?([^";,]+)"?', re.IGNORECASE)
_CONTENT_LENGTH = re.compile(rb"content-length\s*:\s*(\d+)\s*", re.IGNORECASE)


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
    """Incremental multipart parser: ``feed`` bytes, get the bodies of the parts completed so far.

    >>> MultipartJpegParser("frame").feed(b"--frame\\r\\nContent-Length: 3\\r\\n\\r\\nabc\\r\\n")
    [b'abc']
    """

    def __init__(self, boundary: str, max_part_bytes: int = MAX_PART_BYTES,
                 max_header_bytes: int = MAX_HEADER_BYTES) -> None:
        self._marker = b"--" + boundary.lstrip("-").encode("latin-1")
        self._max_part = max_part_bytes
        self._max_header = max_header_bytes
        self._buffer = bytearray()
        self._state: Literal["boundary", "boundary-line", "headers", "body"] = "boundary"
        self._searched = 0
        """How many bytes at the start of the buffer the current search has examined without a match."""
        self._header_bytes = 0
        self._length: int | None = None
        self.parts = 0
        self.scanned_bytes = 0
        """Bytes examined by every search so far (a byte examined twice counts twice): the parser's work."""

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
        if self._state == "boundary":
            return self._find_boundary()
        if self._state == "boundary-line":
            return self._end_boundary_line()
        if self._state == "headers":
            return self._read_header_line()
        return self._read_body()

    def _search(self, target: bytes) -> int:
        """Index of ``target`` in the buffer, ``-1`` if absent; never re-examines what an earlier call did."""
        start = max(0, self._searched - len(target) + 1)
        at = self._buffer.find(target, start)
        self.scanned_bytes += (len(self._buffer) if at < 0 else at + len(target)) - start
        self._searched = len(self._buffer) if at < 0 else 0
        return at

    def _consume(self, count: int) -> bytes:
        """Remove and return the first ``count`` bytes; the next search starts afresh."""
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._searched = 0
        return taken

    def _find_boundary(self) -> bytes | None:
        at = self._search(self._marker)
        if at < 0:  # junk: drop it, but keep what may be the start of a marker cut by the chunking
            keep = len(self._marker) - 1
            del self._buffer[: max(0, len(self._buffer) - keep)]
            self._searched = len(self._buffer)
            return None
        self._consume(at + len(self._marker))
        self._state = "boundary-line"
        return b""

    def _end_boundary_line(self) -> bytes | None:
        end = self._search(b"\n")
        if (len(self._buffer) if end < 0 else end) + len(self._marker) > self._max_header:
            raise MjpegProtocolError(f"boundary line longer than {self._max_header} bytes")
        if end < 0:
            return None
        self._consume(end + 1)
        self._state, self._header_bytes, self._length = "headers", 0, None
        return b""

    def _read_header_line(self) -> bytes | None:
        end = self._search(b"\n")
        if self._header_bytes + (len(self._buffer) if end < 0 else end + 1) > self._max_header:
            raise MjpegProtocolError(f"part headers longer than {self._max_header} bytes")
        if end < 0:
            return None
        self._header_bytes += end + 1
        line = self._consume(end + 1).rstrip(b"\r\n")
        if line:
            match = _CONTENT_LENGTH.fullmatch(line)
            if match:
                self._length = self._checked_length(match[1])
        else:
            self._state = "body"
        return b""

    def _checked_length(self, digits: bytes) -> int:
        if len(digits) > _MAX_LENGTH_DIGITS or int(digits) > self._max_part:
            shown = digits[:_MAX_LENGTH_DIGITS].decode() + ("..." if len(digits) > _MAX_LENGTH_DIGITS else "")
            raise MjpegProtocolError(f"part of {shown} bytes is larger than {self._max_part}")
        return int(digits)

    def _read_body(self) -> bytes | None:
        if self._length is not None:
            if len(self._buffer) < self._length:
                return None
            body = self._consume(self._length)
        else:
            at = self._search(self._marker)
            if (len(self._buffer) - len(self._marker) if at < 0 else at) > self._max_part + 2:  # + the line end
                raise MjpegProtocolError(f"part larger than {self._max_part} bytes without a boundary")
            if at < 0:
                return None
            body = self._consume(at).rstrip(b"\r\n")
        self._state = "boundary"
        self.parts += 1
        return body
