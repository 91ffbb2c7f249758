"""Sampling by timestamp (pure): even spacing, never above the target rate (numbering: test_numbering.py)."""

from __future__ import annotations

import math
import random

import pytest

from producer.sampling import SLOT_TOLERANCE_US, TimestampSampler, sampled


def sample(timestamps_us: list[int], fps: float | None) -> list[int]:
    sampler = TimestampSampler(fps)
    return [ts for ts in timestamps_us if sampler.accept(ts)]


def constant_rate(fps: float, seconds: float) -> list[int]:
    return [round(i * 1_000_000 / fps) for i in range(int(seconds * fps))]


def assert_evenly_sampled(inputs: list[int], kept: list[int], fps: float) -> None:
    """The properties the sampler promises, checked independently of how it is written."""
    period = 1_000_000 / fps
    origin = inputs[0]
    assert kept and kept[0] == origin, "the first frame is always kept"
    assert kept == sorted(set(kept)) and set(kept) <= set(inputs)
    tolerance = min(SLOT_TOLERANCE_US, period / 100)  # µs-rounded timestamps count as on the boundary
    slots = [math.floor((ts - origin + tolerance) / period) for ts in kept]
    assert len(slots) == len(set(slots)), "at most one frame per 1/fps slot"
    gaps = [b - a for a, b in zip(kept, kept[1:], strict=False)]
    assert min(gaps, default=period) >= period / 2 - tolerance, "kept frames are at least half a period apart"
    # never more than the target rate over any one-second window (+1 for the fence post)
    for i, start in enumerate(kept):
        in_window = sum(1 for ts in kept[i:] if ts < start + 1_000_000)
        assert in_window <= math.ceil(fps) + 1
    # nothing skipped without a reason: its slot is taken, or it is too close to the previous kept frame
    kept_slots = set(slots)
    for ts in inputs:
        if ts in kept:
            continue
        previous = max(k for k in kept if k < ts)
        slot = math.floor((ts - origin + tolerance) / period)
        too_close = ts - previous < period / 2 - tolerance
        assert slot in kept_slots or too_close, f"frame at {ts} µs was skipped for no reason"


def test_constant_rate_30_to_10_keeps_every_third_frame_exactly() -> None:
    inputs = constant_rate(30, 10)
    kept = sample(inputs, 10)
    assert kept == inputs[::3]
    assert kept[:4] == [0, 100_000, 200_000, 300_000]
    assert_evenly_sampled(inputs, kept, 10)


def test_timestamps_rounded_to_microseconds_still_hit_the_slot_boundary() -> None:
    inputs = constant_rate(30, 3)  # 333333 µs is 1/3 s rounded down
    assert sample(inputs, 3) == inputs[::10]


def test_constant_rate_not_a_multiple_spreads_evenly() -> None:
    inputs = constant_rate(25, 10)
    kept = sample(inputs, 10)
    assert len(kept) == 100
    assert_evenly_sampled(inputs, kept, 10)
    gaps = {b - a for a, b in zip(kept, kept[1:], strict=False)}
    assert gaps == {80_000, 120_000}


@pytest.mark.parametrize("seed", range(5))
def test_variable_frame_rate_with_jitter(seed: int) -> None:
    rng = random.Random(seed)
    inputs = sorted({max(0, round(i * 33_333 + rng.uniform(-12_000, 12_000))) for i in range(600)})
    kept = sample(inputs, 5)
    assert_evenly_sampled(inputs, kept, 5)
    duration_s = (inputs[-1] - inputs[0]) / 1e6
    assert abs(len(kept) - duration_s * 5) <= 2
    # kept frames stay on the 200 ms grid: at most one input interval (with jitter) after a slot start
    longest_input_gap = max(b - a for a, b in zip(inputs, inputs[1:], strict=False))
    for ts in kept:
        assert (ts - inputs[0] + SLOT_TOLERANCE_US) % 200_000 <= longest_input_gap + SLOT_TOLERANCE_US


def test_bursts_are_thinned_to_the_target_rate() -> None:
    inputs: list[int] = []
    t = 0
    for _ in range(10):  # 0.5 s burst at 120 fps, then 0.5 s at 4 fps
        inputs += [t + round(i * 1e6 / 120) for i in range(60)]
        t += 500_000
        inputs += [t + round(i * 250_000) for i in range(2)]
        t += 500_000
    kept = sample(inputs, 10)
    assert_evenly_sampled(inputs, kept, 10)
    burst_kept = [ts for ts in kept if ts % 1_000_000 < 500_000]
    assert len(burst_kept) == 50, "5 frames per half-second burst at 10 fps"
    assert len(kept) == 50 + 20, "plus every frame of the slow parts (slower than the target)"


def test_source_slower_than_target_keeps_every_frame() -> None:
    inputs = constant_rate(10, 5)
    assert sample(inputs, 30) == inputs


def test_no_target_keeps_every_frame_even_irregular_ones() -> None:
    inputs = [0, 1, 2, 500_000, 500_001]
    assert sample(inputs, None) == inputs


def test_sampler_rejects_a_non_positive_target() -> None:
    with pytest.raises(ValueError):
        TimestampSampler(0)


def test_sampled_keeps_what_the_sampler_accepts_and_reads_lazily() -> None:
    consumed: list[int] = []

    def frames():
        for ts in constant_rate(30, 10):
            consumed.append(ts)
            yield ts

    kept = sampled(frames(), TimestampSampler(10), lambda ts: ts)
    assert [next(kept) for _ in range(5)] == constant_rate(30, 10)[:13:3]
    assert len(consumed) == 13, "no frame is decoded before it is needed"
