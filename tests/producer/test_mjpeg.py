"""The multipart/x-mixed-replace parser (pure): any chunking, loose camera formats, bounded buffers."""

from __future__ import annotations

import random

import pytest

from producer.mjpeg import (
    MAX_HEADER_BYTES,
    MAX_PART_BYTES,
    MjpegProtocolError,
    MultipartJpegParser,
    boundary_from_content_type,
    is_multipart,
)

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


# ---- every buffer is bounded (issue 16) -----------------------------------------------------------------


def protocol_error(parser: MultipartJpegParser, chunks: list[bytes]) -> str:
    """The message of the MjpegProtocolError the chunks raise (fails if none does)."""
    with pytest.raises(MjpegProtocolError) as raised:
        for chunk in chunks:
            parser.feed(chunk)
    return str(raised.value)


def test_a_boundary_line_without_its_newline_is_refused_not_buffered() -> None:
    parser = MultipartJpegParser("frame")
    assert protocol_error(parser, [b"--frame"] + [b"x" * 1000] * 100) == (
        f"boundary line longer than {MAX_HEADER_BYTES} bytes")
    assert len(parser._buffer) <= MAX_HEADER_BYTES + 1000


def test_a_header_block_is_bounded_even_when_its_end_arrives_in_the_same_chunk() -> None:
    data = b"--f\r\nX-Junk: " + b"y" * MAX_HEADER_BYTES + b"\r\n\r\n\xff\xd8\xff\xd9\r\n--f\r\n"
    assert protocol_error(MultipartJpegParser("f"), [data]) == f"part headers longer than {MAX_HEADER_BYTES} bytes"


def test_a_part_without_content_length_is_bounded_even_when_its_boundary_arrives_in_the_same_chunk() -> None:
    data = b"--f\r\n\r\n" + b"x" * 2000 + b"\r\n--f\r\n"
    assert protocol_error(MultipartJpegParser("f", max_part_bytes=1000), [data]) == (
        "part larger than 1000 bytes without a boundary")
    assert MultipartJpegParser("f", max_part_bytes=2000).feed(data) == [b"x" * 2000], "a part at the limit is fine"


def test_an_absurd_content_length_is_a_protocol_error() -> None:
    data = b"--f\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n"
    assert protocol_error(MultipartJpegParser("f"), [data]) == (
        f"part of {'9' * 20}... bytes is larger than {MAX_PART_BYTES}")
    assert protocol_error(MultipartJpegParser("f", max_part_bytes=1000), [b"--f\r\nContent-Length: 1001\r\n\r\n"]) == (
        "part of 1001 bytes is larger than 1000")


def test_what_the_parser_holds_never_exceeds_its_limits_plus_one_chunk() -> None:
    chunk = 4096
    rng = random.Random(7)
    hostile = [
        b"--f" + b"x" * 100_000,                                          # a boundary line that never ends
        b"--f\r\n" + b"X: y\r\n" * 20_000,                               # headers that never end
        b"--f\r\n\r\n" + bytes(rng.randrange(256) for _ in range(60_000)),  # a body that never meets its boundary
        b"--f\r\nContent-Length: 50000\r\n\r\n" + b"z" * 60_000,          # a body longer than the limit
    ]
    for data in hostile:
        parser = MultipartJpegParser("f", max_part_bytes=30_000)
        with pytest.raises(MjpegProtocolError):
            for at in range(0, len(data), chunk):
                parser.feed(data[at:at + chunk])
                assert len(parser._buffer) <= 30_000 + MAX_HEADER_BYTES + chunk


# ---- boundary search without Content-Length is incremental (issue 16) -----------------------------------


def scanned_feeding_bytewise(body_size: int) -> tuple[int, int]:
    """(bytes fed, bytes the parser's searches examined) for one part without Content-Length, fed byte by byte."""
    body = bytes((i * 7) % 251 for i in range(body_size)).replace(b"-", b"+")
    data = stream([body, b"next"], content_length=False)
    parser = MultipartJpegParser("frame")
    bodies = [jpeg for i in range(len(data)) for jpeg in parser.feed(data[i:i + 1])]
    assert bodies == [body]
    return len(data), parser.scanned_bytes


def test_the_boundary_search_resumes_where_it_stopped() -> None:
    fed, scanned = scanned_feeding_bytewise(20_000)
    assert scanned <= len(b"--frame") * fed, "each byte is examined at most once per byte of the boundary marker"
    fed_4x, scanned_4x = scanned_feeding_bytewise(80_000)
    assert scanned_4x <= 4.5 * scanned, "linear in the part's size, not quadratic"


def test_one_chunk_is_scanned_about_once() -> None:
    data = stream(JPEGS * 50, content_length=False)
    parser = MultipartJpegParser("frame")
    assert len(parser.feed(data)) == len(JPEGS) * 50 - 1
    assert parser.scanned_bytes <= 2 * len(data)
