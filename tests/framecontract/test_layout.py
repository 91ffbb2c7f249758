import random
from collections import Counter

import pytest

from framecontract.layout import (
    SHARDS,
    frame_objects,
    frame_stem,
    gs_uri,
    job_prefix,
    manifest_name,
    parse_gs_uri,
    parse_result_name,
    result_name,
    shard_of,
    time_window_listings,
)


def test_names_are_deterministic_and_inside_the_job_prefix() -> None:
    a = frame_objects("demo", 7, 700_000)
    b = frame_objects("demo", 7, 700_000)
    assert a == b
    for name in (a.image, a.detections, a.error, a.payload):
        assert name.startswith("jobs/demo/")
    assert a.image == "jobs/demo/frames/4/00000000000000700000-000000007.jpg"
    assert a.detections.endswith(".json") and "/detections/" in a.detections
    assert manifest_name("demo") == "jobs/demo/manifest.json"


def test_job_prefix_refuses_traversal() -> None:
    with pytest.raises(ValueError):
        job_prefix("../other")


def test_stem_sorts_by_timestamp_then_index() -> None:
    stems = [frame_stem(ts, i) for ts, i in [(10, 2), (9, 5), (10, 1), (1_800_000_000_000_000, 0)]]
    expected = [frame_stem(9, 5), frame_stem(10, 1), frame_stem(10, 2), frame_stem(1_800_000_000_000_000, 0)]
    assert sorted(stems) == expected
    with pytest.raises(ValueError):
        frame_stem(-1, 0)


def test_shards_spread_sequential_frames() -> None:
    counts = Counter(shard_of("demo", i) for i in range(1600))
    assert set(counts) == set(SHARDS)
    assert max(counts.values()) < 2 * 100  # roughly uniform: 100 expected per shard


def test_parse_round_trips_every_kind() -> None:
    rng = random.Random(1)
    for _ in range(200):
        job, idx, ts = "job-" + str(rng.randrange(99)), rng.randrange(10**6), rng.randrange(10**16)
        for kind in ("frames", "detections", "errors", "payloads"):
            parsed = parse_result_name(result_name(kind, job, idx, ts))
            assert parsed is not None
            assert (parsed.kind, parsed.job_id, parsed.frame_index, parsed.timestamp_us) == (kind, job, idx, ts)


@pytest.mark.parametrize(
    "name",
    [
        "jobs/demo/manifest.json",
        "jobs/demo/frames/4/00000000000000700000-000000007.json",  # wrong suffix for the kind
        "jobs/demo/frames/0/00000000000000700000-000000007.jpg",  # wrong shard for the index
        "jobs/demo/frames/4/700000-7.jpg",
        "other/demo/frames/4/00000000000000700000-000000007.jpg",
    ],
)
def test_parse_rejects_non_results(name: str) -> None:
    assert parse_result_name(name) is None


def test_gs_uris() -> None:
    assert gs_uri("frames", "jobs/a/x.jpg") == "gs://frames/jobs/a/x.jpg"
    assert parse_gs_uri("gs://frames/jobs/a/x.jpg") == ("frames", "jobs/a/x.jpg")
    with pytest.raises(ValueError, match="not a gs:// object URI"):
        parse_gs_uri("s3://frames/x")


@pytest.mark.parametrize(("start_us", "end_us"), [(1_000_000, 2_000_000), (None, 1_500_000), (2_500_000, None),
                                                  (None, None), (0, 1)])  # fmt: skip
def test_time_window_listings_select_exactly_the_timestamps_in_range(start_us: int | None, end_us: int | None) -> None:
    rng = random.Random(5)
    names = [result_name(kind, "win", index, rng.choice([0, 1, 999_999, 1_000_000, 1_500_000, 2_000_000, 2_000_001,
                                                          10**12]))  # fmt: skip
             for index in range(300) for kind in ("frames", "detections", "errors")]
    listings = time_window_listings("win", ("frames", "detections", "errors"), start_us, end_us)
    assert len(listings) == 3 * len(SHARDS)
    listed = [n for n in names for prefix, first, last in listings
              if n.startswith(prefix) and (first is None or n >= first) and (last is None or n < last)]  # fmt: skip
    in_range = [n for n in names if (start_us is None or parse_result_name(n).timestamp_us >= start_us)
                and (end_us is None or parse_result_name(n).timestamp_us < end_us)]  # fmt: skip
    assert sorted(listed) == sorted(in_range)
