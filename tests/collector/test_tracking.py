"""Tracking and line counts over synthetic moving boxes: exact answers, gaps, sampling, per-minute buckets.

The scene (320x240, :class:`collector.synthetic.MovingBox`): a person walking right along the bottom, a
person walking left along the top, a car driving down on the right. ``door`` is a vertical line drawn
top to bottom at x = 160, ``road`` a horizontal one drawn left to right at y = 140 on the right.
"""

from __future__ import annotations

import pytest

from collector.lines import LineCounter, check_lines, parse_line
from collector.synthetic import MovingBox, boxes_at, timestamp_of
from collector.tracking import Analysis, FrameTracker, TrackerSettings

SCENE = (
    MovingBox("person", (20, 150, 50, 210), (40, 0)),   # right, crosses door (wholly across at 3.6 s)
    MovingBox("person", (270, 60, 300, 110), (-40, 0)),  # left, crosses door (3.5 s)
    MovingBox("car", (220, 60, 260, 90), (0, 20)),      # down, crosses road (4.0 s)
)
LINES = (parse_line("door:160,50,160,230"), parse_line("road:180,140,300,140"))


def run(indices, fps: float, lines=LINES, settings: TrackerSettings | None = None):  # noqa: ANN001, ANN201
    analysis = Analysis(True, lines, fps, "stream", settings)
    rows = []
    for index in indices:
        ts = timestamp_of(index, fps)
        result = analysis.frame(ts, boxes_at(SCENE, ts))
        rows.append((index, result.track_ids, [(c.line, c.direction, c.track_id) for c in result.crossings]))
    return analysis.summary(), rows


def test_every_object_gets_one_track_and_each_crossing_is_counted_once_in_its_direction() -> None:
    summary, rows = run(range(60), 10.0)
    assert rows[0][1] == [None, None, None]  # a track is confirmed on its second frame
    assert all(ids == [0, 1, 2] for _, ids, _ in rows[1:])
    assert [(i, c) for i, _, c in rows if c] == [
        (35, [("door", "out", 1)]),  # right to left across a line drawn top to bottom: out
        (36, [("door", "in", 0)]),   # left to right: in
        (40, [("road", "out", 2)]),  # downwards across a line drawn left to right: out
    ]
    assert summary["tracking"] == {"library": "trackers 2.6.1", "algorithm": "ByteTrack", "time": "timestamps",
                                   "frame_rate": 10.0, "lost_track_s": 1.0, "tracks": 3}
    assert summary["lines"] == {
        "door": {"line": [160.0, 50.0, 160.0, 230.0], "in": 1, "out": 1,
                 "per_minute": [{"minute": "0:00", "start_us": 0, "in": 1, "out": 1}]},
        "road": {"line": [180.0, 140.0, 300.0, 140.0], "in": 0, "out": 1,
                 "per_minute": [{"minute": "0:00", "start_us": 0, "in": 0, "out": 1}]},
    }


@pytest.mark.parametrize(("indices", "fps"), [
    ([i for i in range(60) if not 30 <= i < 38], 10.0),  # a 0.8 s hole across both door crossings
    ([i for i in range(60) if i % 7], 10.0),             # scattered holes
    (range(15), 2.5),                                    # the same scene sampled at 2.5 fps
    (range(20), 10.0 / 3),                               # ... at 3.33 fps
])
def test_gaps_and_sampling_give_the_same_tracks_and_counts(indices, fps: float) -> None:  # noqa: ANN001
    summary, rows = run(indices, fps)
    assert summary["tracking"]["tracks"] == 3
    assert all(ids == [0, 1, 2] for _, ids, _ in rows[1:])
    assert {name: (line["in"], line["out"]) for name, line in summary["lines"].items()} == {
        "door": (1, 1), "road": (0, 1)}


