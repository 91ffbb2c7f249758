"""``collector follow``: a running job's results in timestamp order as they arrive, within a bounded delay.

Usage::

    options = FollowOptions(job_id="cam", max_delay_s=2.0, track=True, lines=(parse_line("door:0,300,768,300"),))
    report = follow(store, options, out=sys.stdout, log=sys.stderr)     # returns when the job is done
    report.to_dict()                                                    # counts, missing runs, lines

The imperative shell around :class:`collector.watermark.Watermark`. Every ``poll_s`` seconds: read the
manifest (what exists: ``frames_published`` once final, ``frames_confirmed`` while running), list what
is new (:class:`collector.feed.ResultFeed`: one ``startOffset`` listing per result folder, from max-delay
behind the last frame written, so a frame finished after a later one in its folder is still found, and a
frame given up is seen if it comes within max-delay), offer each new result to the watermark, and act
on what it lets out, in order:

- a processed frame: its detections record is read (through :class:`framecontract.records.DetectionsRecord`),
  tracked and counted (``--track``, ``--line``: :class:`collector.tracking.Analysis`), written as one
  JSON line, and with ``--serve`` its annotated JPEG (track ids and lines drawn on it) goes to the page;
- a frame with an error record: one ``error`` line; a frame given up: one ``missing`` line;
- a result after its frame's place has passed: counted and logged on stderr (``late: ...``), not written.

It ends when the manifest is final and every published frame has been written or given up; Ctrl-C
stops it between two steps, with the output flushed, the report written and the page closed.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from collector.errors import CollectorError
from collector.feed import NewResult, ResultFeed
from collector.lines import LineSpec
from collector.live_page import LivePage
from collector.plan import DEFAULT_FPS
from collector.store import JobStore, checked_job_id
from collector.tracking import Analysis, detection_dicts
from collector.watermark import Emitted, Event, Late, Missing, Watermark
from framecontract.layout import result_name
from framecontract.manifest import Manifest
from framecontract.records import MAX_RECORD_BYTES, DetectionsRecord, ErrorRecord, InvalidRecordError

DEFAULT_MAX_DELAY_S = 2.0
DEFAULT_POLL_S = 1.0
MIN_WINDOW = 32
LATE_KEPT = 100
"""Late results listed in the report (all are counted)."""
RATE_WINDOW_S = 10.0


@dataclass(frozen=True)
class FollowOptions:
    """What to follow and how."""

    job_id: str
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    poll_s: float = DEFAULT_POLL_S
    track: bool = False
    lines: tuple[LineSpec, ...] = ()
    serve: tuple[str, int] | None = None
    window: int | None = None
    """Results held at most (default: :func:`default_window`)."""


def nominal_fps(manifest: Manifest) -> float:
    """The rate frames are published at: ``sample_fps``, else ``source_fps``, else :data:`DEFAULT_FPS`."""
    for fps in (manifest.sample_fps, manifest.source_fps):
        if fps and fps > 0:
            return float(fps)
    return DEFAULT_FPS


def default_window(max_delay_s: float, fps: float) -> int:
    """Results held at most: twice ``max_delay_s × fps``, at least :data:`MIN_WINDOW`."""
    return max(2 * math.ceil(max_delay_s * fps), MIN_WINDOW)


@dataclass
class FollowReport:
    """What ``follow`` did (``--report``, and the summary line)."""

    job_id: str
    state: str = "running"
    frames_expected: int | None = None
    max_delay_s: float = DEFAULT_MAX_DELAY_S
    window: int = 0
    emitted: int = 0
    errors: int = 0
    unreadable: int = 0
    missing: int = 0
    missing_runs: list[tuple[int, int]] = field(default_factory=list)
    late: int = 0
    late_first: list[dict[str, Any]] = field(default_factory=list)
    held_ms_max: float = 0.0
    polls: int = 0
    list_requests: int = 0
    objects_listed: int = 0
    interrupted: bool = False
    done: bool = False
    analysis: dict[str, Any] = field(default_factory=dict)

    def add_missing(self, index: int) -> None:
        """Missing indices kept as runs (memory follows the holes, not the job)."""
        self.missing += 1
        if self.missing_runs and self.missing_runs[-1][1] == index - 1:
            self.missing_runs[-1] = (self.missing_runs[-1][0], index)
        else:
            self.missing_runs.append((index, index))

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("missing_runs", "analysis")}
        data["missing_ranges"] = _runs(self.missing_runs)
        data.update(self.analysis)
        return data


def _runs(runs: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def summary_line(report: FollowReport) -> str:
    """``job cam: 120 frames in order, 3 missing (4, 17-18), 1 late, 0 errors; done``."""
    missing = ""
    if report.missing:
        missing = f" ({_runs(report.missing_runs[:12])}{' …' if len(report.missing_runs) > 12 else ''})"
    text = (f"job {report.job_id}: {report.emitted} frames in order, {report.missing} missing{missing}, "
            f"{report.late} late, {report.errors} errors")
    if report.unreadable:
        text += f", {report.unreadable} unreadable"
    for name, line in report.analysis.get("lines", {}).items():
        text += f"; line {name}: in {line['in']} out {line['out']}"
    if "tracking" in report.analysis:
        text += f"; {report.analysis['tracking']['tracks']} tracks"
    return text + ("; interrupted" if report.interrupted else "; done" if report.done else "")


class _Reader:
    """Reads a result's record through the contract's types; a problem is one line, never an abort."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id

    def record(self, result: NewResult) -> DetectionsRecord | ErrorRecord | str:
        record_type = DetectionsRecord if result.kind == "detections" else ErrorRecord
        if result.size > MAX_RECORD_BYTES:
            return f"{record_type.kind} record is {result.size} bytes; at most {MAX_RECORD_BYTES}"
        try:
            record = record_type.from_json(self.store.download(result.name))
        except InvalidRecordError as exc:
            return str(exc)
        except Exception as exc:
            return f"download failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        if not record.belongs_to(self.job_id, result.frame_index, result.timestamp_us):
            return f"{record_type.kind} record names another frame"
        return record

    def image(self, result: NewResult) -> bytes | None:
        try:
            return self.store.download(result_name("frames", self.job_id, result.frame_index, result.timestamp_us))
        except Exception:
            return None


