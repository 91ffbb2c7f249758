"""``collector follow`` against the storage emulator: a job written while it is followed, the live page over real
HTTP, Ctrl-C, the new-results feed, and the exact errors of its options.

Nothing here waits on the clock for an outcome: the writer threads wait for what ``follow`` has written (a
condition), and ``follow`` itself ends when the job is done; the only timeouts are guards against a hang.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from collector.cli import main
from collector.feed import FolderPage, NewResult, ResultFeed, take_up_to_frontier
from collector.follow import FollowOptions, FollowReport, follow, summary_line
from collector.live_page import BOUNDARY
from collector.store import JobStore
from collector.synthetic import read_counter, seed_job, synthetic_manifest, timestamp_of, write_frame
from framecontract.layout import manifest_name
from framecontract.settings import Settings
from tests.collector.test_tracking import LINES, SCENE

GUARD_S = 120.0
"""Longest any condition is waited for before the test fails (a hang guard, not a speed assertion)."""
REPO = Path(__file__).resolve().parents[2]


class LineSink:
    """What ``follow`` writes, parsed line by line, with a condition to wait on."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self._buffer = ""
        self.cond = threading.Condition()

    def write(self, text: str) -> int:
        with self.cond:
            self._buffer += text
            *complete, self._buffer = self._buffer.split("\n")
            self.lines += [json.loads(line) for line in complete]
            self.cond.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], what: str) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.lines), timeout=GUARD_S):
                raise AssertionError(f"follow never wrote {what}; it wrote {self.lines[-3:]}")


def put_manifest(bucket, job_id: str, published: int | None, fps: float = 10.0) -> None:  # noqa: ANN001
    state = "running" if published is None else "complete"
    manifest = synthetic_manifest(job_id, published, fps, 320, 240, state=state)
    bucket.blob(manifest_name(job_id)).upload_from_string(manifest.to_json(), content_type="application/json")


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # surfaced by the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def joined(thread: threading.Thread, box: dict[str, Any]) -> Any:
    thread.join(GUARD_S)
    assert not thread.is_alive(), "hung"
    if "error" in box:
        raise box["error"]
    return box.get("result")


@pytest.fixture
def store(gcs_settings: Settings) -> JobStore:
    return JobStore.from_settings(gcs_settings)