def test_time_not_frame_count_decides_when_a_lost_track_ends() -> None:
    """lost_track_s = 1: a 0.9 s hole keeps the walker's id; a 1.5 s hole ends the track (a new id), at any fps."""
    walker = (MovingBox("person", (20, 150, 50, 210), (10, 0)),)
    for fps in (10.0, 30.0):
        for hole_s, same in ((0.9, True), (1.5, False)):
            tracker = FrameTracker(fps, TrackerSettings(lost_track_s=1.0))
            stamps = [timestamp_of(i, fps) for i in range(int(fps * 4))]
            stamps = [t for t in stamps if not 1_000_000 < t < 1_000_000 + hole_s * 1_000_000]
            ids = [tracker.update(t, boxes_at(walker, t))[0] for t in stamps]
            assert (set(ids[1:]) == {0}) == same, (fps, hole_s, sorted(set(ids[1:]) - {None}))


def test_per_minute_buckets_by_timestamp() -> None:
    counter = LineCounter([parse_line("gate:100,0,100,200")], clock="stream")
    crossings = []
    for t, x in ((29, 50), (30, 150), (70, 150), (71, 50), (75, 50), (76, 150)):
        track = 1 if t < 60 else 2 if t < 74 else 3
        crossings += counter.update(t * 1_000_000, [(x, 50, x + 20, 80)], [track])
    assert [(c.direction, c.track_id, c.timestamp_us) for c in crossings] == [
        ("in", 1, 30_000_000), ("out", 2, 71_000_000), ("in", 3, 76_000_000)]
    assert counter.summary()["gate"]["per_minute"] == [
        {"minute": "0:00", "start_us": 0, "in": 1, "out": 0},
        {"minute": "0:01", "start_us": 60_000_000, "in": 1, "out": 1},
    ]
    live = LineCounter([parse_line("gate:100,0,100,200")], clock="wallclock")
    for t, x in ((1_795_867_199, 50), (1_795_867_200, 150)):
        live.update(t * 1_000_000, [(x, 50, x + 20, 80)], [7])
    assert live.summary()["gate"]["per_minute"] == [
        {"minute": "2026-11-28T12:00Z", "start_us": 1_795_867_200_000_000, "in": 1, "out": 0}]


def test_untracked_boxes_are_not_counted() -> None:
    counter = LineCounter([parse_line("gate:100,0,100,200")])
    for x in (50, 150, 50, 150):
        assert counter.update(0, [(x, 50, x + 20, 80)], [None]) == []
    assert counter.counts() == {"gate": (0, 0)}


@pytest.mark.parametrize(("text", "problem"), [
    ("door", "invalid line 'door': give NAME:x1,y1,x2,y2 in pixels of the frame (e.g. door:100,200,400,200)"),
    ("do or:1,2,3,4", "invalid line 'do or:1,2,3,4': the name must be 1-40 letters, digits, '_', '-' or '.'"),
    (":1,2,3,4", "invalid line ':1,2,3,4': the name must be 1-40 letters, digits, '_', '-' or '.'"),
    ("door:1,2,3", "invalid line 'door:1,2,3': give 4 coordinates x1,y1,x2,y2, got 3"),
    ("door:1,2,3,4,5", "invalid line 'door:1,2,3,4,5': give 4 coordinates x1,y1,x2,y2, got 5"),
    ("door:1,2,x,4", "invalid line 'door:1,2,x,4': 'x' is not a number"),
    ("door:1,2,,4", "invalid line 'door:1,2,,4': '' is not a number"),
    ("door:-1,2,3,4", "invalid line 'door:-1,2,3,4': coordinates are pixels, 0 or more, got '-1'"),
    ("door:1,2,inf,4", "invalid line 'door:1,2,inf,4': coordinates are pixels, 0 or more, got 'inf'"),
    ("door:5,5,5,5", "invalid line 'door:5,5,5,5': its two ends are the same point"),
])
def test_bad_lines_are_refused_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_line(text)
    assert str(info.value) == problem


def test_line_names_must_be_unique() -> None:
    lines = [parse_line("door:0,0,1,1"), parse_line("exit:0,0,1,1"), parse_line("door:2,2,3,3")]
    assert check_lines(lines) == "--line door is given twice; each line needs a name of its own"
    assert check_lines(lines[:2]) is None
