"""Reassembly: a job's results → an MP4 in time order, detections (JSONL or CSV), and a gap report.

Usage::

    outputs = prepare_outputs(Path("demo.mp4"))                    # CollectorError if not writable
    report = reassemble(store, ReassembleOptions(job_id="demo"), outputs)
    print(summary_paragraph(report), file=sys.stderr)

Frames are downloaded, JPEG-decoded and converted to I420 by a thread pool through a bounded,
ordered window (:func:`ordered_window`), so memory holds at most ``window`` frames whatever the
job's length, and they reach the encoder in (timestamp, index) order; the encoding thread only
wraps the planes and encodes. Holes (missing frames, error records, frames that cannot be read) are
held from the previous frame (``hold``; a hole at the very start shows the first frame that exists),
held with a red ``MISSING frame N`` banner (``mark``), or left out (``skip``); either way they are
reported. ``time_from``/``time_to`` select a half-open time range (:mod:`collector.timerange`).
``track``/``lines`` run ByteTrack and line counts over the frames in order (:mod:`collector.tracking`):
track ids go into the detections, ids and lines are drawn on the video, counts into the report.
Outputs are written under temporary names and renamed at the end, so a failed run leaves no
half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from collector.deadletters import DeadLetter, DeadLetterError, DeadLetterReader
from collector.errors import CollectorError
from collector.lines import LineSpec
from collector.outputs import OutputPaths, prepare_outputs
from collector.plan import (
    JobListing,
    ListedObject,
    Slot,
    Timeline,
    format_ranges,
    output_fps,
    parse_listing,
    plan_timeline,
    plural,
)
from collector.store import JobStore, checked_job_id
from collector.timerange import (
    TimePoint,
    TimeRange,
    estimate_timestamps,
    format_offset,
    listing_window,
    resolve_range,
    select_slots,
)
from collector.tracking import Analysis, FrameAnalysis, detection_dicts
from collector.video import DEFAULT_PRESET, VideoEncoder, draw_missing_marker, from_i420, to_i420
from framecontract.manifest import Manifest
from framecontract.records import MAX_RECORD_BYTES, DetectionsRecord, ErrorRecord, InvalidRecordError

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Largest annotated JPEG a reassembly downloads (the listing gives its size first)."""

__all__ = ["OutputPaths", "ReassembleOptions", "prepare_outputs", "reassemble", "summary_paragraph"]

MissingPolicy = Literal["hold", "skip", "mark"]
MISSING_POLICIES: tuple[str, ...] = ("hold", "skip", "mark")
T = TypeVar("T")
R = TypeVar("R")

HOLE_REASONS = {"missing": "no result", "error": "error record", "unreadable": "result unreadable",
                "dead-lettered": "dead-lettered"}
"""Second line of the ``--missing mark`` banner, by the hole's status."""

CSV_COLUMNS = (
    "frame_index", "timestamp_us", "video_frame", "status", "detection",
    "label", "score", "x1", "y1", "x2", "y2", "error",
)  # fmt: skip
"""Columns of ``--detections OUT.csv``: one row per detection; a frame without detections (or a hole)
gets one row with ``detection``, ``label``, ``score`` and the box empty."""


@dataclass(frozen=True)
class ReassembleOptions:
    """What to reassemble and how."""

    job_id: str
    partial: bool = False
    missing: MissingPolicy = "hold"
    workers: int | None = None
    """Parallel downloads; default :attr:`JobStore.download_workers` (16, or 4 on the emulator)."""
    window: int | None = None
    """Frames in flight (downloading or downloaded, not yet encoded); default :func:`default_window`."""
    preset: str = DEFAULT_PRESET
    codec: str | None = None
    progress: bool | None = None
    """``None``: a progress bar when stderr is a terminal."""
    time_from: TimePoint | None = None
    time_to: TimePoint | None = None
    track: bool = False
    """Track objects (ByteTrack over the frames in timestamp order); implied by ``lines``."""
    lines: tuple[LineSpec, ...] = ()
    """Counting lines (in/out crossings of tracked objects)."""


SlotRecord = DetectionsRecord | ErrorRecord