def test_follow_a_job_written_out_of_order_while_followed(store: JobStore, bucket) -> None:  # noqa: ANN001
    """A thread writes 40 frames in shuffled blocks; 7 and 23 never come in time, 7 comes after it was given up,
    30 fails. Every frame is written once, in order; 7 and 23 as missing; 7's result is late, logged, not written."""
    job, missing, late, failed = "live-shuffle", {7, 23}, 7, 30
    put_manifest(bucket, job, None)
    sink, log = LineSink(), LineSink()
    log.write = _text_log(log)  # type: ignore[method-assign]
    rng = random.Random(3)

    def writer() -> None:
        for start in range(0, 40, 8):
            block = [i for i in range(start, start + 8) if i not in missing]
            rng.shuffle(block)
            for index in block:
                write_frame(bucket, job, index, timestamp_of(index, 10.0), boxes=SCENE,
                            error="frame data is not a decodable image" if index == failed else None)
            if start == 8:  # frame 7, once follow has given it up
                sink.wait_for(lambda lines: any(x["frame_index"] == late for x in lines), "frame 7")
                write_frame(bucket, job, late, timestamp_of(late, 10.0), boxes=SCENE)
            sink.wait_for(lambda lines, s=start: any(x["frame_index"] >= s for x in lines), f"frame {start}")
        put_manifest(bucket, job, 40)

    options = FollowOptions(job, max_delay_s=2.0, poll_s=0.1, track=True, lines=LINES)
    follower, result = run_in_thread(lambda: follow(store, options, out=sink, log=log))
    writing, written = run_in_thread(writer)
    joined(writing, written)
    report: FollowReport = joined(follower, result)

    assert [x["frame_index"] for x in sink.lines] == list(range(40))
    statuses = {x["frame_index"]: x["status"] for x in sink.lines}
    assert {i for i, s in statuses.items() if s == "missing"} == missing
    assert {i for i, s in statuses.items() if s == "error"} == {failed}
    stamps = [x["timestamp_us"] for x in sink.lines if x["status"] != "missing"]
    assert stamps == sorted(set(stamps))
    assert {k: v for k, v in sink.lines[7].items() if k != "reason"} == {
        "frame_index": 7, "timestamp_us": None, "status": "missing"}
    assert sink.lines[7]["reason"].startswith("timed out after ")
    assert sink.lines[30]["error"] == "frame data is not a decodable image"
    assert all(d["track_id"] in (0, 1, 2) for x in sink.lines[1:] if x["status"] == "ok" for d in x["detections"])
    assert (report.done, report.emitted, report.errors, report.missing, report.late) == (True, 37, 1, 2, 1)
    assert report.missing_runs == [(7, 7), (23, 23)]
    assert report.late_first == [{"frame_index": 7, "timestamp_us": 700_000, "reason": "after its slot was given up"}]
    assert log.text == "late: frame 7 (timestamp 700000 µs): after its slot was given up; not emitted\n"
    assert {n: (line["in"], line["out"]) for n, line in report.analysis["lines"].items()} == {
        "door": (1, 1), "road": (0, 0)}  # the car reaches the road at 4.0 s, after these 40 frames
    assert summary_line(report) == ("job live-shuffle: 37 frames in order, 2 missing (7, 23), 1 late, 1 errors; "
                                    "line door: in 1 out 1; line road: in 0 out 0; 3 tracks; done")


def _text_log(sink: LineSink) -> Callable[[str], int]:
    sink.text = ""  # type: ignore[attr-defined]

    def write(text: str) -> int:
        with sink.cond:
            sink.text += text  # type: ignore[attr-defined]
            sink.cond.notify_all()
        return len(text)

    return write


def test_following_a_finished_job_gives_what_reassemble_gives(store: JobStore, bucket, capsys,  # noqa: ANN001
                                                              tmp_path: Path) -> None:
    """Same frames, same order, same track ids and counts: follow (catching up) and reassemble agree."""
    seed_job(bucket, "done", [i for i in range(40) if i != 5], published=40, boxes=SCENE)
    sink = LineSink()
    report = follow(store, FollowOptions("done", max_delay_s=0.5, poll_s=0.05, track=True, lines=LINES), out=sink,
                    log=sys.stderr)
    assert report.done and [x["frame_index"] for x in sink.lines] == list(range(40))

    code = main(["reassemble", "--job", "done", "-o", str(tmp_path / "done.mp4"), "--line", "door:160,50,160,230",
                 "--line", "road:180,140,300,140"])
    capsys.readouterr()
    assert code == 0
    reassembled = [json.loads(x) for x in (tmp_path / "done.detections.jsonl").read_text().splitlines()]
    assert [(x["frame_index"], x["status"], x["detections"], x.get("crossings")) for x in reassembled] == [
        (x["frame_index"], x["status"], x.get("detections"), x.get("crossings")) for x in sink.lines]
    saved = json.loads((tmp_path / "done.report.json").read_text())
    assert saved["lines"] == report.analysis["lines"] and saved["tracking"] == report.analysis["tracking"]


