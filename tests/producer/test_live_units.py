"""Pure parts of live sources and frame handling: backoff, capture clock, classification, sizes, folders.
(The read-ahead queue's drop-oldest, max_items and stop tests are in test_prefetch.py.)"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from producer.encode import resize_image
from producer.errors import InputError, UsageError
from producer.images import natural_key, open_image_folder
from producer.live import WallClock, backoff_delays
from producer.opening import classify_source
from producer.options import output_size, parse_resize
from producer.sources import looks_like_text


def test_backoff_doubles_up_to_the_maximum() -> None:
    assert list(itertools.islice(backoff_delays(), 8)) == [0.5, 1, 2, 4, 8, 10, 10, 10]
    assert list(itertools.islice(backoff_delays(0.1, 0.3), 4)) == pytest.approx([0.1, 0.2, 0.3, 0.3])


def test_wallclock_timestamps_never_go_back() -> None:
    readings = iter([5_000_000_000, 6_000_000_000, 4_000_000_000, 4_000_000_000, 7_000_000_000])
    clock = WallClock(lambda: next(readings))
    assert [clock.now_us() for _ in range(5)] == [5_000_000, 6_000_000, 6_000_001, 6_000_002, 7_000_000]


@pytest.mark.parametrize(
    ("source", "kind"),
    [("0", "webcam"), ("12", "webcam"), ("videos/a.mp4", "path"), ("file:///tmp/a%20b.mp4", "path"),
     ("http://cam/video.mjpg", "http"), ("HTTPS://cam/x", "http"), ("rtsp://u:p@cam:554/s", "stream"),
     ("rtsps://cam/s", "stream"), ("tcp://127.0.0.1:9000", "stream"), ("udp://239.0.0.1:1234", "stream")],
)
def test_classify_source(source: str, kind: str) -> None:
    assert classify_source(source).kind == kind
    assert classify_source("file:///tmp/a%20b.mp4").target == "/tmp/a b.mp4"


def test_output_size() -> None:
    assert output_size(768, 576, None, None) == (768, 576)
    assert output_size(768, 576, 384, None) == (384, 288)
    assert output_size(576, 768, 384, None) == (288, 384)
    assert output_size(320, 240, 640, None) == (320, 240), "never scaled up"
    assert output_size(3000, 10, 100, None) == (100, 1), "each side at least one pixel"
    assert output_size(768, 576, None, (320, 200)) == (320, 200)
    assert parse_resize(" 64 X 48 ") == (64, 48)


def test_resize_image() -> None:
    image = np.zeros((576, 768, 3), np.uint8)
    assert resize_image(image, (768, 576)) is image
    assert resize_image(image, (384, 288)).shape == (288, 384, 3)


@pytest.mark.parametrize("text", ["640", "640x", "0x480", "640x-1", "axb", "640*480"])
def test_bad_resize_values(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_resize(text)
    assert str(caught.value) == (f"--resize must be WIDTHxHEIGHT in pixels, e.g. 640x480, got {text!r} — give two "
                                 "whole numbers greater than 0 joined by 'x', or use --max-side")


def test_natural_name_order() -> None:
    names = ["img10.png", "img2.png", "img1.png", "IMG3.png", "a.png"]
    assert sorted(names, key=natural_key) == ["a.png", "img1.png", "img2.png", "IMG3.png", "img10.png"]


def test_image_folder_order_timestamps_and_skipped_files(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"shot{i}.png"), np.full((30, 40, 3), i * 20, np.uint8))
    (tmp_path / "shot3.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_image_folder(tmp_path, fps=4)
    frames = list(source.frames())
    assert (source.info.kind, source.info.clock, source.info.fps, source.info.frame_count) == ("images", "stream", 4, 4)
    assert [f.timestamp_us for f in frames] == [0, 250_000, 750_000], "shot3.jpg leaves a gap in time"
    assert [int(f.image[0, 0, 0]) for f in frames] == [20, 40, 200]
    assert source.skipped == ["shot3.jpg"]


def test_text_files_are_told_apart_from_videos_and_playlists(tmp_path: Path, synthetic_video: Path) -> None:
    (tmp_path / "notes.txt").write_text("meeting notes\nnothing to see\n")
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXT-X-VERSION:3\n")
    (tmp_path / "utf8.txt").write_bytes("caf\u00e9 ".encode() * 1000)
    assert looks_like_text(tmp_path / "notes.txt") and looks_like_text(tmp_path / "utf8.txt")
    assert not looks_like_text(tmp_path / "list.m3u8")
    assert not looks_like_text(synthetic_video)


def test_classify_refuses_unsupported_schemes_and_empty_sources() -> None:
    with pytest.raises(InputError) as caught:
        classify_source("ftp://user:pw@host/video.mp4")
    assert str(caught.value) == ("unsupported source scheme 'ftp://' in 'ftp://***@host/video.mp4' — give a video "
                                 "file, a gs:// video object, a folder of images, rtsp:// or http(s):// URL, or a "
                                 "webcam index such as 0")
    with pytest.raises(InputError, match="no host in the URL 'rtsp:///stream'"):
        classify_source("rtsp:///stream")
