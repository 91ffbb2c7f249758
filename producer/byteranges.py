"""Reading a video by byte range: a local file, or an object in Cloud Storage (HTTP ``Range`` requests).

Usage::

    with open_byte_ranges("videos/long.mp4") as ranges:                   # a local file
        ranges.size, ranges.read(4096, 8192)                               # bytes [4096, 8192)
    with open_byte_ranges("gs://bucket/long.mp4", settings) as ranges:     # an object: one generation
        head = ranges.read(0, 1 << 20)                                     # one ranged GET
        av.open(ranges.stream())                                           # buffered, seekable file object

A chunk of a video (``producer.chunks``) is read as a few windows of its byte range, never the whole
file. A Cloud Storage object is pinned to the generation it had when it was opened, so every range
of one job comes from the same bytes even if the object is overwritten meanwhile (a replaced object
is an error, not a silent mix). Reads are retried on transient errors (``DEFAULT_RETRY``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from framecontract.layout import parse_gs_uri
from framecontract.settings import Settings
from producer.errors import InputError

STREAM_BUFFER_BYTES = 8 << 20
"""The buffer of :meth:`ByteRanges.stream`: one ranged GET per 8 MiB when PyAV reads a whole object."""
MAX_WINDOW_BYTES = 16 << 20
"""A chunk's packets are read in windows of at most this many bytes (bounded memory per chunk)."""
MAX_GAP_BYTES = 1 << 20
"""Bytes between two packets (audio, other streams) read rather than starting a new window."""


class ByteRanges(Protocol):
    """Random access to the bytes of one video: ``read(start, end)`` returns bytes ``[start, end)``."""

    name: str
    size: int

    def read(self, start: int, end: int) -> bytes: ...

    def close(self) -> None: ...


def is_gcs_uri(source: str) -> bool:
    """True for ``gs://bucket/object`` (pure).

    >>> is_gcs_uri("gs://b/v.mp4"), is_gcs_uri("/tmp/v.mp4")
    (True, False)
    """
    return source.lower().startswith("gs://")


class LocalRanges:
    """A local file read with ``os.pread`` (thread-safe, no shared file position)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = str(path)
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, start: int, end: int) -> bytes:
        data = os.pread(self._fd, max(0, end - start), start)
        if len(data) != end - start:
            raise InputError(f"{self.name!r} is shorter than expected: bytes {start}..{end} not there "
                             f"(the file has {self.size} bytes)", "the file changed while the job ran; start a new job")
        return data

    def stream(self) -> io.BufferedIOBase:
        return open(self.name, "rb")  # noqa: SIM115 — the caller closes it

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalRanges:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class GcsRanges:
    """One Cloud Storage object, one generation, read with ranged GETs."""

    def __init__(self, uri: str, client: Any, generation: int | None = None) -> None:
        from google.api_core import exceptions as gexc

        self.name = uri
        bucket, name = parse_gs_uri(uri)
        blob = client.bucket(bucket).blob(name, generation=generation)
        try:
            blob.reload()
        except gexc.NotFound:
            if generation is not None:
                raise InputError(f"{uri!r} was replaced or deleted since the job was planned (generation "
                                 f"{generation} is gone)", "start a new job") from None
            raise InputError(f"no such object: {uri!r}", "check the bucket and object name "
                             "(gcloud storage ls gs://BUCKET/PATH)") from None
        except gexc.Forbidden:
            raise InputError(f"not allowed to read {uri!r}", "grant the producer's identity "
                             "roles/storage.objectViewer on the bucket") from None
        self.size = int(blob.size or 0)
        self.generation = blob.generation
        self.crc32c: str | None = blob.crc32c
        self._blob = client.bucket(bucket).blob(name, generation=blob.generation)

    def read(self, start: int, end: int) -> bytes:
        from google.cloud.storage.retry import DEFAULT_RETRY

        if end <= start:
            return b""
        data = self._blob.download_as_bytes(start=start, end=end - 1, checksum=None, retry=DEFAULT_RETRY)
        if len(data) != end - start:
            raise InputError(f"{self.name!r}: asked for bytes {start}..{end}, got {len(data)}",
                             "the object changed while the job ran; start a new job")
        return data

    def stream(self) -> io.BufferedIOBase:
        return io.BufferedReader(RangeReader(self), STREAM_BUFFER_BYTES)

    def close(self) -> None:
        """Nothing to release (the client's connections are shared)."""

    def __enter__(self) -> GcsRanges:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class RangeReader(io.RawIOBase):
    """A seekable, read-only raw file over :class:`ByteRanges` (for ``io.BufferedReader`` and PyAV)."""

    def __init__(self, ranges: ByteRanges) -> None:
        super().__init__()
        self._ranges, self._position = ranges, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._ranges.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        end = min(self._ranges.size, self._position + len(buffer))
        if end <= self._position:
            return 0
        data = self._ranges.read(self._position, end)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


def open_byte_ranges(source: str | os.PathLike[str], settings: Settings | None = None,
                     client: Any = None, generation: int | None = None) -> LocalRanges | GcsRanges:
    """The bytes of a local video file or a ``gs://`` object (``generation``: that one, else the live one);
    :class:`InputError` if it cannot be read."""
    text = os.fspath(source)
    if is_gcs_uri(text):
        if client is None:
            from framecontract.clients import make_storage_client

            if settings is None:
                raise ValueError("a gs:// source needs settings or a storage client")
            client = make_storage_client(settings)
        try:
            parse_gs_uri(text)
        except ValueError:
            raise InputError(f"not a Cloud Storage object URI: {text!r}", "write it as gs://BUCKET/PATH") from None
        return GcsRanges(text, client, generation)
    path = Path(text)
    if not path.is_file():
        raise InputError(f"no such file: {text!r}", "check the path to the video")
    return LocalRanges(path)


@dataclass(frozen=True, slots=True)
class Window:
    """Bytes ``[start, end)`` of the file, holding the packets ``first..last`` (indices into a list)."""

    start: int
    end: int
    first: int
    last: int


def read_windows(spans: list[tuple[int, int]], max_bytes: int = MAX_WINDOW_BYTES,
                 max_gap: int = MAX_GAP_BYTES) -> Iterator[Window]:
    """Group ``(pos, size)`` spans, in the order given, into windows to read (pure).

    Consecutive spans share a window (they may overlap) while the window stays within ``max_bytes`` and the
    gap between them (other streams' data) is at most ``max_gap``; a span that starts before the window
    starts a new one. A span larger than ``max_bytes`` is a window of its own.

    >>> [(w.start, w.end, w.first, w.last) for w in read_windows([(0, 10), (8, 7), (100, 5), (20, 5)], 50, 10)]
    [(0, 15, 0, 1), (100, 105, 2, 2), (20, 25, 3, 3)]
    """
    current: Window | None = None
    for number, (pos, size) in enumerate(spans):
        end = pos + size
        if (current is not None and current.start <= pos <= current.end + max_gap
                and max(end, current.end) - current.start <= max_bytes):
            current = Window(current.start, max(end, current.end), current.first, number)
            continue
        if current is not None:
            yield current
        current = Window(pos, end, number, number)
    if current is not None:
        yield current
