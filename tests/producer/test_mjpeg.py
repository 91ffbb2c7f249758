"""The multipart/x-mixed-replace parser (pure): any chunking, loose camera formats, bounded buffers."""

from __future__ import annotations

import random

import pytest

from producer.mjpeg import MjpegProtocolError, MultipartJpegParser, boundary_from_content_type, is_multipart

JPEGS = [b"\xff\xd8" + bytes([i]) * (100 + 37 * i) + b"--x\r\n\xff\xd9" for i in range(6)]


def stream(parts: list[bytes], boundary: str = "frame", content_length: bool = True, newline: bytes = b"\r\n",
           preamble: bytes = b"") -> bytes:
    out = preamble
    for data in parts:
        out += b"--" + boundary.encode() + newline + b"Content-Type: image/jpeg" + newline
        if content_length:
            out += f"Content-Length: {len(data)}".encode() + newline
        out += newline + data + newline
    return out


def parse_in_chunks(data: bytes, boundary: str, sizes: list[int]) -> list[bytes]:
    parser = MultipartJpegParser(boundary)
    out, at = [], 0
    for size in sizes:
        out += parser.feed(data[at:at + size])
        at += size
    return out + parser.feed(data[at:])


@pytest.mark.parametrize("content_length", [True, False])
@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_every_chunking_gives_the_same_jpegs(content_length: bool, newline: bytes) -> None:
    data = stream(JPEGS, content_length=content_length, newline=newline, preamble=b"junk before\r\n")
    rng = random.Random(3)
    expected = JPEGS if content_length else JPEGS[:-1]  # without a length, a part ends at the next boundary
    assert parse_in_chunks(data, "frame", [1] * len(data)) == expected
    for _ in range(20):
        sizes = [rng.randint(1, 400) for _ in range(len(data) // 50)]
        assert parse_in_chunks(data, "frame", sizes) == expected


def test_without_content_length_the_last_part_ends_at_the_next_boundary() -> None:
    parser = MultipartJpegParser("frame")
    assert parser.feed(stream(JPEGS[:2], content_length=False)) == [JPEGS[0]]
    assert parser.feed(b"--frame\r\n") == [JPEGS[1]]


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/x-mixed-replace; boundary=frame", "frame"),
        ('multipart/x-mixed-replace;boundary="--myboundary"', "myboundary"),
        ("multipart/x-mixed-replace; charset=utf-8; Boundary=ipcam", "ipcam"),
    ],
)
def test_boundary_from_content_type(content_type: str, boundary: str) -> None:
    assert is_multipart(content_type)
    assert boundary_from_content_type(content_type) == boundary


def test_a_boundary_declared_with_dashes_still_matches_the_lines() -> None:
    # some cameras declare boundary=--myboundary and then write --myboundary lines
    data = b"--myboundary\r\nContent-Length: 5\r\n\r\nabcde\r\n--myboundary\r\nContent-Length: 2\r\n\r\nfg\r\n"
    assert MultipartJpegParser(boundary_from_content_type("multipart/x-mixed-replace;boundary=--myboundary")
                               ).feed(data) == [b"abcde", b"fg"]


def test_not_multipart_and_no_boundary() -> None:
    assert not is_multipart("video/mp4") and not is_multipart(None)
    with pytest.raises(MjpegProtocolError, match="no boundary"):
        boundary_from_content_type("multipart/x-mixed-replace")


def test_oversized_parts_and_headers_are_refused() -> None:
    with pytest.raises(MjpegProtocolError, match="larger than 1000"):
        MultipartJpegParser("f", max_part_bytes=1000).feed(b"--f\r\nContent-Length: 5000\r\n\r\n")
    with pytest.raises(MjpegProtocolError, match="without a boundary"):
        MultipartJpegParser("f", max_part_bytes=1000).feed(b"--f\r\n\r\n" + b"x" * 2000)
    with pytest.raises(MjpegProtocolError, match="headers longer"):
        MultipartJpegParser("f").feed(b"--f\r\n" + b"X-Junk: y\r\n" * 2000)


def test_junk_without_a_boundary_does_not_accumulate() -> None:
    parser = MultipartJpegParser("frame")
    for _ in range(1000):
        assert parser.feed(b"x" * 1000) == []
    assert len(parser._buffer) < 100
