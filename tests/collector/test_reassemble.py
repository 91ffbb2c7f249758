"""Reassembly against the storage emulator: decode the MP4 and check every frame by its counter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.errors import CollectorError
from collector.reassemble import ReassembleOptions, ordered_window, prepare_outputs, reassemble, summary_paragraph
from collector.store import JobStore
from collector.synthetic import seed_job, synthetic_jpeg
from framecontract.clients import make_storage_client
from framecontract.layout import result_name
from framecontract.settings import Settings
from tests.collector.helpers import decode_video, read_jsonl

# Present frames, holes at the start (0), in the middle (4-5), an error record (8) and at the end (11).
GAPPY_PRESENT = [1, 2, 3, 6, 7, 9, 10]
GAPPY_ERRORS = {8: "frame data is not a decodable image"}
GAPPY_PUBLISHED = 12


@pytest.fixture
def store(gcs_settings: Settings) -> JobStore:
    return JobStore.from_settings(gcs_settings)


@pytest.fixture
def bucket(gcs_settings: Settings):  # noqa: ANN201 - a google.cloud.storage.Bucket
    return make_storage_client(gcs_settings).bucket(gcs_settings.bucket)


def test_complete_job_is_reassembled_in_order(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "whole", range(30), fps=12.5, width=320, height=240)
    outputs = prepare_outputs(tmp_path / "out" / "whole.mp4")
    report = reassemble(store, ReassembleOptions("whole", workers=4, window=5), outputs)

    video = decode_video(outputs.video)
    assert video.counters == list(range(30))
    assert (video.codec, video.pix_fmt, video.width, video.height) == ("h264", "yuv420p", 320, 240)
    assert video.fps == pytest.approx(12.5)

    lines = read_jsonl(outputs.detections)
    assert [line["frame_index"] for line in lines] == list(range(30))
    assert [line["video_frame"] for line in lines] == list(range(30))
    assert lines[7] == {
        "frame_index": 7,
        "timestamp_us": 560_000,
        "status": "ok",
        "video_frame": 7,
        "detections": [{"label": "person", "score": 0.9, "box": [17.0, 20.0, 57.0, 120.0]}],
        "width": 320,
        "height": 240,
        "model": "synthetic",
        "image": result_name("frames", "whole", 7, 560_000),
    }

    saved = json.loads(outputs.report.read_text())
    assert outputs.report == tmp_path / "out" / "whole.report.json"
    assert saved["frames_written"] == saved["frames_from_results"] == saved["frames_expected"] == 30
    assert saved["missing"] == [] and saved["errors"] == [] and saved["duplicates"] == []
    assert saved["codec"] == "libx264" and saved["fps_source"] == "manifest source_fps"
    assert report.frames_written == 30
    assert not list((tmp_path / "out").glob(".*.part")), "temporary files must be gone"


def test_hold_repeats_the_previous_frame_over_holes(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "gappy", GAPPY_PRESENT, errors=GAPPY_ERRORS, published=GAPPY_PUBLISHED)
    outputs = prepare_outputs(tmp_path / "hold.mp4")
    report = reassemble(store, ReassembleOptions("gappy", missing="hold"), outputs)

    # 0 (start) shows the first frame that exists; 4-5, 8 and 11 repeat the frame before them
    assert decode_video(outputs.video).counters == [1, 1, 2, 3, 3, 3, 6, 7, 7, 9, 10, 10]
    assert (report.frames_written, report.frames_from_results, report.frames_held) == (12, 7, 5)
    saved = json.loads(outputs.report.read_text())
    assert saved["missing"] == [0, 4, 5, 11] and saved["missing_ranges"] == "0, 4-5, 11"
    assert saved["errors"] == [
        {"frame_index": 8, "timestamp_us": 800_000, "error_class": "permanent", "reason": GAPPY_ERRORS[8]}
    ]
    lines = read_jsonl(outputs.detections)
    assert [(x["frame_index"], x["status"], x["video_frame"]) for x in lines] == [
        (0, "missing", 0), (1, "ok", 1), (2, "ok", 2), (3, "ok", 3), (4, "missing", 4), (5, "missing", 5),
        (6, "ok", 6), (7, "ok", 7), (8, "error", 8), (9, "ok", 9), (10, "ok", 10), (11, "missing", 11),
    ]  # fmt: skip
    assert lines[8]["error"] == GAPPY_ERRORS[8] and lines[8]["detections"] is None
    summary = summary_paragraph(report)
    assert "4 missing (0, 4-5, 11) held from the previous frame." in summary
    assert "1 error record (8: frame data is not a decodable image)" in summary


def test_skip_leaves_holes_out(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "gappy", GAPPY_PRESENT, errors=GAPPY_ERRORS, published=GAPPY_PUBLISHED)
    outputs = prepare_outputs(tmp_path / "skip.mp4")
    report = reassemble(store, ReassembleOptions("gappy", missing="skip"), outputs)

    assert decode_video(outputs.video).counters == GAPPY_PRESENT
    assert (report.frames_written, report.frames_skipped, report.frames_held) == (7, 5, 0)
    lines = read_jsonl(outputs.detections)
    assert len(lines) == GAPPY_PUBLISHED
    assert [x["video_frame"] for x in lines if x["status"] == "ok"] == list(range(7))
    assert all(x["video_frame"] is None for x in lines if x["status"] != "ok")
    assert json.loads(outputs.report.read_text())["missing"] == [0, 4, 5, 11]


def test_running_job_needs_partial_and_then_reassembles_what_exists(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "live", [0, 1, 3], state="running")
    outputs = prepare_outputs(tmp_path / "live.mp4")
    with pytest.raises(CollectorError, match="job 'live' is still running"):
        reassemble(store, ReassembleOptions("live"), outputs)
    assert not outputs.video.exists()

    report = reassemble(store, ReassembleOptions("live", partial=True), outputs)
    assert decode_video(outputs.video).counters == [0, 1, 1, 3]
    assert report.partial and report.frames_expected is None and report.missing == [2]


def test_duplicates_are_detected_and_reported(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "dup", range(5))
    # frame 2 again under another timestamp (a producer bug: cannot happen by design)
    bucket.blob(result_name("frames", "dup", 2, 250_000)).upload_from_string(encode_jpeg_counter(2))
    bucket.blob(result_name("detections", "dup", 2, 250_000)).upload_from_string("{}")
    outputs = prepare_outputs(tmp_path / "dup.mp4")
    report = reassemble(store, ReassembleOptions("dup"), outputs)

    assert decode_video(outputs.video).counters == [0, 1, 2, 3, 4]
    assert [(d["frame_index"], d["kept_timestamp_us"], d["other_timestamps_us"]) for d in report.duplicates] == [
        (2, 200_000, [250_000])
    ]
    assert "1 duplicate frame indices found" in summary_paragraph(report)


def test_unreadable_jpeg_is_held_and_reported(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "corrupt", range(4))
    bucket.blob(result_name("frames", "corrupt", 2, 200_000)).upload_from_string(b"not a jpeg")
    outputs = prepare_outputs(tmp_path / "corrupt.mp4")
    report = reassemble(store, ReassembleOptions("corrupt"), outputs)
    assert decode_video(outputs.video).counters == [0, 1, 1, 3]
    assert report.unreadable == [{"frame_index": 2, "reason": "annotated JPEG cannot be decoded"}]


def test_job_with_no_processed_frames_is_refused(store: JobStore, bucket, tmp_path: Path) -> None:
    seed_job(bucket, "empty", [], errors={0: "bad", 1: "bad"}, published=3)
    with pytest.raises(CollectorError) as info:
        reassemble(store, ReassembleOptions("empty"), prepare_outputs(tmp_path / "e.mp4"))
    assert str(info.value) == "job 'empty' has no processed frames to reassemble (2 error records, 1 missing)"


def test_prepare_outputs_refuses_an_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CollectorError) as info:
        prepare_outputs(blocker / "sub" / "out.mp4")
    assert str(info.value) == f"cannot write to output directory '{blocker / 'sub'}': '{blocker}' is not a directory"


def test_ordered_window_keeps_order_and_bounds_what_is_in_flight() -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    in_flight, peak, lock = 0, 0, threading.Lock()

    def work(i: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.002 * (i % 3))  # later items often finish first
        return i

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = []
        for value in ordered_window(pool, work, range(40), window=6):
            results.append(value)
            with lock:
                in_flight -= 1
    assert results == list(range(40))
    assert peak <= 6


def encode_jpeg_counter(index: int) -> bytes:
    from collector.synthetic import counter_frame

    return synthetic_jpeg(counter_frame(index, 320, 240))


@pytest.mark.parametrize(
    ("bad_record", "reason"),
    [
        (b'{"schema": "1", "job_id": "bad", "frame_index": "three"}',
         "result unreadable: detections record: field 'frame_index' must be an integer >= 0, got \"three\""),
        (b"\xff\xfe not utf-8 \xff", "result unreadable: detections record is not UTF-8 text"),
        (b"[" * 100_000, "result unreadable: detections record is nested too deeply to be one"),
        (None, "result unreadable: detections record names another frame (bad #5 at 500000 µs)"),
    ],
)
def test_one_bad_detections_object_is_one_unreadable_frame(store: JobStore, bucket, tmp_path: Path,
                                                           bad_record: bytes | None, reason: str) -> None:
    from collector.synthetic import detections_record

    seed_job(bucket, "bad", range(6), fps=10.0)
    if bad_record is None:  # a valid record, written under frame 3's name (a pre-created result)
        bad_record = detections_record("bad", 5, 500_000, 320, 240).to_json().encode()
    bucket.blob(result_name("detections", "bad", 3, 300_000)).upload_from_string(bad_record)
    outputs = prepare_outputs(tmp_path / "bad.mp4")
    report = reassemble(store, ReassembleOptions("bad", workers=2, window=4), outputs)
    assert report.unreadable == [{"frame_index": 3, "reason": reason}]
    assert report.frames_from_results == 5 and report.frames_written == 6  # held over the unreadable one
    lines = read_jsonl(outputs.detections)
    assert [(line["frame_index"], line["status"]) for line in lines] == [
        (0, "ok"), (1, "ok"), (2, "ok"), (3, "unreadable"), (4, "ok"), (5, "ok")]
    assert lines[3]["error"] == reason
