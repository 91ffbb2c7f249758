"""Pure tests of collector.plan: parsing a listing, ordering, gaps, duplicates, ranges, status."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from collector.plan import (
    ListedObject,
    Timeline,
    format_ranges,
    format_status,
    output_fps,
    parse_listing,
    plan_timeline,
    summarise_status,
    to_ranges,
)
from collector.synthetic import synthetic_manifest, timestamp_of
from framecontract.layout import manifest_name, result_name, shard_of

JOB = "demo"
T0 = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


def objects_for(
    processed: list[int],
    errors: list[int] = (),  # type: ignore[assignment]
    images_only: list[int] = (),  # type: ignore[assignment]
    fps: float = 10.0,
    job: str = JOB,
    seconds_per_frame: float = 0.5,
    timestamps: dict[int, int] | None = None,
    seed: int = 3,
) -> list[ListedObject]:
    """Listing entries as the worker would leave them, shuffled (listing order is by name, not time)."""
    timestamps = timestamps or {}
    out = [ListedObject(manifest_name(job), 500, T0)]

    def ts(i: int) -> int:
        return timestamps.get(i, timestamp_of(i, fps))

    for i in processed:
        done_at = T0 + dt.timedelta(seconds=seconds_per_frame * (i + 1))
        out.append(ListedObject(result_name("frames", job, i, ts(i)), 1000, done_at))
        out.append(ListedObject(result_name("detections", job, i, ts(i)), 300, done_at))
    for i in errors:
        out.append(ListedObject(result_name("errors", job, i, ts(i)), 200, T0 + dt.timedelta(seconds=1)))
    for i in images_only:
        out.append(ListedObject(result_name("frames", job, i, ts(i)), 1000, T0))
    random.Random(seed).shuffle(out)
    return out


def order(timeline: Timeline) -> list[tuple[int, str]]:
    return [(s.frame_index, s.kind) for s in timeline.slots]


def test_frames_spread_over_shards_come_back_in_time_order() -> None:
    indices = list(range(40))
    assert len({shard_of(JOB, i) for i in indices}) > 4, "the test needs frames in several shards"
    listing = parse_listing(JOB, objects_for(indices))
    timeline = plan_timeline(listing, expected=40)
    assert order(timeline) == [(i, "frame") for i in indices]
    assert [s.timestamp_us for s in timeline.slots] == [timestamp_of(i, 10.0) for i in indices]
    assert listing.has_manifest and not listing.duplicates and not listing.unrecognised


def test_order_is_by_timestamp_then_index_not_by_index() -> None:
    # frame 2 carries an earlier timestamp than frame 1; frames 3 and 4 share a timestamp
    stamps = {0: 0, 1: 300_000, 2: 100_000, 3: 500_000, 4: 500_000}
    timeline = plan_timeline(parse_listing(JOB, objects_for([4, 3, 2, 1, 0], timestamps=stamps)), expected=5)
    assert [s.frame_index for s in timeline.slots] == [0, 2, 1, 3, 4]


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        (list(range(3, 10)), (0, 1, 2)),  # gap at the start
        ([0, 1, 2, 6, 7, 8, 9], (3, 4, 5)),  # gap in the middle
        (list(range(7)), (7, 8, 9)),  # gap at the end
    ],
)
def test_gaps_are_placed_where_the_frames_belong(present: list[int], missing: tuple[int, ...]) -> None:
    timeline = plan_timeline(parse_listing(JOB, objects_for(present)), expected=10)
    assert timeline.missing == missing
    assert [s.frame_index for s in timeline.slots] == list(range(10))
    assert {s.frame_index for s in timeline.slots if s.kind == "missing"} == set(missing)
    assert all(s.timestamp_us is None for s in timeline.slots if s.kind == "missing")


def test_error_records_are_slots_and_detections_win_over_an_error_record() -> None:
    objects = objects_for([0, 1, 3], errors=[2, 3])
    listing = parse_listing(JOB, objects)
    timeline = plan_timeline(listing, expected=4)
    assert order(timeline) == [(0, "frame"), (1, "frame"), (2, "error"), (3, "frame")]
    assert timeline.errors == (2,) and timeline.missing == ()
    assert [f.frame_index for f in listing.failed] == [2]


def test_image_without_detections_is_in_flight_and_counts_as_missing() -> None:
    listing = parse_listing(JOB, objects_for([0, 2], images_only=[1]))
    assert [f.frame_index for f in listing.in_flight] == [1]
    assert plan_timeline(listing, expected=3).missing == (1,)


def test_duplicate_index_under_two_timestamps_is_reported_and_the_complete_one_kept() -> None:
    objects = objects_for([0, 1, 2])
    stray = result_name("detections", JOB, 1, 999_000)  # detections only: less complete than the real one
    objects.append(ListedObject(stray, 10, T0))
    listing = parse_listing(JOB, objects)
    assert [d.frame_index for d in listing.duplicates] == [1]
    dup = listing.duplicates[0]
    assert dup.kept_timestamp_us == 100_000 and dup.other_timestamps_us == (999_000,)
    assert stray in dup.names
    timeline = plan_timeline(listing, expected=3)
    assert [s.frame_index for s in timeline.slots] == [0, 1, 2]
    assert timeline.duplicates == listing.duplicates


def test_unrecognised_names_and_payloads_are_set_aside() -> None:
    objects = objects_for([0])
    bad_shard = result_name("frames", JOB, 0, 0).replace(f"/{shard_of(JOB, 0)}/", "/z/")
    other_job = result_name("frames", "other", 5, 500_000)
    objects += [
        ListedObject(f"jobs/{JOB}/notes.txt"),
        ListedObject(bad_shard),
        ListedObject(other_job),
        ListedObject(result_name("payloads", JOB, 3, 300_000)),
    ]
    listing = parse_listing(JOB, objects)
    assert set(listing.unrecognised) == {f"jobs/{JOB}/notes.txt", bad_shard, other_job}
    assert listing.payloads == 1
    assert list(listing.frames) == [0]


def test_results_beyond_frames_published_are_reported() -> None:
    timeline = plan_timeline(parse_listing(JOB, objects_for([0, 1, 2, 3])), expected=3)
    assert timeline.unexpected == (3,)


def test_without_published_count_only_holes_below_the_highest_index_are_missing() -> None:
    timeline = plan_timeline(parse_listing(JOB, objects_for([0, 2, 5])), expected=None)
    assert timeline.missing == (1, 3, 4)
    assert len(timeline.slots) == 6


@pytest.mark.parametrize(
    ("indices", "text"),
    [
        ([], "none"),
        ([4], "4"),
        ([0, 1, 2, 5, 7, 8], "0-2, 5, 7-8"),
        ([9, 3, 4, 3], "3-4, 9"),
    ],
)
def test_format_ranges(indices: list[int], text: str) -> None:
    assert format_ranges(indices) == text


def test_format_ranges_summarises_long_lists() -> None:
    assert format_ranges(range(0, 20, 2), max_runs=3) == "0, 2, 4 … (+7 more runs, 10 indices in all)"
    assert to_ranges([1, 2, 3, 7]) == [(1, 3), (7, 7)]


def test_status_of_a_finished_job_with_errors_and_holes() -> None:
    manifest = synthetic_manifest(JOB, published=10, fps=10.0, width=320, height=240)
    listing = parse_listing(JOB, objects_for([0, 1, 2, 3, 4, 5, 6], errors=[7]))
    now = T0 + dt.timedelta(seconds=10)
    status = summarise_status(manifest, listing, now)
    assert (status.state, status.published, status.processed, status.errors) == ("complete", 10, 7, 1)
    assert status.missing == (8, 9) and status.remaining == 2 and not status.done
    # detections finished at 0.5 s intervals from T0+0.5 s; the error record at T0+1 s
    assert status.rate_fps == pytest.approx(7 / 3.0)  # 8 finished frames over 0.5 s … 3.5 s
    assert status.recent_rate_fps == pytest.approx(8 / 9.5)  # window shrinks to the job's age
    assert status.eta_s == pytest.approx(2 / (8 / 9.5))
    text = format_status(status)
    assert "missing    2: 8-9" in text and "published  10" in text


def test_status_of_a_running_job_says_published_is_unknown() -> None:
    manifest = synthetic_manifest(JOB, published=None, fps=10.0, width=320, height=240, state="running")
    status = summarise_status(manifest, parse_listing(JOB, objects_for([0, 1, 3])), T0 + dt.timedelta(seconds=5))
    assert status.published is None and status.seen == 4 and status.missing == (2,)
    assert status.eta_s is None and not status.done
    text = format_status(status)
    assert "unknown (producer still running; at least 4)" in text
    assert "eta        unknown until the producer finishes" in text


def test_status_is_done_when_every_published_frame_is_processed_or_failed() -> None:
    manifest = synthetic_manifest(JOB, published=3, fps=10.0, width=320, height=240)
    status = summarise_status(manifest, parse_listing(JOB, objects_for([0, 2], errors=[1])), T0)
    assert status.done and status.eta_s == 0.0 and status.to_dict()["missing"] == ""


def test_output_fps_prefers_sample_rate_then_source_rate_then_timestamps() -> None:
    import dataclasses

    manifest = synthetic_manifest(JOB, published=3, fps=25.0, width=320, height=240)
    timeline = plan_timeline(parse_listing(JOB, objects_for([0, 1, 2], fps=4.0)), expected=3)
    assert output_fps(manifest, timeline) == (25.0, "manifest source_fps")
    assert output_fps(dataclasses.replace(manifest, sample_fps=5.0), timeline) == (5.0, "manifest sample_fps")
    no_rate = dataclasses.replace(manifest, source_fps=None)
    assert output_fps(no_rate, timeline) == (4.0, "median timestamp gap")


def beating_job(heartbeat_at: dt.datetime, confirmed: int = 120, interval_s: float = 5.0):  # noqa: ANN201
    """A running job whose producer last wrote its manifest at ``heartbeat_at`` with ``confirmed`` frames confirmed."""
    import dataclasses

    running = synthetic_manifest(JOB, published=None, fps=10.0, width=320, height=240, state="running")
    running = dataclasses.replace(running, heartbeat_interval_s=interval_s)
    at = heartbeat_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return running.beat(confirmed, 0, timestamp_of(confirmed - 1, 10.0), at=at)


def test_a_silent_producer_is_stale_after_its_threshold() -> None:
    listing = parse_listing(JOB, objects_for([0, 1, 3]))
    manifest = beating_job(T0)
    fresh = summarise_status(manifest, listing, T0 + dt.timedelta(seconds=29))
    assert (fresh.stale, fresh.producer, fresh.stale_after_s, fresh.heartbeat_age_s) == (False, "running", 30.0, 29.0)
    assert fresh.at_least == 120 and fresh.confirmed == 120
    stale = summarise_status(manifest, listing, T0 + dt.timedelta(seconds=42.4))
    assert (stale.stale, stale.producer, stale.heartbeat_age_s) == (True, "stale", 42.4)
    assert not stale.done and stale.published is None
    flagged = summarise_status(manifest, listing, T0 + dt.timedelta(seconds=3), stale_after_s=2)
    assert (flagged.stale, flagged.stale_after_s) == (True, 2.0)
    assert summarise_status(beating_job(T0, interval_s=20), listing, T0 + dt.timedelta(seconds=42)).stale is False


def test_only_a_running_job_with_a_heartbeat_can_be_stale() -> None:
    listing = parse_listing(JOB, objects_for([0, 1, 2]))
    much_later = T0 + dt.timedelta(days=3)
    old_producer = synthetic_manifest(JOB, published=None, fps=10.0, width=320, height=240, state="running")
    assert summarise_status(old_producer, listing, much_later).stale is False  # no heartbeat recorded: unknown
    finished = beating_job(T0).finish("complete", frames_published=3)
    status = summarise_status(finished, listing, much_later, stale_after_s=1)
    assert (status.stale, status.producer, status.done, status.confirmed) == (False, "finished", True, 0)
    assert summarise_status(None, listing, much_later).producer == "none"


def test_status_text_and_json_of_a_stale_producer() -> None:
    status = summarise_status(beating_job(T0), parse_listing(JOB, objects_for([0, 1, 3])),
                              T0 + dt.timedelta(seconds=42.4))
    lines = format_status(status).splitlines()
    assert lines[:4] == [
        f"job        {JOB}",
        "state      running",
        "producer   stale: no heartbeat for 42 s (last at 2026-11-28T12:00:00.000000Z); "
        "120 frames confirmed by Pub/Sub",
        "published  unknown (producer stale; at least 120)",
    ]
    assert lines[-1] == ("eta        none: the producer is gone (a file or image-folder job continues with "
                         f"'python -m producer SOURCE --resume {JOB}')")
    assert status.silence_line() == "producer stale: no heartbeat for 42 s (last at 2026-11-28T12:00:00.000000Z)"
    data = status.to_dict()
    assert {k: data[k] for k in ("state", "producer", "stale", "heartbeat_at", "heartbeat_age_s", "stale_after_s",
                                 "frames_confirmed")} == {
        "state": "running", "producer": "stale", "stale": True, "heartbeat_at": "2026-11-28T12:00:00.000000Z",
        "heartbeat_age_s": 42.4, "stale_after_s": 30.0, "frames_confirmed": 120}


def test_status_text_of_a_beating_producer() -> None:
    status = summarise_status(beating_job(T0, confirmed=1), parse_listing(JOB, objects_for([0, 1, 3])),
                              T0 + dt.timedelta(seconds=2))
    lines = format_status(status).splitlines()
    assert lines[2:4] == ["producer   heartbeat 2 s ago; 1 frame confirmed by Pub/Sub",
                          "published  unknown (producer still running; at least 4)"]
