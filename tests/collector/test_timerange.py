"""Pure tests of collector.timerange: parsing --from/--to, resolving them, estimating and selecting."""

from __future__ import annotations

import pytest

from collector.errors import CollectorError
from collector.plan import Slot
from collector.timerange import (
    WINDOW_MARGIN_US,
    TimePoint,
    TimeRange,
    check_range,
    estimate_timestamps,
    format_offset,
    listing_window,
    parse_time,
    resolve_range,
    select_slots,
)


@pytest.mark.parametrize(
    ("text", "offset_us"),
    [
        ("0", 0),
        ("90", 90_000_000),
        ("12.5", 12_500_000),
        ("1:30", 90_000_000),
        ("01:30.25", 90_250_000),
        ("1:02:03.5", 3_723_500_000),
        ("75:00", 4_500_000_000),
        (" 7 ", 7_000_000),
    ],
)
def test_offsets(text: str, offset_us: int) -> None:
    assert parse_time(text) == TimePoint(text, offset_us=offset_us)


def test_iso_times_are_absolute_microseconds() -> None:
    assert parse_time("2026-11-28T12:00:05Z").absolute_us == 1_795_867_205_000_000
    assert parse_time("2026-11-28T13:00:05.5+01:00").absolute_us == 1_795_867_205_500_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-5", "invalid time '-5': give seconds (90, 12.5), [HH:]MM:SS[.fff] (1:30, 01:02:03.5) or, "
               "for live jobs, an ISO 8601 time with a zone (2026-11-28T12:00:05Z)"),
        ("1m30s", "invalid time '1m30s': give seconds (90, 12.5), [HH:]MM:SS[.fff] (1:30, 01:02:03.5) or, "
                  "for live jobs, an ISO 8601 time with a zone (2026-11-28T12:00:05Z)"),
        ("", "invalid time '': give seconds (90, 12.5), [HH:]MM:SS[.fff] (1:30, 01:02:03.5) or, "
             "for live jobs, an ISO 8601 time with a zone (2026-11-28T12:00:05Z)"),
        ("1:75", "invalid time '1:75': minutes and seconds must be below 60"),
        ("1:60:00", "invalid time '1:60:00': minutes and seconds must be below 60"),
        ("2026-11-28T12:00:05", "invalid time '2026-11-28T12:00:05': an ISO 8601 time needs a zone (Z or +HH:MM)"),
        ("2026-13-28T12:00:05Z", "invalid time '2026-13-28T12:00:05Z': give seconds (90, 12.5), [HH:]MM:SS[.fff] "
                                 "(1:30, 01:02:03.5) or, for live jobs, an ISO 8601 time with a zone "
                                 "(2026-11-28T12:00:05Z)"),
    ],
)  # fmt: skip
def test_bad_times_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_time(text)
    assert str(info.value) == message


def test_check_range() -> None:
    assert check_range(parse_time("1"), parse_time("2")) is None
    assert check_range(parse_time("1"), None) is None
    assert check_range(parse_time("0:20"), parse_time("10")) == (
        "--from 0:20 is not before --to 10 (the range is from <= t < to)"
    )
    assert check_range(parse_time("5"), parse_time("5")) == (
        "--from 5 is not before --to 5 (the range is from <= t < to)"
    )
    assert check_range(parse_time("5"), parse_time("2026-11-28T12:00:05Z")) == (
        "--from and --to must both be offsets (seconds, [HH:]MM:SS) or both ISO 8601 times"
    )


def test_resolve_range_counts_offsets_from_the_origin() -> None:
    window = resolve_range(parse_time("1"), parse_time("2.5"), clock="wallclock", origin_us=1_000_000_000)
    assert (window.start_us, window.end_us, window.text) == (1_001_000_000, 1_002_500_000, "from 1 to 2.5")
    assert window.contains(1_001_000_000) and not window.contains(1_002_500_000)
    open_end = resolve_range(parse_time("3"), None, clock="stream", origin_us=0)
    assert (open_end.start_us, open_end.end_us, open_end.text) == (3_000_000, None, "from 3")


def test_absolute_times_need_a_wall_clock() -> None:
    moment = parse_time("2026-11-28T12:00:05Z")
    assert resolve_range(moment, None, "wallclock", 0).start_us == 1_795_867_205_000_000
    with pytest.raises(CollectorError) as info:
        resolve_range(moment, None, "stream", 0)
    assert str(info.value) == (
        "'2026-11-28T12:00:05Z' is a date-time, but this job's timestamps are positions in the stream "
        "(clock 'stream'); give seconds or [HH:]MM:SS"
    )


def _slots(spec: list[tuple[int, int | None]]) -> list[Slot]:
    return [Slot(i, ts, "frame" if ts is not None else "missing") for i, ts in spec]


def test_missing_timestamps_are_interpolated_by_index_and_extrapolated_at_the_ends() -> None:
    # 10 fps, frames 0-1 and 5-6 missing; frame 4's timestamp is 0.1 s late (jitter) → interpolate
    slots = _slots([(0, None), (1, None), (2, 200_000), (3, 300_000), (4, 500_000), (5, None), (6, None),
                    (7, 700_000), (8, None)])  # fmt: skip
    assert estimate_timestamps(slots, fps=10.0) == [
        0,
        100_000,
        200_000,
        300_000,
        500_000,
        566_667,
        633_333,
        700_000,
        800_000,
    ]
    assert estimate_timestamps(_slots([(0, None), (1, None)]), fps=4.0) == [0, 250_000]


def test_selection_is_half_open_and_includes_holes_by_estimate() -> None:
    slots = _slots([(i, None if i in (3, 7) else i * 100_000) for i in range(10)])
    window = resolve_range(parse_time("0.3"), parse_time("0.7"), "stream", 0)
    chosen = select_slots(slots, estimate_timestamps(slots, 10.0), window)
    assert [(s.frame_index, s.kind) for s in chosen] == [(3, "missing"), (4, "frame"), (5, "frame"), (6, "frame")]


def test_format_offset() -> None:
    assert format_offset(12_500_000, 0) == "12.5 s"
    assert format_offset(1_003_000_000, 1_000_000_000) == "3 s"


S = 1_000_000
MARGIN = WINDOW_MARGIN_US


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (100 * S, 105 * S, (100 * S - MARGIN, 105 * S + MARGIN)),  # 25 s of 200 s
        (5 * S, 12 * S, (None, 12 * S + MARGIN)),  # reaches the start with its margin
        (190 * S, None, (190 * S - MARGIN, None)),  # open end
        (185 * S, 195 * S, (185 * S - MARGIN, None)),  # reaches the end with its margin
        (50 * S, 150 * S, None),  # over half of the job: one listing of everything is cheaper
        (None, None, None),
    ],
)
def test_listing_window_lists_short_ranges_with_margins(
    start: int | None, end: int | None, expected: tuple[int | None, int | None] | None
) -> None:
    assert listing_window(TimeRange(start, end, 0, "r"), 0, 200 * S) == expected


def test_listing_window_needs_the_jobs_span() -> None:
    window = TimeRange(100 * S, 105 * S, 0, "r")
    assert listing_window(window, None, 200 * S) is None  # a running job's manifest
    assert listing_window(window, 0, None) is None
    assert listing_window(window, 5 * S, 5 * S) is None