class _Follower:
    """The state of one ``follow`` run: watermark, analysis, outputs and page."""

    def __init__(self, store: JobStore, options: FollowOptions, manifest: Manifest, out: IO[str], log: IO[str],
                 page: LivePage | None) -> None:
        fps = nominal_fps(manifest)
        self.options, self.out, self.log, self.page, self.clock = options, out, log, page, manifest.clock
        window = options.window or default_window(options.max_delay_s, fps)
        self.mark = Watermark(max_delay_s=options.max_delay_s, capacity=window)
        self.analysis = Analysis(options.track, options.lines, fps, manifest.clock)
        self.reader = _Reader(store, options.job_id)
        self.report = FollowReport(options.job_id, manifest.state, max_delay_s=options.max_delay_s, window=window)
        self.rate: deque[tuple[float, int]] = deque()
        self.last_timestamp_us: int | None = None

    def handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Emitted):
                self._emitted(event)
            elif isinstance(event, Missing):
                self.report.add_missing(event.frame_index)
                self._write({"frame_index": event.frame_index, "timestamp_us": None, "status": "missing",
                             "reason": f"{event.reason} after {event.waited_s:.1f} s" if event.reason == "timed out"
                             else event.reason})
            elif isinstance(event, Late):
                self.report.late += 1
                if len(self.report.late_first) < LATE_KEPT:
                    self.report.late_first.append({"frame_index": event.frame_index,
                                                   "timestamp_us": event.timestamp_us, "reason": event.reason})
                print(f"late: frame {event.frame_index} (timestamp {event.timestamp_us} µs): {event.reason}; "
                      "not emitted", file=self.log)

    def _emitted(self, event: Emitted) -> None:
        result: NewResult = event.payload
        self.report.held_ms_max = max(self.report.held_ms_max, round((event.emitted_at - event.arrived_at) * 1000, 1))
        self.last_timestamp_us = event.timestamp_us
        record = self.reader.record(result)
        line: dict[str, Any] = {"frame_index": result.frame_index, "timestamp_us": result.timestamp_us}
        if isinstance(record, DetectionsRecord):
            analysis = self.analysis.frame(result.timestamp_us, record.detections)
            line.update({"status": "ok", "detections": detection_dicts(record.detections, analysis),
                         "width": record.width, "height": record.height, "model": record.model,
                         "image": record.image})
            if self.analysis.lines is not None:
                line["crossings"] = [c.to_dict() for c in analysis.crossings]
            self.report.emitted += 1
            if self.page is not None and self.page.has_viewers:
                self._show(result, record, analysis)
        elif isinstance(record, ErrorRecord):
            line.update({"status": "error", "error": record.reason, "error_class": record.error_class})
            self.report.errors += 1
        else:
            line.update({"status": "unreadable", "error": record})
            self.report.unreadable += 1
        line["held_ms"] = round((event.emitted_at - event.arrived_at) * 1000, 1)
        self._write(line)

    def _show(self, result: NewResult, record: DetectionsRecord, analysis: Any) -> None:
        jpeg = self.reader.image(result)
        if jpeg is None or self.page is None:
            return
        if self.analysis.active:
            import cv2
            import numpy as np

            from collector.overlay import draw_analysis

            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is not None:
                counts = self.analysis.lines.counts() if self.analysis.lines else {}
                draw_analysis(image, record.detections, analysis, self.options.lines, counts)
                ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                jpeg = buffer.tobytes() if ok else jpeg
        self.page.show(jpeg)

    def _write(self, line: dict[str, Any]) -> None:
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")

    def stats(self, now: float, emitted_before: int) -> dict[str, Any]:
        """What the page shows: counts, frames/s over the last 10 s, delay behind the camera."""
        self.rate.append((now, self.report.emitted - emitted_before))
        while self.rate and now - self.rate[0][0] > RATE_WINDOW_S:
            self.rate.popleft()
        span = max(now - self.rate[0][0], 1e-9) if len(self.rate) > 1 else None
        fps = sum(n for _, n in list(self.rate)[1:]) / span if span else 0.0
        delay = None
        if self.clock == "wallclock" and self.last_timestamp_us is not None:
            delay = max(time.time() - self.last_timestamp_us / 1_000_000, 0.0)
        counts = self.analysis.lines.counts() if self.analysis.lines else {}
        return {
            "job_id": self.options.job_id, "state": self.report.state, "done": self.report.done,
            "emitted": self.report.emitted, "missing": self.report.missing, "late": self.report.late,
            "errors": self.report.errors, "held": self.mark.size, "frames_per_second": round(fps, 2),
            "delay_s": None if delay is None else round(delay, 2),
            "lines": {name: {"in": a, "out": b} for name, (a, b) in counts.items()},
        }