@dataclass
class Downloaded:
    """One slot's objects, as bytes (the I/O half of a fetch)."""

    slot: Slot
    data: bytes | None = None
    record: SlotRecord | None = None
    problem: str | None = None


@dataclass
class Fetched:
    """One slot after download, JPEG decode and conversion to I420 planes (done in a worker thread)."""

    slot: Slot
    planes: np.ndarray | None = None
    record: SlotRecord | None = None
    problem: str | None = None


class UnreadableResultError(ValueError):
    """One result object that cannot be used: it becomes one ``unreadable`` frame, never an abort."""


def read_record(store: JobStore, listed: ListedObject, record_type: type[SlotRecord], slot: Slot) -> SlotRecord:
    """Download and parse one record of ``slot``'s frame; :class:`UnreadableResultError` with the reason."""
    if listed.size > MAX_RECORD_BYTES:
        raise UnreadableResultError(f"{record_type.kind} record is {listed.size} bytes; at most {MAX_RECORD_BYTES}")
    try:
        record = record_type.from_json(store.download(listed.name))
    except InvalidRecordError as exc:
        raise UnreadableResultError(str(exc)) from None
    assert slot.result is not None
    if not record.belongs_to(_job_of(listed.name), slot.frame_index, slot.result.timestamp_us):
        raise UnreadableResultError(f"{record_type.kind} record names another frame "
                                    f"({record.job_id} #{record.frame_index} at {record.timestamp_us} µs)")
    return record


def _job_of(name: str) -> str:
    """The job id in a result name ``jobs/<job>/...``."""
    return name.split("/", 2)[1]


def download_slot(store: JobStore, slot: Slot) -> Downloaded:
    """Download what a slot needs: detections record + annotated JPEG for a frame, the record for an error.

    Anything wrong with one object (gone, too large, not a valid record, a record naming another
    frame) makes this slot ``unreadable`` with the reason; the reassembly goes on.
    """
    result = slot.result
    if slot.kind == "missing" or result is None:
        return Downloaded(slot)
    try:
        if slot.kind == "error":
            assert result.error is not None
            return Downloaded(slot, record=read_record(store, result.error, ErrorRecord, slot))
        assert result.image is not None and result.detections is not None
        record = read_record(store, result.detections, DetectionsRecord, slot)
        if result.image.size > MAX_IMAGE_BYTES:
            raise UnreadableResultError(f"annotated JPEG is {result.image.size} bytes; at most {MAX_IMAGE_BYTES}")
        return Downloaded(slot, data=store.download(result.image.name), record=record)
    except UnreadableResultError as exc:
        what = "error record unreadable" if slot.kind == "error" else "result unreadable"
        return Downloaded(slot, problem=f"{what}: {exc}")
    except Exception as exc:
        return Downloaded(slot, problem=f"download failed: {_one_line(exc)}")


