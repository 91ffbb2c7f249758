"""Decoding one chunk from its byte range: its packets, one decoder, its own frames out (PyAV).

Usage::

    with open_byte_ranges("videos/long.mp4") as ranges:          # or gs://bucket/long.mp4
        for frame in decode_chunk(chunk, table.codec, ranges):    # chunk: producer.chunks.Chunk
            frame.pts, frame.image                                 # BGR uint8, OpenCV's pixels

The decoder is built from the demux pass's codec parameters and fed the chunk's packets, read from the
file in a few windows of its byte range (``producer.byteranges.read_windows``): nothing outside them is
read. Every packet's CRC-32 is checked against the demux pass's, and the frames the decoder outputs
must be exactly the chunk's own, in presentation order (``Chunk.owned_pts``); frames before them (an
open GOP's warm-up) and after them (the next chunk's keyframe) are decoded and dropped. Anything else
is a :class:`ChunkDecodeError` that names the chunk, before the frame in question is published.

Frames are converted to BGR as OpenCV's FFmpeg backend does (``sws_scale`` with ``SWS_BICUBIC`` and the
frame's own colour tags; the same FFmpeg 8 in both wheels), so the JPEG of a frame is the sequential
producer's byte for byte; :func:`same_pixels_as_opencv` checks that on a file's first frame before a job
relies on it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from producer.byteranges import ByteRanges, read_windows
from producer.chunks import Chunk
from producer.demux import MAX_HEADER_BYTES, CodecParameters, Packet
from producer.errors import InputError


class ChunkDecodeError(InputError):
    """A chunk did not decode as the demux pass predicted (or its bytes changed)."""


@dataclass(frozen=True, slots=True)
class ChunkFrame:
    """One of a chunk's own frames: its presentation timestamp and the BGR image."""

    pts: int
    image: np.ndarray


def make_decoder(codec: CodecParameters, threads: int = 1):  # noqa: ANN201 — av.CodecContext
    """A decoder for ``codec`` with nothing but its parameters (no container)."""
    import av

    context = av.CodecContext.create(codec.name, "r")
    if codec.extradata:
        context.extradata = codec.extradata
    if codec.codec_tag:
        context.codec_tag = codec.codec_tag
    context.width, context.height = codec.width, codec.height
    context.thread_count = max(1, threads)
    context.thread_type = "AUTO" if threads > 1 else "SLICE"
    return context


def to_bgr(frame) -> np.ndarray:  # noqa: ANN001 — av.VideoFrame
    """A decoded frame as OpenCV's FFmpeg backend returns it (BGR24, bicubic ``sws_scale``)."""
    from av.video.reformatter import Interpolation

    return frame.to_ndarray(format="bgr24", interpolation=Interpolation.BICUBIC)


def packet_bytes(data: bytes, offset: int, packet: Packet) -> bytes | None:
    """The packet's bytes in ``data``, found at or up to :data:`MAX_HEADER_BYTES` after ``offset`` (its ``pos``)
    by its first bytes and proven by its CRC-32; ``None`` if they are not there (pure).

    >>> p = Packet(0, 0, 10, 3, True, True, zlib.crc32(b"abc"), int.from_bytes(b"abc", "big"))
    >>> packet_bytes(b"....hdrabc..", 4, p)
    b'abc'
    """
    head = packet.head_bytes
    at = data.find(head, offset, offset + MAX_HEADER_BYTES + len(head))
    while at >= 0:
        payload = data[at: at + packet.size]
        if len(payload) == packet.size and zlib.crc32(payload) == packet.crc:
            return payload
        at = data.find(head, at + 1, offset + MAX_HEADER_BYTES + len(head))
    return None


def chunk_packets(chunk: Chunk, ranges: ByteRanges) -> Iterator[tuple[int, bytes]]:
    """``(packet number in the chunk, bytes)`` in decode order, read window by window and CRC-checked."""
    spans = [(p.pos, p.size + MAX_HEADER_BYTES) for p in chunk.packets]
    for window in read_windows(spans):
        data = ranges.read(window.start, min(window.end, ranges.size))
        for number in range(window.first, window.last + 1):
            packet = chunk.packets[number]
            payload = packet_bytes(data, packet.pos - window.start, packet)
            if payload is None:
                raise ChunkDecodeError(
                    f"chunk {chunk.number}: packet {chunk.decode_from + number} of {ranges.name!r} (bytes "
                    f"{packet.pos}..{packet.pos + packet.size}) is not what the demux pass read",
                    "the file changed since the job started, or its container does not store packets as "
                    "contiguous bytes; start a new job with --parallel 1")
            yield number, payload


def decode_chunk(chunk: Chunk, codec: CodecParameters, ranges: ByteRanges, threads: int = 1) -> Iterator[ChunkFrame]:
    """The frames ``chunk`` owns, in presentation order, each checked against the plan."""
    import av

    decoder = make_decoder(codec, threads)
    expected = chunk.owned_pts
    first, last = expected[0], expected[-1]
    next_expected = 0

    def own(frames: list) -> Iterator[ChunkFrame]:  # noqa: ANN001
        nonlocal next_expected
        for frame in frames:
            pts = frame.pts
            if pts is None or pts < first or pts > last:
                continue  # warm-up before the chunk's keyframe, or the next chunk's frames
            if next_expected >= len(expected) or pts != expected[next_expected]:
                wanted = expected[next_expected] if next_expected < len(expected) else "none"
                raise ChunkDecodeError(
                    f"chunk {chunk.number}: the decoder gave the frame at pts {pts} where the demux pass expected "
                    f"{wanted}", "this file cannot be cut into chunks exactly; start a new job with --parallel 1")
            next_expected += 1
            yield ChunkFrame(pts, to_bgr(frame))

    try:
        for number, payload in chunk_packets(chunk, ranges):
            info = chunk.packets[number]
            packet = av.Packet(payload)
            packet.pts, packet.dts = info.pts, info.dts
            if info.key:
                packet.is_keyframe = True
            yield from own(decoder.decode(packet))
            if next_expected == len(expected):
                return
        yield from own(decoder.decode(None))
    except av.FFmpegError as exc:
        raise ChunkDecodeError(f"chunk {chunk.number}: decoding failed ({exc})",
                               "the file may be corrupt; start a new job with --parallel 1") from None
    if next_expected != len(expected):
        raise ChunkDecodeError(f"chunk {chunk.number}: the decoder gave {next_expected} of its {len(expected)} frames "
                               f"(the first missing at pts {expected[next_expected]})",
                               "this file cannot be cut into chunks exactly; start a new job with --parallel 1")


def same_pixels_as_opencv(chunk: Chunk, codec: CodecParameters, ranges: ByteRanges, opencv_first: np.ndarray) -> bool:
    """True if the first frame of ``chunk`` (chunk 0) decodes to exactly OpenCV's first frame ``opencv_first``.

    Catches what would make chunks differ from the sequential producer for a whole file: a rotation OpenCV
    applies from the container's display matrix, another pixel format conversion.
    """
    first = next(decode_chunk(chunk, codec, ranges), None)
    return first is not None and first.image.shape == opencv_first.shape and np.array_equal(first.image, opencv_first)
