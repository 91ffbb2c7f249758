"""The watermark of ``collector follow`` as pure functions: examples and property tests (hypothesis).

Properties, over random jobs (frames missing, arrivals shuffled and delayed, duplicated), checked with
the clock stepping forward as ``follow`` polls: the output is strictly in timestamp order; every frame
is emitted exactly once or reported missing exactly once (and a result that comes after its frame was
given up is reported late, never emitted); the window never holds more than its capacity; and no
result is held longer than max-delay plus one poll.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.watermark import Emitted, Late, Missing, Watermark


def ts(index: int) -> int:
    return 1_000_000 + index * 100_000


def test_in_order_arrivals_leave_at_once() -> None:
    mark = Watermark(max_delay_s=2.0)
    out = []
    for i in range(5):
        assert mark.offer(i, ts(i), f"p{i}", now=float(i)) == []
        out += mark.advance(now=float(i))
    assert [(e.frame_index, e.payload, e.emitted_at - e.arrived_at) for e in out] == [
        (i, f"p{i}", 0.0) for i in range(5)
    ]
    assert mark.done(5) and mark.size == 0


def test_a_hole_waits_max_delay_from_the_first_later_result_then_is_reported_missing() -> None:
    mark = Watermark(max_delay_s=2.0)
    mark.offer(0, ts(0), None, now=0.0)
    mark.offer(2, ts(2), None, now=0.5)
    assert [e.frame_index for e in mark.advance(now=0.5)] == [0]
    mark.offer(3, ts(3), None, now=1.0)
    assert mark.advance(now=2.49) == []
    events = mark.advance(now=2.5)
    assert events == [Missing(1, "timed out", 2.0), Emitted(2, ts(2), None, 0.5, 2.5),
                      Emitted(3, ts(3), None, 1.0, 2.5)]
    assert mark.offer(1, ts(1), None, now=3.0) == [Late(1, ts(1), "after its slot was given up", 3.0)]
    assert (mark.emitted, mark.missing, mark.late) == (3, 1, 1)


def test_a_late_result_within_the_delay_fills_its_hole() -> None:
    mark = Watermark(max_delay_s=2.0)
    for i in (0, 2, 3):
        mark.offer(i, ts(i), None, now=0.0)
    assert [e.frame_index for e in mark.advance(now=1.0)] == [0]
    mark.offer(1, ts(1), None, now=1.9)
    assert [e.frame_index for e in mark.advance(now=1.9)] == [1, 2, 3]
    assert mark.missing == 0


def test_the_tail_is_given_up_only_after_results_stop_for_max_delay() -> None:
    """Workers behind the producer: the manifest says 4 frames, results trickle in; nothing is called missing
    while they keep coming, and frame 3 (never processed) is given up max-delay after the last result."""
    mark = Watermark(max_delay_s=2.0)
    mark.know(4, now=0.0)
    for i, t in ((0, 1.0), (1, 2.5), (2, 4.0)):
        assert mark.advance(now=t - 0.01) == []
        mark.offer(i, ts(i), None, now=t)
        assert [e.frame_index for e in mark.advance(now=t)] == [i]
    assert mark.advance(now=5.99) == []
    assert mark.advance(now=6.0) == [Missing(3, "timed out", 2.0)]
    assert mark.done(4)


def test_duplicates_and_timestamps_out_of_order_are_late() -> None:
    mark = Watermark(max_delay_s=1.0)
    mark.offer(0, ts(5), None, now=0.0)
    assert mark.offer(0, ts(5), None, now=0.1) == [Late(0, ts(5), "duplicate", 0.1)]
    mark.offer(1, ts(4), None, now=0.2)  # a timestamp below frame 0's: cannot be emitted in order
    events = mark.advance(now=0.2)
    assert events == [Emitted(0, ts(5), None, 0.0, 0.2),
                      Late(1, ts(4), "timestamp not after the previous frame's", 0.2)]


def test_a_full_window_gives_up_the_hole_in_front_at_once() -> None:
    mark = Watermark(max_delay_s=60.0, capacity=3)
    for i in (1, 2, 3):
        assert mark.offer(i, ts(i), None, now=0.0) == []
    events = mark.offer(4, ts(4), None, now=0.0)
    assert events[0] == Missing(0, "window full", 0.0)
    assert [e.frame_index for e in events[1:]] == [1, 2, 3, 4]
    assert mark.size == 0


@pytest.mark.parametrize(("delay", "capacity", "problem"), [
    (0.0, 10, "max_delay_s must be more than 0, got 0.0"),
    (1.0, 0, "capacity must be at least 1, got 0"),
])
def test_bad_settings(delay: float, capacity: int, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        Watermark(max_delay_s=delay, capacity=capacity)
    assert str(info.value) == problem


# --------------------------------------------------------------------------- properties

TICK = 0.25
"""Seconds between two polls in the simulation."""


@st.composite
def jobs(draw: st.DrawFn) -> tuple[int, dict[int, list[float]], float, int, float | None]:
    """(frames, index → arrival times, max delay, capacity, time the manifest became final)."""
    frames = draw(st.integers(0, 60))
    arrivals: dict[int, list[float]] = {}
    for index in range(frames):
        if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:
            continue  # never arrives
        base = index * 0.1 + draw(st.floats(0, 5, allow_nan=False))
        times = [base]
        if draw(st.integers(0, 19)) == 0:  # redelivered copy, later
            times.append(base + draw(st.floats(0, 5, allow_nan=False)))
        arrivals[index] = times
    max_delay = draw(st.sampled_from([0.3, 1.0, 2.0]))
    capacity = draw(st.integers(1, 80))
    final_at = draw(st.one_of(st.none(), st.floats(0, 10, allow_nan=False)))
    return frames, arrivals, max_delay, capacity, final_at


def simulate(frames: int, arrivals: dict[int, list[float]], max_delay: float, capacity: int,
             final_at: float | None) -> tuple[list, Watermark, list[int]]:
    """Run the watermark the way ``follow`` does: every TICK, offer what arrived since, then advance."""
    mark = Watermark(max_delay_s=max_delay, capacity=capacity)
    feed = sorted((t, i) for i, times in arrivals.items() for t in times)
    events: list = []
    sizes: list[int] = []
    now, k = 0.0, 0
    end = max([t for t, _ in feed] + [final_at or 0.0]) + max_delay + 2 * TICK
    while now <= end:
        if final_at is not None and final_at <= now:
            mark.know(frames, now)
        while k < len(feed) and feed[k][0] <= now:
            events += mark.offer(feed[k][1], ts(feed[k][1]), feed[k][1], now)
            sizes.append(mark.size)
            k += 1
        events += mark.advance(now)
        sizes.append(mark.size)
        now = round(now + TICK, 6)
    return events, mark, sizes


@settings(max_examples=300, deadline=None)
@given(jobs())
def test_output_is_in_order_each_frame_once_and_memory_is_bounded(job) -> None:  # noqa: ANN001
    frames, arrivals, max_delay, capacity, final_at = job
    events, mark, sizes = simulate(frames, arrivals, max_delay, capacity, final_at)

    emitted = [e for e in events if isinstance(e, Emitted)]
    missing = [e for e in events if isinstance(e, Missing)]
    late = [e for e in events if isinstance(e, Late)]
    stamps = [e.timestamp_us for e in emitted]
    assert stamps == sorted(set(stamps)), "output strictly in timestamp order"

    in_order = [(e.frame_index, "e" if isinstance(e, Emitted) else "m") for e in events if not isinstance(e, Late)]
    assert [i for i, _ in in_order] == sorted(i for i, _ in in_order), "emitted and missing interleave in order"
    emitted_ids = [e.frame_index for e in emitted]
    missing_ids = [e.frame_index for e in missing]
    assert len(set(emitted_ids)) == len(emitted_ids) and len(set(missing_ids)) == len(missing_ids)
    assert not set(emitted_ids) & set(missing_ids), "a frame is emitted or missing, never both"
    seen = set(arrivals)
    if final_at is not None:
        assert set(emitted_ids) | set(missing_ids) == set(range(frames)) | seen, "every frame accounted for"
        assert mark.done(frames)
    assert set(emitted_ids) <= seen
    for event in late:  # late: a copy of an emitted result, or a result for a frame given up
        assert event.frame_index in seen
        assert event.frame_index in set(emitted_ids) or event.frame_index in set(missing_ids)
    assert mark.late == len(late) and mark.emitted == len(emitted) and mark.missing == len(missing)

    assert max(sizes, default=0) <= capacity, "the window never holds more than its capacity"
    assert len(mark._arrivals) <= 2 * capacity + 16
    for event in emitted:
        assert event.emitted_at - event.arrived_at <= max_delay + TICK + 1e-9, "held at most max-delay + a poll"


@settings(max_examples=100, deadline=None)
@given(st.permutations(list(range(40))), st.integers(1, 5))
def test_a_shuffled_burst_within_the_delay_loses_nothing(order: list[int], polls: int) -> None:
    """Every result arrives within the delay, in any order (a job followed after it is done): all emitted."""
    mark = Watermark(max_delay_s=5.0, capacity=40)
    events = []
    for n, index in enumerate(order):
        events += mark.offer(index, ts(index), None, now=(n * polls) // len(order) * 0.1)
        events += mark.advance(now=(n * polls) // len(order) * 0.1)
    assert [e.frame_index for e in events] == list(range(40))
    assert all(isinstance(e, Emitted) for e in events)