class MjpegReader:
    """The parts of a ``multipart/x-mixed-replace`` body as the page sends them: ``--frame``, headers, the JPEG up to
    the next boundary (no ``Content-Length``: the next part's head goes out right after each JPEG)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.buffer = stream, b""
        assert self._until(b"\r\n") == f"--{BOUNDARY}".encode()

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.stream.read1(1 << 16)
            assert chunk, f"the stream ended before {marker!r}"
            self.buffer += chunk
        found, self.buffer = self.buffer.split(marker, 1)
        return found

    def part(self) -> bytes:
        assert self._until(b"\r\n\r\n") == b"Content-Type: image/jpeg"
        return self._until(f"\r\n--{BOUNDARY}\r\n".encode())

    def rest(self) -> bytes:
        """What is left once the stream has ended."""
        return self.buffer + self.stream.read()


def test_the_live_page_streams_mjpeg_over_http(store: JobStore, bucket) -> None:  # noqa: ANN001
    job = "live-page"
    put_manifest(bucket, job, None)
    served: dict[str, str] = {}
    ready = threading.Event()

    def on_serving(url: str) -> None:
        served["url"] = url
        ready.set()

    options = FollowOptions(job, max_delay_s=1.0, poll_s=0.1, lines=LINES, track=True, serve=("127.0.0.1", 0))
    sink = LineSink()
    follower, result = run_in_thread(lambda: follow(store, options, out=sink, log=sys.stderr, on_serving=on_serving))
    assert ready.wait(GUARD_S)
    url = served["url"]
    assert url.startswith("http://127.0.0.1:")

    page = urllib.request.urlopen(url, timeout=GUARD_S).read().decode()
    assert '<img id="stream" src="/stream.mjpg"' in page and "job live-page" in page
    stream = urllib.request.urlopen(url + "stream.mjpg", timeout=GUARD_S)
    assert stream.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    parts = MjpegReader(stream)

    counters = []
    for block in range(3):
        for index in range(block * 5, block * 5 + 5):
            write_frame(bucket, job, index, timestamp_of(index, 10.0), boxes=SCENE)
        image = cv2.imdecode(np.frombuffer(parts.part(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        counters.append(read_counter(image))
        while counters[-1] < block * 5 + 4:  # the page shows the latest frame: read until this block's last
            counters.append(read_counter(cv2.imdecode(np.frombuffer(parts.part(), np.uint8), cv2.IMREAD_COLOR)))
    assert counters == sorted(set(counters)) and len(counters) >= 3
    line_pixel = image[140, 230]  # on the road line, drawn amber (B low, G and R high)
    assert line_pixel[0] < 100 and line_pixel[1] > 150 and line_pixel[2] > 200, line_pixel

    stats = json.loads(urllib.request.urlopen(url + "stats.json", timeout=GUARD_S).read())
    assert stats["emitted"] == 15 and stats["lines"] == {"door": {"in": 0, "out": 0}, "road": {"in": 0, "out": 0}}
    assert stats["delay_s"] is None and stats["state"] == "running"

    put_manifest(bucket, job, 15)
    report = joined(follower, result)
    assert report.done and report.emitted == 15
    assert parts.rest() == b"Content-Type: image/jpeg\r\n\r\n"  # the head of a part that never comes; the end


def test_ctrl_c_leaves_cleanly(bucket, tmp_path: Path) -> None:  # noqa: ANN001
    seed_job(bucket, "endless", range(5), state="running")
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "follow", "--job", "endless", "--poll", "0.1", "--report", str(report)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )
    try:
        lines = [json.loads(proc.stdout.readline()) for _ in range(5)]  # it is following
        assert [x["frame_index"] for x in lines] == list(range(5))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=GUARD_S)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "job endless: 5 frames in order, 0 missing, 0 late, 0 errors; interrupted"
    saved = json.loads(report.read_text())
    assert (saved["interrupted"], saved["done"], saved["emitted"]) == (True, False, 5)


def test_the_feed_lists_from_its_lower_bound_and_hands_each_result_on_once(store: JobStore, bucket) -> None:  # noqa: ANN001
    seed_job(bucket, "feed", [i for i in range(60) if i not in (9, 20)], errors={9: "bad"})
    feed = ResultFeed(store, "feed", page_size=3)
    got, since = [], None
    while batch := feed.poll(since):
        got += batch
        since = batch[-1].timestamp_us - 500_000  # as follow does: behind the last frame handed on
    keys = [(r.timestamp_us, r.frame_index) for r in got]
    assert keys == sorted(keys), "handed on in time order, across polls too"
    assert sorted((r.frame_index, r.kind) for r in got) == sorted(
        [(i, "detections") for i in range(60) if i not in (9, 20)] + [(9, "errors")])
    feed.close()

    seed_job(bucket, "feed2", [i for i in range(30) if i != 20])
    feed = ResultFeed(store, "feed2")
    assert len(feed.poll()) == 29
    write_frame(bucket, "feed2", 20, timestamp_of(20, 10.0))  # finished after later frames of its folder
    write_frame(bucket, "feed2", 30, timestamp_of(30, 10.0))
    since = timestamp_of(15, 10.0)
    assert [(r.kind, r.frame_index) for r in feed.poll(since)] == [("detections", 20), ("detections", 30)]
    assert feed.poll(since) == []
    assert feed.requests % 32 == 0 and feed.objects_listed >= len(got)
    feed.close()


def _page(*keys: tuple[int, int], full: bool) -> FolderPage:
    return FolderPage(tuple(NewResult("detections", i, ts, f"n-{ts:05d}-{i}", 1) for ts, i in keys), full)


def test_take_up_to_frontier() -> None:
    pages = {"a": _page((10, 1), (30, 3), (50, 5), full=True), "b": _page((20, 2), (40, 4), (60, 6), full=True),
             "c": _page((35, 7), full=False)}
    assert [r.frame_index for r in take_up_to_frontier(pages)] == [1, 2, 3, 7, 4, 5]
    pages = {"a": _page((10, 1), full=False), "b": _page(full=False)}
    assert [r.frame_index for r in take_up_to_frontier(pages)] == [1]


@pytest.mark.parametrize(("argv", "problem"), [
    (["--max-delay", "0"], "argument --max-delay: must be more than 0 seconds, got '0'"),
    (["--max-delay", "-1"], "argument --max-delay: must be more than 0 seconds, got '-1'"),
    (["--max-delay", "2s"], "argument --max-delay: invalid value '2s': give seconds, more than 0 (e.g. 2 or 0.5)"),
    (["--max-delay", "nan"], "argument --max-delay: invalid value 'nan': give seconds, more than 0 (e.g. 2 or 0.5)"),
    (["--max-delay", "7200"], "argument --max-delay: at most 3600 seconds, got '7200'"),
    (["--line", "door"],
     "argument --line: invalid line 'door': give NAME:x1,y1,x2,y2 in pixels of the frame (e.g. door:100,200,400,200)"),
    (["--line", "door:1,2,3"], "argument --line: invalid line 'door:1,2,3': give 4 coordinates x1,y1,x2,y2, got 3"),
    (["--line", "door:5,5,5,5"], "argument --line: invalid line 'door:5,5,5,5': its two ends are the same point"),
    (["--line", "door:0,0,1,1", "--line", "door:2,2,3,3"],
     "--line door is given twice; each line needs a name of its own"),
    (["--serve", "8090"],
     "argument --serve: invalid address '8090': give HOST:PORT (e.g. 127.0.0.1:8090; port 0 picks a free one)"),
    (["--poll", "0"], "argument --poll: invalid value '0': give seconds, more than 0 and at most 60"),
])
def test_bad_follow_options_say_exactly_what_is_wrong(capsys, argv: list[str], problem: str) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as info:
        main(["follow", "--job", "j", *argv])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"collector follow: error: {problem}"


def test_reassemble_refuses_the_same_bad_lines(capsys) -> None:  # noqa: ANN001
    for argv, problem in (
        (["--line", "door:1,2,x,4"], "argument --line: invalid line 'door:1,2,x,4': 'x' is not a number"),
        (["--line", "a:0,0,1,1", "--line", "a:0,0,2,2"], "--line a is given twice; each line needs a name of its own"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["reassemble", "--job", "j", *argv])
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"collector reassemble: error: {problem}"