def decode_downloaded(downloaded: Downloaded) -> Fetched:
    """JPEG → BGR → I420 planes (OpenCV releases the GIL for both steps)."""
    if downloaded.data is None:
        return Fetched(downloaded.slot, record=downloaded.record, problem=downloaded.problem)
    image = cv2.imdecode(np.frombuffer(downloaded.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[0] < 2 or image.shape[1] < 2:
        return Fetched(downloaded.slot, record=downloaded.record, problem="annotated JPEG cannot be decoded")
    return Fetched(downloaded.slot, planes=to_i420(image), record=downloaded.record)


def fetch_slot(store: JobStore, slot: Slot) -> Fetched:
    """:func:`download_slot` then :func:`decode_downloaded` (what each worker thread runs)."""
    return decode_downloaded(download_slot(store, slot))


MIN_WINDOW = 32
"""Smallest default window: one slow download (a TCP retransmit, a pause in the emulator) stalls the
head of an ordered window, so it must be deep enough for the other threads to keep going. Measured on
the emulator, 4 workers: window 8 vs 32 = 146 vs 152 frames/s on a quiet machine (within the noise),
85-100 vs 124-138 under heavy load (docs/collector.md)."""


def default_window(workers: int) -> int:
    """Frames in flight by default: ``max(2 * workers, 32)``; memory ≈ window × 1.5 × width × height bytes."""
    return max(2 * workers, MIN_WINDOW)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def ordered_window(executor: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``map(fn, items)`` on ``executor`` with at most ``window`` calls submitted and not yet consumed.

    Results come in input order; memory is bounded by ``window`` results. Abandoning the iterator
    cancels what has not started.
    """
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


@dataclass
class ReassemblyReport:
    """Everything ``reassemble`` did; written as JSON next to the video."""

    job_id: str
    manifest_state: str
    partial: bool
    missing_policy: str
    video: str
    detections: str
    report: str
    detections_format: str = "jsonl"
    codec: str = ""
    fps: float = 0.0
    fps_source: str = ""
    width: int = 0
    height: int = 0
    time_range: dict[str, Any] | None = None
    """``None`` for the whole job, else the selected half-open range (``--from``/``--to``)."""
    listed_range_us: list[int | None] | None = None
    """``[start_us, end_us)`` when only that part of the job was listed (a short range of a long job);
    ``None`` when the whole job was (then duplicates and unrecognised objects cover the whole job)."""
    frames_expected: int | None = None
    """Published frames of the whole job (``None`` while the producer runs)."""
    frames_selected: int = 0
    """Positions on the output timeline (published frames in the time range, holes included)."""
    frames_written: int = 0
    frames_from_results: int = 0
    frames_held: int = 0
    frames_skipped: int = 0
    missing: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    dead_lettered: list[dict[str, Any]] = field(default_factory=list)
    """Frames with no result whose message Pub/Sub moved to the dead-letter topic (not in ``missing``)."""
    dead_letter_subscription: str | None = None
    """Where dead letters were read; ``None`` when none is configured."""
    dead_letter_problem: str | None = None
    """Why they could not be read (then such frames are in ``missing``)."""
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    unexpected_indices: list[int] = field(default_factory=list)
    images_missing: list[int] = field(default_factory=list)
    unrecognised_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of this process (all threads, encoder included) during the reassembly."""
    tracking: dict[str, Any] | None = None
    """``--track``: library, time base, frame rate, lost-track seconds, number of tracks."""
    lines: dict[str, Any] | None = None
    """``--line``: per line its points, ``in``/``out`` totals and per-minute buckets."""

    @property
    def holes(self) -> int:  # images_missing are in missing
        return len(self.missing) + len(self.errors) + len(self.unreadable) + len(self.dead_lettered)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["missing_ranges"] = format_ranges(self.missing, max_runs=None) if self.missing else ""
        data["frames_per_second"] = round(self.frames_written / self.seconds, 2) if self.seconds else None
        return data


class _VideoSink:
    """Applies the missing-frame policy between the ordered frames (I420 planes) and the encoder."""

    def __init__(self, path: Path, fps: float, options: ReassembleOptions) -> None:
        self.path, self.fps, self.options = path, fps, options
        self.encoder: VideoEncoder | None = None
        self.previous: np.ndarray | None = None
        self.leading: list[tuple[int, str]] = []
        """Holes before the first frame that exists: (frame index, status), filled from that frame."""
        self.held = 0
        self.skipped = 0
        self.position = 0
        """Video frame number the next slot gets (in ``hold``/``mark`` mode every slot gets one)."""

    def frame(self, planes: np.ndarray) -> int:
        if self.encoder is None:
            height, width = planes.shape[0] * 2 // 3, planes.shape[1]
            self.encoder = VideoEncoder.open(
                self.path, self.fps, width, height, codec=self.options.codec, preset=self.options.preset
            )
        if not self.encoder.fits(planes):  # a frame of another size (not expected within one job)
            planes = to_i420(from_i420(planes), self.encoder.width, self.encoder.height)
        for index, status in self.leading:
            self.encoder.write_i420(self._filler(planes, index, status))
        self.leading = []
        self.encoder.write_i420(planes)
        self.previous = planes
        self.position += 1
        return self.position - 1

    def hole(self, frame_index: int, status: str) -> int | None:
        if self.options.missing == "skip":
            self.skipped += 1
            return None
        self.held += 1
        if self.encoder is None or self.previous is None:
            self.leading.append((frame_index, status))
        else:
            self.encoder.write_i420(self._filler(self.previous, frame_index, status))
        self.position += 1
        return self.position - 1

    def _filler(self, planes: np.ndarray, frame_index: int, status: str) -> np.ndarray:
        if self.options.missing != "mark":
            return planes
        marked = draw_missing_marker(from_i420(planes), frame_index, HOLE_REASONS.get(status, status))
        return to_i420(marked)


def detections_line(fetched: Fetched, status: str, video_frame: int | None,
                    analysis: FrameAnalysis | None = None) -> dict[str, Any]:
    """One JSONL line: the frame, where it is in the video, and its detections (``None`` for holes).

    With ``analysis`` (``--track``) each detection has its ``track_id``.
    """
    slot, record = fetched.slot, fetched.record
    line: dict[str, Any] = {
        "frame_index": slot.frame_index,
        "timestamp_us": slot.timestamp_us,
        "status": status,
        "video_frame": video_frame,
        "detections": None,
    }
    if status == "ok" and isinstance(record, DetectionsRecord):
        line["detections"] = detection_dicts(record.detections, analysis or FrameAnalysis())
        line.update({"width": record.width, "height": record.height, "model": record.model, "image": record.image})
    elif status == "error":
        line["error"] = record.reason if isinstance(record, ErrorRecord) else fetched.problem
        line["error_class"] = record.error_class if isinstance(record, ErrorRecord) else None
    elif status == "unreadable":
        line["error"] = fetched.problem
    elif status == "dead-lettered" and slot.dead_letter is not None:
        line["error"] = slot.dead_letter.reason()
    return line


def csv_rows(line: dict[str, Any], track: bool = False) -> list[list[Any]]:
    """The CSV rows (:data:`CSV_COLUMNS`, + ``track_id`` when tracking) of one detections line: one per
    detection, at least one per frame."""
    head = [line["frame_index"], line["timestamp_us"], line["video_frame"], line["status"]]
    error = line.get("error")
    detections = line.get("detections") or []
    tail: list[Any] = [None] if track else []
    if not detections:
        return [[*head, None, None, None, None, None, None, None, error, *tail]]
    rows = []
    for number, det in enumerate(detections):
        box = list(det.get("box") or [None] * 4)[:4]
        rows.append([*head, number, det.get("label"), det.get("score"), *box, error,
                     *([det.get("track_id")] if track else [])])
    return rows


class _DetectionsWriter:
    """Writes detections lines as JSON Lines or as CSV rows."""

    def __init__(self, stream: IO[str], fmt: str, track: bool = False) -> None:
        self.stream, self.track = stream, track
        self.csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow((*CSV_COLUMNS, "track_id") if track else CSV_COLUMNS)

    def write(self, line: dict[str, Any]) -> None:
        if self.csv is None:
            self.stream.write(json.dumps(line, separators=(",", ":")) + "\n")
        else:
            self.csv.writerows([["" if v is None else v for v in row] for row in csv_rows(line, self.track)])


def _origin_us(manifest_clock: str, first_timestamp_us: int | None, timeline: Timeline | None) -> int:
    """What ``--from``/``--to`` offsets count from: 0 for stream clocks, the first frame for wall clocks
    (the manifest's, else the earliest in ``timeline``)."""
    if manifest_clock != "wallclock":
        return 0
    if first_timestamp_us is not None or timeline is None:
        return first_timestamp_us or 0
    known = [s.timestamp_us for s in timeline.slots if s.timestamp_us is not None]
    return min(known) if known else 0


def select_range(timeline: Timeline, window: TimeRange | None, fps: float, job_id: str) -> tuple[Slot, ...]:
    """The timeline's slots in ``window`` (all of them for ``None``); CollectorError if no frame is in it."""
    if window is None:
        return timeline.slots
    selected = select_slots(timeline.slots, estimate_timestamps(timeline.slots, fps), window)
    if not any(s.kind == "frame" for s in selected):
        frames = [s.timestamp_us for s in timeline.slots if s.kind == "frame" and s.timestamp_us is not None]
        first, last = format_offset(min(frames), window.origin_us), format_offset(max(frames), window.origin_us)
        raise CollectorError(
            f"job {job_id!r} has no processed frames {window.text} (its processed frames are at {first} to {last})"
        )
    return selected


def _plan(
    store: JobStore, job_id: str, manifest: Manifest, expected: int | None, options: ReassembleOptions,
    dead_letters: dict[int, DeadLetter] | None = None,
) -> tuple[JobListing, Timeline, TimeRange | None, tuple[int | None, int | None] | None]:
    """List and plan the job: ``(listing, timeline, window, listed range)``.

    For ``--from``/``--to`` on a job whose manifest knows its first and last timestamps, and a range
    that covers under half of it (:func:`collector.timerange.listing_window`), only that range and its
    margins are listed, so a few minutes of a day-long camera job cost a few minutes' listing. Holes
    are then looked for between the indices listed (from index 0 or up to the end when the range
    reaches the job's start or end). Otherwise, or if that listing holds no frame in the range (for
    the exact error), the whole job is listed.
    """
    ranged = options.time_from is not None or options.time_to is not None
    first_us, last_us = manifest.first_timestamp_us, manifest.last_timestamp_us
    if ranged and first_us is not None and last_us is not None:
        window = resolve_range(options.time_from, options.time_to, manifest.clock,
                               _origin_us(manifest.clock, first_us, None))
        span = listing_window(window, first_us, last_us)
        if span is not None:
            listing = parse_listing(job_id, store.list_job_window(job_id, *span))
            if listing.frames:
                known = sorted(listing.frames)
                holes = range(0 if span[0] is None else known[0], known[-1] + 1 if span[1] is not None else sys.maxsize)
                timeline = plan_timeline(listing, expected, holes, dead_letters)
                if any(s.kind == "frame" and s.timestamp_us is not None and window.contains(s.timestamp_us)
                       for s in timeline.slots):
                    return listing, timeline, window, span
    listing = parse_listing(job_id, store.list_job(job_id))
    timeline = plan_timeline(listing, expected, dead_letters=dead_letters)
    origin = _origin_us(manifest.clock, first_us, timeline)
    window = resolve_range(options.time_from, options.time_to, manifest.clock, origin) if ranged else None
    return listing, timeline, window, None


def reassemble(store: JobStore, options: ReassembleOptions, outputs: OutputPaths,
               dead_letters: DeadLetterReader | None = None) -> ReassemblyReport:
    """Reassemble one job into ``outputs``; :class:`CollectorError` for anything the user must fix.

    With ``dead_letters``, the job's dead letters are read first (nothing is consumed) and the frames
    they name that have no result are ``dead-lettered`` holes at their own timestamps, not ``missing``.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    job_id = checked_job_id(options.job_id)
    manifest = store.require_manifest(job_id)
    if not manifest.is_final and not options.partial:
        raise CollectorError(
            f"job {job_id!r} is still running (manifest state 'running'); wait with "
            f"'collector wait --job {job_id}' or reassemble what exists with --partial"
        )
    expected = manifest.frames_published if manifest.is_final else None
    letters, dead_letter_problem = None, None
    if dead_letters is not None:
        try:
            letters = dead_letters.for_job(job_id)
        except DeadLetterError as exc:
            dead_letter_problem = str(exc)
    listing, timeline, window, listed = _plan(store, job_id, manifest, expected, options, letters)
    if timeline.frame_slots == 0:
        raise CollectorError(
            f"job {job_id!r} has no processed frames to reassemble "
            f"({plural(len(timeline.errors), 'error record')}, {len(timeline.missing)} missing"
            + (f", {len(timeline.dead_lettered)} dead-lettered)" if timeline.dead_lettered else ")")
        )
    fps, fps_source = output_fps(manifest, timeline)
    slots = select_range(timeline, window, fps, job_id)
    report = ReassemblyReport(
        job_id=job_id,
        manifest_state=manifest.state,
        partial=not manifest.is_final,
        missing_policy=options.missing,
        video=outputs.name(outputs.video),
        detections=outputs.name(outputs.detections),
        report=outputs.name(outputs.report),
        detections_format=outputs.detections_format,
        fps=fps,
        fps_source=fps_source,
        time_range=window.to_dict() if window is not None else None,
        listed_range_us=list(listed) if listed is not None else None,
        frames_expected=expected,
        frames_selected=len(slots),
        missing=[s.frame_index for s in slots if s.kind == "missing"],
        dead_lettered=[s.dead_letter.to_dict() for s in slots if s.dead_letter is not None],
        dead_letter_subscription=dead_letters.subscription_path if dead_letters is not None else None,
        dead_letter_problem=dead_letter_problem,
        duplicates=[d.to_dict() for d in timeline.duplicates],
        unexpected_indices=list(timeline.unexpected),
        images_missing=list(timeline.images_missing),
        unrecognised_objects=list(listing.unrecognised),
    )
    video_part = _part_name(outputs.video)
    detections_part = _part_name(outputs.detections)
    try:
        sink = _write(store, options, slots, report, video_part, detections_part, outputs.detections_format, fps,
                      manifest.clock)
        report.codec = sink.encoder.codec_name if sink.encoder else ""
        report.width, report.height = (sink.encoder.width, sink.encoder.height) if sink.encoder else (0, 0)
        report.frames_written = sink.encoder.frames_written if sink.encoder else 0
        report.frames_held, report.frames_skipped = sink.held, sink.skipped
        if sink.encoder is None:
            raise CollectorError(f"job {job_id!r}: none of its {len(slots)} selected frames could be read")
        os.replace(video_part, outputs.video)
        os.replace(detections_part, outputs.detections)
    finally:
        for part in (video_part, detections_part):
            part.unlink(missing_ok=True)
    report.seconds = round(time.perf_counter() - started, 3)
    report.cpu_seconds = round(time.process_time() - cpu_started, 3)
    _write_json_atomically(outputs.report, report.to_dict())
    return report


def _write(
    store: JobStore,
    options: ReassembleOptions,
    slots: Sequence[Slot],
    report: ReassemblyReport,
    video_part: Path,
    detections_part: Path,
    detections_format: str,
    fps: float,
    clock: str = "stream",
) -> _VideoSink:
    sink = _VideoSink(video_part, fps, options)
    analysis = Analysis(options.track, options.lines, fps, clock)
    workers = max(options.workers or store.download_workers, 1)
    window = max(options.window or default_window(workers), 1)
    progress = tqdm(
        total=len(slots),
        unit="frame",
        desc=f"reassemble {options.job_id}",
        file=sys.stderr,
        disable=(not sys.stderr.isatty()) if options.progress is None else not options.progress,
    )
    try:
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collector-fetch") as pool,
            detections_part.open("w", encoding="utf-8", newline="") as stream,
        ):
            writer = _DetectionsWriter(stream, detections_format, analysis.active)
            for fetched in ordered_window(pool, lambda s: fetch_slot(store, s), slots, window):
                slot = fetched.slot
                result = None
                if fetched.planes is not None and analysis.active and isinstance(fetched.record, DetectionsRecord):
                    result = _analyse(analysis, fetched, options.lines)
                if fetched.planes is not None:
                    status, video_frame = "ok", sink.frame(fetched.planes)
                    fetched.planes = None
                    report.frames_from_results += 1
                else:
                    status = {"error": "error", "missing": "missing", "dead-lettered": "dead-lettered"}.get(
                        slot.kind, "unreadable")
                    if status == "error":
                        record = fetched.record if isinstance(fetched.record, ErrorRecord) else None
                        report.errors.append(
                            {
                                "frame_index": slot.frame_index,
                                "timestamp_us": slot.timestamp_us,
                                "error_class": record.error_class if record else None,
                                "reason": record.reason if record else fetched.problem,
                            }
                        )
                    elif status == "unreadable":
                        report.unreadable.append({"frame_index": slot.frame_index, "reason": fetched.problem})
                    video_frame = sink.hole(slot.frame_index, status)
                line = detections_line(fetched, status, video_frame, result)
                if analysis.lines is not None and status == "ok":
                    line["crossings"] = [c.to_dict() for c in result.crossings] if result else []
                writer.write(line)
                progress.update(1)
        if sink.encoder is not None:
            sink.encoder.close()
        summary = analysis.summary()
        report.tracking, report.lines = summary.get("tracking"), summary.get("lines")
    except BaseException:
        if sink.encoder is not None:
            sink.encoder.abort()
        raise
    finally:
        progress.close()
    return sink


def _analyse(analysis: Analysis, fetched: Fetched, lines: Sequence[LineSpec]) -> FrameAnalysis:
    """Track and count one frame (in order) and draw the result on its planes."""
    from collector.overlay import draw_analysis

    record = fetched.record
    assert isinstance(record, DetectionsRecord) and fetched.planes is not None and fetched.slot.timestamp_us is not None
    result = analysis.frame(fetched.slot.timestamp_us, record.detections)
    counts = analysis.lines.counts() if analysis.lines else {}
    image = draw_analysis(from_i420(fetched.planes), record.detections, result, lines, counts)
    fetched.planes = to_i420(image)
    return result


def _part_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    part = _part_name(path)
    part.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(part, path)


def summary_paragraph(report: ReassemblyReport) -> str:
    """A one-paragraph human summary of a reassembly (printed on stderr)."""
    expected = f"{report.frames_expected}" if report.frames_expected is not None else "an unknown number of"
    state = report.manifest_state + (", partial" if report.partial else "")
    rate = f" ({report.frames_written / report.seconds:.1f} frames/s)" if report.seconds else ""
    if report.time_range is None:
        scope, source = "", f"{report.frames_from_results} of {expected} published frames"
    else:
        published = f"{report.frames_expected} published" if report.frames_expected is not None else "still running"
        scope = f" {report.time_range['text']}"
        source = f"{report.frames_from_results} of the {report.frames_selected} frames in range ({published})"
    parts = [
        f"Reassembled job {report.job_id} ({state}){scope}: {report.frames_written} video frames written to "
        f"{report.video} ({report.codec}, {report.width}x{report.height} at {report.fps:g} fps) from "
        f"{source} in {report.seconds:.1f} s{rate}."
    ]
    policy = {
        "hold": "held from the previous frame",
        "mark": "held from the previous frame and marked MISSING",
        "skip": "skipped",
    }[report.missing_policy]
    if report.missing:
        parts.append(f"{len(report.missing)} missing ({format_ranges(report.missing)}) {policy}.")
    else:
        parts.append("No frames missing.")
    if report.errors:
        shown = "; ".join(f"{e['frame_index']}: {e['reason']}" for e in report.errors[:3])
        more = f"; +{len(report.errors) - 3} more" if len(report.errors) > 3 else ""
        parts.append(f"{plural(len(report.errors), 'error record')} ({shown}{more}) {policy}.")
    if report.dead_lettered:
        shown = format_ranges(d["frame_index"] for d in report.dead_lettered)
        attempts = sorted({d["delivery_attempts"] for d in report.dead_lettered if d["delivery_attempts"]})
        after = f" after {'/'.join(map(str, attempts))} delivery attempts" if attempts else ""
        parts.append(f"{len(report.dead_lettered)} dead-lettered ({shown}: Pub/Sub gave up on them{after}) {policy}.")
    if report.dead_letter_problem:
        parts.append(f"Dead letters not read ({report.dead_letter_problem}): frames without a result count as missing.")
    if report.unreadable:
        parts.append(f"{len(report.unreadable)} frames could not be read and were {policy}.")
    if report.images_missing:
        parts.append(f"{len(report.images_missing)} processed frames had no annotated image and were {policy}.")
    if report.duplicates:
        parts.append(
            f"{len(report.duplicates)} duplicate frame indices found (cannot happen by design; kept one each)."
        )
    if report.unexpected_indices:
        parts.append(f"{len(report.unexpected_indices)} results beyond frames_published were included.")
    if report.tracking is not None:
        parts.append(f"Tracking: {plural(report.tracking['tracks'], 'track')} (ByteTrack, by timestamp).")
    for name, line in (report.lines or {}).items():
        parts.append(f"Line {name}: in {line['in']}, out {line['out']}.")
    parts.append(f"Detections: {report.detections}; report: {report.report}.")
    return " ".join(parts)
