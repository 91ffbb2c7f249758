"""Presentation timestamps (pure): trusted while increasing, extrapolated after, negatives clamped."""

from __future__ import annotations

import logging
import math

import pytest

from producer.timestamps import DEFAULT_FALLBACK_FPS, TimestampTracker, usable_fps


def track(reported_ms: list[float | None], fps: float | None) -> tuple[list[int], TimestampTracker]:
    tracker = TimestampTracker(fps, "clip.avi")
    return [tracker.timestamp_us(i, ms) for i, ms in enumerate(reported_ms)], tracker


def test_increasing_timestamps_are_kept_exactly_even_when_irregular() -> None:
    stamps, tracker = track([0.0, 33.367, 66.733, 150.0, 151.0], 30)
    assert stamps == [0, 33_367, 66_733, 150_000, 151_000]
    assert tracker.fallback_reason is None


def test_all_zero_timestamps_fall_back_to_index_over_fps(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="producer.timestamps"):
        stamps, tracker = track([0.0] * 5, 25)
    assert stamps == [0, 40_000, 80_000, 120_000, 160_000]
    assert tracker.fallback_from_index == 1
    assert len(caplog.records) == 1, "one warning, not one per frame"
    assert "clip.avi: frame 1 has timestamp 0 µs is not after the previous 0 µs" in caplog.text
    assert "extrapolated at 25 fps" in caplog.text


def test_going_backwards_continues_from_the_last_trusted_timestamp_for_the_rest_of_the_stream() -> None:
    stamps, tracker = track([0.0, 100.0, 200.0, 150.0, 400.0, 500.0], 10)
    assert stamps == [0, 100_000, 200_000, 300_000, 400_000, 500_000]
    assert tracker.fallback_from_index == 3
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))


def test_missing_or_nan_timestamps_fall_back() -> None:
    stamps, tracker = track([0.0, 40.0, math.nan, None], 25)
    assert stamps == [0, 40_000, 80_000, 120_000]
    assert tracker.fallback_reason == "no usable timestamp (nan)"


def test_negative_timestamps_are_clamped_to_zero() -> None:
    stamps, tracker = track([-80.0, 20.0, 60.0], 25)
    assert stamps == [0, 20_000, 60_000]
    assert tracker.clamped_negative == 1


def test_unknown_fps_falls_back_at_the_default_rate() -> None:
    stamps, _ = track([0.0, 0.0, 0.0], None)
    interval = round(1e6 / DEFAULT_FALLBACK_FPS)
    assert stamps == [0, interval, 2 * interval]


@pytest.mark.parametrize(("fps", "usable"), [(25.0, 25.0), (0.0, None), (-1.0, None), (math.nan, None),
                                             (math.inf, None), (90000.0, None), (None, None)])
def test_usable_fps(fps: float | None, usable: float | None) -> None:
    assert usable_fps(fps) == usable


def test_decode_indices_must_increase() -> None:
    tracker = TimestampTracker(25)
    tracker.timestamp_us(3, 120.0)
    with pytest.raises(ValueError):
        tracker.timestamp_us(3, 160.0)
