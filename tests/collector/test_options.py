"""``collector reassemble`` options against the storage emulator: --from/--to, CSV, gs:// output, --missing mark."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from collector.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from collector.plan import parse_listing, plan_timeline
from collector.reassemble import CSV_COLUMNS, select_range
from collector.store import JobStore
from collector.synthetic import read_counter, seed_job
from collector.timerange import parse_time, resolve_range
from collector.video import MARKER_BGR
from framecontract.clients import make_storage_client
from framecontract.settings import Settings
from tests.collector.helpers import decode_video, read_jsonl

LIVE_ORIGIN_US = 1_795_867_200_000_000  # 2026-11-28T12:00:00Z


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --- --from / --to -------------------------------------------------------------------------------------


def test_from_to_selects_a_half_open_range(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "clip", [i for i in range(30) if i != 10], fps=10.0)  # 10 (at 1.0 s) is missing
    out = tmp_path / "clip.mp4"
    code, _, err = run(capsys, "reassemble", "--job", "clip", "-o", str(out), "--from", "1", "--to", "0:02")
    assert code == EXIT_OK, err
    # 10 is in range by its estimated time (1.0 s); as the first slot it is held from the next frame
    assert decode_video(out).counters == [11, *range(11, 20)]
    lines = read_jsonl(tmp_path / "clip.detections.jsonl")
    assert [(x["frame_index"], x["status"]) for x in lines] == [(10, "missing"), *((i, "ok") for i in range(11, 20))]
    report = json.loads((tmp_path / "clip.report.json").read_text())
    assert report["time_range"] == {"text": "from 1 to 0:02", "start_us": 1_000_000, "end_us": 2_000_000,
                                    "origin_us": 0}  # fmt: skip
    assert (report["frames_selected"], report["frames_expected"], report["missing"]) == (10, 30, [10])
    assert "Reassembled job clip (complete) from 1 to 0:02: 10 video frames written to " in err
    assert "from 9 of the 10 frames in range (30 published)" in err


def test_to_and_from_at_the_same_time_split_without_overlap(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "split", range(20), fps=10.0)
    assert run(capsys, "reassemble", "--job", "split", "-o", str(tmp_path / "a.mp4"), "--to", "1.5")[0] == EXIT_OK
    assert run(capsys, "reassemble", "--job", "split", "-o", str(tmp_path / "b.mp4"), "--from", "1.5")[0] == EXIT_OK
    assert decode_video(tmp_path / "a.mp4").counters == list(range(15))
    assert decode_video(tmp_path / "b.mp4").counters == list(range(15, 20))


def test_live_jobs_take_offsets_from_the_first_frame_and_iso_times(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "cam", range(20), fps=10.0, origin_us=LIVE_ORIGIN_US)
    out = tmp_path / "cam.mp4"
    assert run(capsys, "reassemble", "--job", "cam", "-o", str(out), "--from", "0.5", "--to", "1")[0] == EXIT_OK
    assert decode_video(out).counters == [5, 6, 7, 8, 9]
    code, _, err = run(capsys, "reassemble", "--job", "cam", "-o", str(out),
                       "--from", "2026-11-28T12:00:01.2Z", "--to", "2026-11-28T13:00:01.4+01:00")  # fmt: skip
    assert code == EXIT_OK, err
    assert decode_video(out).counters == [12, 13]


def _whole_job_selection(store: JobStore, job_id: str, start: str | None, end: str | None) -> list[tuple[int, str]]:
    """What a reassembly of the range selects when the whole job is listed (the reference)."""
    manifest = store.require_manifest(job_id)
    timeline = plan_timeline(parse_listing(job_id, store.list_job(job_id)), manifest.frames_published)
    window = resolve_range(parse_time(start) if start else None, parse_time(end) if end else None, manifest.clock,
                           manifest.first_timestamp_us if manifest.clock == "wallclock" else 0)  # fmt: skip
    return [(s.frame_index, s.kind) for s in select_range(timeline, window, 2.0, job_id)]


@pytest.mark.parametrize(
    ("start", "end", "listed"),
    [
        ("100", "105", [90_000_000, 115_000_000]),  # the middle: holes inside and just outside the range
        ("190", None, [180_000_000, None]),  # to the end: the holes after the last frame count
        ("0:05", "0:12", [None, 22_000_000]),  # from the start: so do the ones before the first frame
    ],
)
def test_a_short_range_of_a_long_job_lists_only_that_range(
    bucket, capsys, tmp_path: Path, gcs_settings: Settings, start: str, end: str | None, listed: list[int | None]
) -> None:
    holes, errors = {0, 1, 199, 200, 205, 260, 398, 399}, {203: "frame data is not a decodable image"}
    seed_job(bucket, "long", [i for i in range(400) if i not in holes and i not in errors], fps=2.0, width=160,
             height=120, published=400, errors=errors)  # fmt: skip
    store = JobStore.from_settings(gcs_settings)
    out = tmp_path / "long.mp4"
    args = ["reassemble", "--job", "long", "-o", str(out), "--from", start, *(["--to", end] if end else [])]
    code, _, err = run(capsys, *args)
    assert code == EXIT_OK, err
    report = json.loads((tmp_path / "long.report.json").read_text())
    assert report["listed_range_us"] == listed
    statuses = [(x["frame_index"], x["status"]) for x in read_jsonl(tmp_path / "long.detections.jsonl")]
    reference = _whole_job_selection(store, "long", start, end)
    assert [index for index, _ in statuses] == [index for index, _ in reference]
    kinds = {"frame": "ok", "missing": "missing", "error": "error"}
    assert statuses == [(index, kinds[kind]) for index, kind in reference]
    assert report["missing"] == [index for index, kind in reference if kind == "missing"]
    assert len(decode_video(out).counters) == len(reference)


def test_a_short_range_with_no_frames_gets_the_whole_jobs_answer(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "gappy", range(200), fps=2.0, width=160, height=120, published=400)  # 100-200 s never came
    code, _, err = run(capsys, "reassemble", "--job", "gappy", "-o", str(tmp_path / "g.mp4"), "--from", "150", "--to",
                       "155")  # fmt: skip
    assert (code, err) == (
        EXIT_ERROR,
        "error: job 'gappy' has no processed frames from 150 to 155 (its processed frames are at 0 s to 99.5 s)\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "1m"], "collector reassemble: error: argument --from: invalid time '1m': give seconds (90, 12.5), "
                           "[HH:]MM:SS[.fff] (1:30, 01:02:03.5) or, for live jobs, an ISO 8601 time with a zone "
                           "(2026-11-28T12:00:05Z)"),
        (["--to", "0:99"], "collector reassemble: error: argument --to: invalid time '0:99': minutes and seconds "
                           "must be below 60"),
        (["--from", "20", "--to", "10"], "collector reassemble: error: --from 20 is not before --to 10 "
                                         "(the range is from <= t < to)"),
        (["--from", "5", "--to", "2026-11-28T12:00:05Z"], "collector reassemble: error: --from and --to must both "
                                                          "be offsets (seconds, [HH:]MM:SS) or both ISO 8601 times"),
    ],
)  # fmt: skip
def test_bad_ranges_are_usage_errors(bucket, capsys, tmp_path: Path, args: list[str], message: str) -> None:
    seed_job(bucket, "r", range(3))
    code, out, err = run(capsys, "reassemble", "--job", "r", "-o", str(tmp_path / "r.mp4"), *args)
    assert (code, out) == (EXIT_USAGE, "")
    assert err.splitlines()[-1] == message
    assert not (tmp_path / "r.mp4").exists()


def test_range_without_frames_and_date_on_a_stream_job_are_errors(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "short", range(30), fps=10.0)
    code, _, err = run(capsys, "reassemble", "--job", "short", "-o", str(tmp_path / "s.mp4"), "--from", "100")
    assert (code, err) == (
        EXIT_ERROR,
        "error: job 'short' has no processed frames from 100 (its processed frames are at 0 s to 2.9 s)\n",
    )
    code, _, err = run(capsys, "reassemble", "--job", "short", "-o", str(tmp_path / "s.mp4"),
                       "--from", "2026-11-28T12:00:05Z")  # fmt: skip
    assert (code, err) == (
        EXIT_ERROR,
        "error: '2026-11-28T12:00:05Z' is a date-time, but this job's timestamps are positions in the stream "
        "(clock 'stream'); give seconds or [HH:]MM:SS\n",
    )


# --- CSV ----------------------------------------------------------------------------------------------


def test_csv_has_one_row_per_detection_and_one_per_frame_without(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "tab", [0, 1, 3], errors={2: "frame data is not a decodable image"}, published=5)
    # frame 1 has no detections, frame 3 has two
    blob = next(b for b in bucket.list_blobs(prefix="jobs/tab/detections/") if b.name.endswith("-000000001.json"))
    blob.upload_from_string(json.dumps({**json.loads(blob.download_as_bytes()), "detections": []}))
    blob = next(b for b in bucket.list_blobs(prefix="jobs/tab/detections/") if b.name.endswith("-000000003.json"))
    record = json.loads(blob.download_as_bytes())
    record["detections"].append({"label": "dog", "score": 0.5, "box": [1.0, 2.0, 3.5, 4.0]})
    blob.upload_from_string(json.dumps(record))

    table = tmp_path / "d.csv"
    code, _, err = run(capsys, "reassemble", "--job", "tab", "-o", str(tmp_path / "t.mp4"), "--detections", str(table))
    assert code == EXIT_OK, err
    text = table.read_text()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["frame_index"], r["status"], r["detection"], r["label"], r["video_frame"]) for r in rows] == [
        ("0", "ok", "0", "person", "0"),
        ("1", "ok", "", "", "1"),
        ("2", "error", "", "", "2"),
        ("3", "ok", "0", "person", "3"),
        ("3", "ok", "1", "dog", "3"),
        ("4", "missing", "", "", "4"),
    ]
    assert rows[0] | {} == {
        "frame_index": "0", "timestamp_us": "0", "video_frame": "0", "status": "ok", "detection": "0",
        "label": "person", "score": "0.9", "x1": "10.0", "y1": "20.0", "x2": "50.0", "y2": "120.0", "error": "",
    }  # fmt: skip
    assert (rows[4]["score"], rows[4]["x1"], rows[4]["x2"]) == ("0.5", "1.0", "3.5")
    assert rows[2]["error"] == "frame data is not a decodable image"
    assert rows[5]["timestamp_us"] == ""
    assert json.loads((tmp_path / "t.report.json").read_text())["detections_format"] == "csv"


# --- gs:// output ----------------------------------------------------------------------------------------


def test_output_to_the_bucket(bucket, capsys, tmp_path: Path, gcs_settings: Settings, monkeypatch) -> None:
    seed_job(bucket, "up", range(6))
    client = make_storage_client(gcs_settings)
    results = client.create_bucket(f"{gcs_settings.bucket}-out")
    uri = f"gs://{results.name}/videos/up.mp4"
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "reassemble", "--job", "up", "-o", uri, "--detections",
                         f"gs://{results.name}/videos/up.csv")  # fmt: skip
    assert code == EXIT_OK, err
    assert out == uri + "\n"
    names = sorted(b.name for b in client.list_blobs(results.name))
    assert names == ["videos/up.csv", "videos/up.mp4", "videos/up.report.json"]
    assert results.get_blob("videos/up.mp4").content_type == "video/mp4"
    (tmp_path / "dl.mp4").write_bytes(results.blob("videos/up.mp4").download_as_bytes())
    assert decode_video(tmp_path / "dl.mp4").counters == list(range(6))
    report = json.loads(results.blob("videos/up.report.json").download_as_bytes())
    assert (report["video"], report["detections"]) == (uri, f"gs://{results.name}/videos/up.csv")
    assert results.blob("videos/up.csv").download_as_text().startswith(",".join(CSV_COLUMNS) + "\n")
    assert list(tmp_path.iterdir()) == [tmp_path / "dl.mp4"], "nothing is left behind locally"

    # again: the objects are overwritten (same names, new content)
    seed_job(bucket, "up", range(8))
    assert run(capsys, "reassemble", "--job", "up", "-o", uri)[0] == EXIT_OK
    (tmp_path / "dl.mp4").write_bytes(results.blob("videos/up.mp4").download_as_bytes())
    assert decode_video(tmp_path / "dl.mp4").counters == list(range(8))
    assert results.blob("videos/up.detections.jsonl").exists()


def test_output_to_the_bucket_errors(bucket, capsys, gcs_settings: Settings) -> None:
    seed_job(bucket, "up", range(2))
    jobs_uri = f"gs://{gcs_settings.bucket}/jobs/up/video.mp4"
    assert run(capsys, "reassemble", "--job", "up", "-o", jobs_uri)[1:] == ("", (
        f"error: refusing to write {jobs_uri}: jobs/ in the jobs bucket belongs to the producer and the workers; "
        "choose another path\n"
    ))  # fmt: skip
    code, _, err = run(capsys, "reassemble", "--job", "up", "-o", "gs://no-such-results/up.mp4")
    assert (code, err) == (EXIT_ERROR, "error: bucket 'no-such-results' does not exist\n")
    code, _, err = run(capsys, "reassemble", "--job", "up", "-o", "gs://Bad_Bucket/up.mp4")
    assert (code, err) == (
        EXIT_ERROR,
        "error: 'gs://Bad_Bucket/up.mp4' is not a gs:// object URI (gs://BUCKET/path/name)\n",
    )


def test_failed_upload_keeps_the_files(bucket, capsys, tmp_path: Path, gcs_settings: Settings, monkeypatch) -> None:
    seed_job(bucket, "up", range(4))
    client = make_storage_client(gcs_settings)
    results = client.create_bucket(f"{gcs_settings.bucket}-kept")
    gone = f"{gcs_settings.bucket}-gone"  # a video bucket that disappears between the check and the upload:
    monkeypatch.setattr("collector.cli.check_destinations", lambda store, outputs: None)  # skip the up-front check
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    uri = f"gs://{gone}/up.mp4"
    code, out, err = run(capsys, "reassemble", "--job", "up", "-o", uri, "--detections", f"gs://{results.name}/up.csv")
    scratch = next(tmp_path.glob("collector-*"))
    assert (code, out) == (EXIT_ERROR, "")
    assert err.startswith(f"error: cannot upload gs://{gone}/up.report.json: 404 ")  # the report goes beside the video
    assert err.endswith(
        f". Nothing is lost: uploaded gs://{results.name}/up.csv; the rest is kept here, upload it with: "
        f"gcloud storage cp {scratch / 'report.json'} gs://{gone}/up.report.json; "
        f"gcloud storage cp {scratch / 'video.mp4'} {uri}\n"
    )
    assert decode_video(scratch / "video.mp4").counters == list(range(4))
    assert json.loads((scratch / "report.json").read_text())["video"] == uri
    assert [b.name for b in client.list_blobs(results.name)] == ["up.csv"]


# --- --missing mark ---------------------------------------------------------------------------------------


def _banner_fraction(image: np.ndarray) -> float:
    """The largest share of marker-red pixels in any row of the middle third (1.0: a full-width red band)."""
    height = image.shape[0]
    middle = image[height // 3 : 2 * height // 3].astype(int)
    close = np.abs(middle - np.array(MARKER_BGR)).sum(axis=2) < 90
    return float(close.mean(axis=1).max())


def test_mark_draws_a_missing_banner_on_held_frames(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "marks", [1, 2, 4], errors={3: "bad"}, published=6, width=320, height=240)
    out = tmp_path / "m.mp4"
    code, _, err = run(capsys, "reassemble", "--job", "marks", "-o", str(out), "--missing", "mark")
    assert code == EXIT_OK, err
    with av.open(str(out)) as container:
        images = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    counters = [read_counter(img) for img in images]
    banners = [_banner_fraction(img) for img in images]
    # 0 (start, shows frame 1), 3 (error, shows 2) and 5 (end, shows 4) are held and marked
    assert counters == [1, 1, 2, 2, 4, 4]
    assert [b > 0.95 for b in banners] == [True, False, False, True, False, True], banners
    assert all(b < 0.2 for b, marked in zip(banners, [1, 0, 0, 1, 0, 1], strict=True) if not marked)
    # the banner carries white text
    assert (images[3][images[3].shape[0] // 2 - 20 : images[3].shape[0] // 2 + 20] > 200).all(axis=2).sum() > 100
    assert "2 missing (0, 5) held from the previous frame and marked MISSING." in err
    assert "1 error record (3: bad) held from the previous frame and marked MISSING." in err
    lines = read_jsonl(tmp_path / "m.detections.jsonl")
    assert [x["video_frame"] for x in lines] == list(range(6))
