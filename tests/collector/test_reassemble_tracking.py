"""``collector reassemble --track --line``: track ids in the JSONL and CSV, counts in the report, drawn on the video.

The job is written in shuffled order with holes; the answer must be the one a single process gives by tracking
the same detections in timestamp order (:class:`collector.tracking.Analysis` run directly).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av

from collector.cli import main
from collector.synthetic import boxes_at, seed_job, timestamp_of
from collector.tracking import Analysis
from tests.collector.helpers import decode_video, read_jsonl
from tests.collector.test_tracking import LINES, SCENE

PRESENT = [i for i in range(60) if i not in (3, 30, 31, 32)]


def sequential(indices: list[int]) -> tuple[dict[int, list[int | None]], dict]:
    analysis = Analysis(True, LINES, 10.0, "stream")
    ids = {}
    for index in indices:
        ts = timestamp_of(index, 10.0)
        ids[index] = analysis.frame(ts, boxes_at(SCENE, ts)).track_ids
    return ids, analysis.summary()


def test_reassemble_tracks_counts_and_draws(bucket, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    seed_job(bucket, "walk", PRESENT, published=60, boxes=SCENE, shuffle_seed=11)
    out = tmp_path / "walk.mp4"
    code = main(["reassemble", "--job", "walk", "-o", str(out), "--line", "door:160,50,160,230",
                 "--line", "road:180,140,300,140", "--missing", "skip"])
    _, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert "Tracking: 3 tracks (ByteTrack, by timestamp). Line door: in 1, out 1. Line road: in 0, out 1." in stderr

    expected_ids, expected_summary = sequential(PRESENT)
    lines = read_jsonl(tmp_path / "walk.detections.jsonl")
    assert {x["frame_index"]: [d["track_id"] for d in x["detections"]] for x in lines if x["status"] == "ok"} == \
        expected_ids
    assert [(x["frame_index"], x["crossings"]) for x in lines if x.get("crossings")] == [
        (35, [{"line": "door", "direction": "out", "track_id": 1}]),
        (36, [{"line": "door", "direction": "in", "track_id": 0}]),
        (40, [{"line": "road", "direction": "out", "track_id": 2}]),
    ]
    report = json.loads((tmp_path / "walk.report.json").read_text())
    assert report["lines"] == expected_summary["lines"] and report["tracking"] == expected_summary["tracking"]
    assert report["missing"] == [3, 30, 31, 32]

    assert decode_video(out).counters == PRESENT  # overlays leave the frame counters readable
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    b, g, r = (int(v) for v in frame[100, 160])  # on the door line: amber
    assert b < 100 and g > 150 and r > 200, (b, g, r)


def test_csv_gets_a_track_id_column(bucket, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    seed_job(bucket, "walk-csv", range(5), boxes=SCENE)
    assert main(["reassemble", "--job", "walk-csv", "-o", str(tmp_path / "w.mp4"), "--track",
                 "--detections", str(tmp_path / "w.csv")]) == 0
    capsys.readouterr()
    rows = list(csv.reader((tmp_path / "w.csv").read_text().splitlines()))
    assert rows[0][-1] == "track_id" and len(rows[0]) == 13
    assert [(r[0], r[4], r[-1]) for r in rows[1:4]] == [("0", "0", ""), ("0", "1", ""), ("0", "2", "")]
    assert [(r[0], r[4], r[-1]) for r in rows[4:7]] == [("1", "0", "0"), ("1", "1", "1"), ("1", "2", "2")]
    report = json.loads((tmp_path / "w.report.json").read_text())
    assert report["tracking"]["tracks"] == 3 and report["lines"] is None


def test_without_track_nothing_changes(bucket, capsys, tmp_path: Path) -> None:  # noqa: ANN001
    seed_job(bucket, "plain", range(3), boxes=SCENE)
    assert main(["reassemble", "--job", "plain", "-o", str(tmp_path / "p.mp4"), "--detections",
                 str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == (
        "frame_index,timestamp_us,video_frame,status,detection,label,score,x1,y1,x2,y2,error")
    report = json.loads((tmp_path / "p.report.json").read_text())
    assert report["tracking"] is None and report["lines"] is None
