"""Decoding video files: frame counts, presentation timestamps, and the exact errors for bad files."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from producer.errors import InputError
from producer.sources import open_video_file
from tests.producer.helpers import SYNTHETIC_SIZE, brightness_of, write_synthetic_video


@pytest.mark.parametrize(("fourcc", "suffix"), [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_every_frame_is_decoded_with_its_presentation_timestamp(tmp_path: Path, fourcc: str, suffix: str) -> None:
    path = write_synthetic_video(tmp_path / f"clip{suffix}", frames=30, fps=12.5, fourcc=fourcc)
    with open_video_file(path) as source:
        info = source.info
        frames = list(source.frames())
        assert source.timestamps.fallback_reason is None
    assert (info.kind, info.clock, info.fps, info.frame_count) == ("file", "stream", 12.5, 30)
    assert (info.width, info.height) == SYNTHETIC_SIZE
    assert len(frames) == 30
    assert [f.timestamp_us for f in frames] == [i * 80_000 for i in range(30)]
    assert all(f.image.shape == (SYNTHETIC_SIZE[1], SYNTHETIC_SIZE[0], 3) for f in frames)
    # the frames come out in order: frame i has the grey level written into frame i
    means = [float(np.median(f.image[40:, :, :])) for f in frames]
    assert means == pytest.approx([brightness_of(i) for i in range(30)], abs=4)


def test_frames_can_be_taken_only_once(synthetic_video: Path) -> None:
    with open_video_file(synthetic_video) as source:
        list(source.frames())
        with pytest.raises(RuntimeError):
            list(source.frames())


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(InputError) as caught:
        open_video_file(missing)
    assert str(caught.value) == f"no such file: '{missing}' — check the path to the video"
    assert caught.value.exit_code == 2


def test_corrupt_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(random.Random(7).randbytes(50_000))
    with pytest.raises(InputError) as caught:
        open_video_file(corrupt)
    assert str(caught.value) == (
        f"'{corrupt}' is not a video OpenCV can open (not a video file, corrupt, or an unsupported format) — "
        "check that the file plays in a video player, or re-encode it (e.g. to H.264 MP4)"
    )


def test_empty_file_is_not_a_video(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="is not a video OpenCV can open"):
        open_video_file(empty)


def test_a_video_without_frames(tmp_path: Path) -> None:
    path = tmp_path / "no-frames.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    assert path.stat().st_size > 0
    with pytest.raises(InputError) as caught:
        open_video_file(path)
    assert str(caught.value) == (
        f"no frames could be decoded from '{path}' — the file may be truncated, corrupt or use an unsupported "
        "codec; re-encode it or try another file"
    )


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        open_video_file(tmp_path)
    assert str(caught.value) == f"'{tmp_path}' is a directory, not a video file — give the path of a video file"


def test_vtest_first_frames_have_10fps_timestamps(vtest_path: Path) -> None:
    with open_video_file(vtest_path) as source:
        assert (source.info.width, source.info.height, source.info.fps) == (768, 576, 10.0)
        stamps = [f.timestamp_us for _, f in zip(range(20), source.frames(), strict=False)]
    assert stamps == [i * 100_000 for i in range(20)]