def follow(
    store: JobStore,
    options: FollowOptions,
    out: IO[str],
    log: IO[str] = sys.stderr,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_serving: Callable[[str], None] | None = None,
) -> FollowReport:
    """Follow a job until it is done, ``stop`` is set, or Ctrl-C (``report.interrupted``); see the module doc."""
    job_id = checked_job_id(options.job_id)
    manifest = store.require_manifest(job_id)
    stop = stop or threading.Event()
    page = None
    if options.serve is not None:
        host, port = options.serve
        try:
            page = LivePage.start(host, port, job_id)
        except OSError as exc:
            raise CollectorError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        (on_serving or (lambda url: print(f"serving {url}", file=log, flush=True)))(page.url)
    feed = ResultFeed(store, job_id)
    state = _Follower(store, options, manifest, out, log, page)
    report = state.report
    warned_stale = False
    try:
        while True:
            now = clock()
            emitted_before = report.emitted
            manifest = store.read_manifest(job_id) or manifest
            report.state = manifest.state
            expected = manifest.frames_published if manifest.is_final else None
            report.frames_expected = expected
            state.mark.know(expected if expected is not None else manifest.frames_confirmed, now)
            last = state.mark.last_timestamp_us
            since = None if last is None else last - round(options.max_delay_s * 1_000_000)
            for result in feed.poll(since):
                state.handle(state.mark.offer(result.frame_index, result.timestamp_us, result, now))
            state.handle(state.mark.advance(now))
            report.polls += 1
            report.list_requests, report.objects_listed = feed.requests, feed.objects_listed
            if expected is not None and state.mark.done(expected):
                state.handle(state.mark.flush(now))
                report.done = True
            out.flush()
            if page is not None:
                page.set_stats(state.stats(now, emitted_before))
            if report.done or stop.is_set():
                break
            if not warned_stale and manifest.producer_silence_s(_utc_now()) is not None:
                warned_stale = True
                print(f"warning: job {job_id}: the producer is stale (no heartbeat for "
                      f"{manifest.heartbeat_age_s(_utc_now()) or 0:.0f} s); still following", file=log)
            if stop.wait(max(options.poll_s - (clock() - now), 0.0)):
                break
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.interrupted = report.interrupted or (stop.is_set() and not report.done)
        report.analysis = state.analysis.summary()
        out.flush()
        feed.close()
        if page is not None:
            page.set_stats(state.stats(clock(), report.emitted))
            page.stop()
    return report


def _utc_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def write_report(path: Path, report: FollowReport) -> None:
    """The report as JSON (written whole: a temporary name, then renamed)."""
    part = path.with_name(f".{path.name}.part")
    part.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    part.replace(path)


