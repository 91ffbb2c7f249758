"""Reassembly: a job's results → an MP4 in time order, detections JSONL, and a gap report.

Usage::

    outputs = prepare_outputs(Path("demo.mp4"))                    # CollectorError if not writable
    report = reassemble(store, ReassembleOptions(job_id="demo"), outputs)
    print(summary_paragraph(report), file=sys.stderr)

Frames are downloaded and JPEG-decoded by a thread pool through a bounded, ordered window
(:func:`ordered_window`), so memory holds at most ``window`` frames whatever the job's length, and
they reach the encoder in (timestamp, index) order. Holes (missing frames, error records, frames
that cannot be read) are held from the previous frame (``hold``; a hole at the very start shows the
first frame that exists) or left out (``skip``); either way they are reported. Outputs are written
under temporary names and renamed at the end, so a failed run leaves no half-written video.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from collector.errors import CollectorError
from collector.plan import Slot, Timeline, format_ranges, output_fps, parse_listing, plan_timeline, plural
from collector.store import JobStore, checked_job_id
from collector.video import DEFAULT_PRESET, VideoEncoder

MissingPolicy = Literal["hold", "skip"]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ReassembleOptions:
    """What to reassemble and how."""

    job_id: str
    partial: bool = False
    missing: MissingPolicy = "hold"
    workers: int | None = None
    """Parallel downloads; default :attr:`JobStore.download_workers` (16, or 4 on the emulator)."""
    window: int | None = None
    """Frames in flight (downloaded or downloading); default ``2 * workers``."""
    preset: str = DEFAULT_PRESET
    codec: str | None = None
    progress: bool | None = None
    """``None``: a progress bar when stderr is a terminal."""


@dataclass(frozen=True)
class OutputPaths:
    """Where the video, the detections JSONL and the report go."""

    video: Path
    detections: Path
    report: Path


def prepare_outputs(video: Path, detections: Path | None = None) -> OutputPaths:
    """Resolve output paths (detections and report default next to the video) and check they can be written.

    Missing directories are created. Raises ``CollectorError: cannot write to output directory ...``.
    """
    stem = video.with_suffix("") if video.suffix else video
    paths = OutputPaths(
        video=video,
        detections=detections or stem.with_name(stem.name + ".detections.jsonl"),
        report=stem.with_name(stem.name + ".report.json"),
    )
    for directory in sorted({p.parent for p in (paths.video, paths.detections, paths.report)}):
        blocker = next((d for d in (directory, *directory.parents) if d.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise CollectorError(f"cannot write to output directory '{directory}': '{blocker}' is not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".collector-probe-"):
                pass
        except OSError as exc:
            raise CollectorError(f"cannot write to output directory '{directory}': {exc.strerror or exc}") from None
    return paths


@dataclass
class Fetched:
    """One slot after download and decode (done in a worker thread)."""

    slot: Slot
    image: np.ndarray | None = None
    record: dict[str, Any] | None = None
    problem: str | None = None


def fetch_slot(store: JobStore, slot: Slot) -> Fetched:
    """Download (and decode) what a slot needs: JPEG + detections for a frame, the record for an error."""
    result = slot.result
    if slot.kind == "missing" or result is None:
        return Fetched(slot)
    if slot.kind == "error":
        assert result.error is not None
        try:
            return Fetched(slot, record=json.loads(store.download(result.error.name)))
        except Exception as exc:
            return Fetched(slot, problem=f"error record unreadable: {_one_line(exc)}")
    assert result.image is not None and result.detections is not None
    try:
        record = json.loads(store.download(result.detections.name))
        data = store.download(result.image.name)
    except Exception as exc:
        return Fetched(slot, problem=f"download failed: {_one_line(exc)}")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return Fetched(slot, record=record, problem="annotated JPEG cannot be decoded")
    return Fetched(slot, image=image, record=record)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def ordered_window(
    executor: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
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
    codec: str = ""
    fps: float = 0.0
    fps_source: str = ""
    width: int = 0
    height: int = 0
    frames_expected: int | None = None
    frames_written: int = 0
    frames_from_results: int = 0
    frames_held: int = 0
    frames_skipped: int = 0
    missing: list[int] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    unexpected_indices: list[int] = field(default_factory=list)
    images_missing: list[int] = field(default_factory=list)
    unrecognised_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def holes(self) -> int:
        return len(self.missing) + len(self.errors) + len(self.unreadable) + len(self.images_missing)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["missing_ranges"] = format_ranges(self.missing, max_runs=None) if self.missing else ""
        data["frames_per_second"] = round(self.frames_written / self.seconds, 2) if self.seconds else None
        return data


class _VideoSink:
    """Applies the missing-frame policy between the ordered frames and the encoder."""

    def __init__(self, path: Path, fps: float, options: ReassembleOptions) -> None:
        self.path, self.fps, self.options = path, fps, options
        self.encoder: VideoEncoder | None = None
        self.previous: np.ndarray | None = None
        self.leading_holes = 0
        self.held = 0
        self.skipped = 0
        self.position = 0
        """Video frame number the next slot gets (in ``hold`` mode every slot gets one)."""

    def frame(self, image: np.ndarray) -> int:
        if self.encoder is None:
            height, width = image.shape[:2]
            self.encoder = VideoEncoder.open(
                self.path, self.fps, width, height, codec=self.options.codec, preset=self.options.preset
            )
        for _ in range(self.leading_holes):
            self.encoder.write_bgr(image)
        self.leading_holes = 0
        self.encoder.write_bgr(image)
        self.previous = image
        self.position += 1
        return self.position - 1

    def hole(self) -> int | None:
        if self.options.missing == "skip":
            self.skipped += 1
            return None
        self.held += 1
        if self.encoder is None or self.previous is None:
            self.leading_holes += 1
        else:
            self.encoder.write_bgr(self.previous)
        self.position += 1
        return self.position - 1


def detections_line(fetched: Fetched, status: str, video_frame: int | None) -> dict[str, Any]:
    """One JSONL line: the frame, where it is in the video, and its detections (``None`` for holes)."""
    slot, record = fetched.slot, fetched.record or {}
    line: dict[str, Any] = {
        "frame_index": slot.frame_index,
        "timestamp_us": slot.timestamp_us,
        "status": status,
        "video_frame": video_frame,
        "detections": record.get("detections") if status == "ok" else None,
    }
    if status == "ok":
        line.update({k: record.get(k) for k in ("width", "height", "model", "image")})
    elif status == "error":
        line["error"] = record.get("reason") or fetched.problem
        line["error_class"] = record.get("error_class")
    elif status == "unreadable":
        line["error"] = fetched.problem
    return line


def reassemble(store: JobStore, options: ReassembleOptions, outputs: OutputPaths) -> ReassemblyReport:
    """Reassemble one job into ``outputs``; :class:`CollectorError` for anything the user must fix."""
    started = time.perf_counter()
    job_id = checked_job_id(options.job_id)
    manifest = store.require_manifest(job_id)
    if not manifest.is_final and not options.partial:
        raise CollectorError(
            f"job {job_id!r} is still running (manifest state 'running'); wait with "
            f"'collector wait --job {job_id}' or reassemble what exists with --partial"
        )
    listing = parse_listing(job_id, store.list_job(job_id))
    expected = manifest.frames_published if manifest.is_final else None
    timeline = plan_timeline(listing, expected)
    if timeline.frame_slots == 0:
        raise CollectorError(
            f"job {job_id!r} has no processed frames to reassemble "
            f"({plural(len(timeline.errors), 'error record')}, {len(timeline.missing)} missing)"
        )
    fps, fps_source = output_fps(manifest, timeline)
    report = ReassemblyReport(
        job_id=job_id,
        manifest_state=manifest.state,
        partial=not manifest.is_final,
        missing_policy=options.missing,
        video=str(outputs.video),
        detections=str(outputs.detections),
        report=str(outputs.report),
        fps=fps,
        fps_source=fps_source,
        frames_expected=expected,
        missing=list(timeline.missing),
        duplicates=[d.to_dict() for d in timeline.duplicates],
        unexpected_indices=list(timeline.unexpected),
        images_missing=list(timeline.images_missing),
        unrecognised_objects=list(listing.unrecognised),
    )
    video_part = _part_name(outputs.video)
    jsonl_part = _part_name(outputs.detections)
    try:
        sink = _write(store, options, timeline, report, video_part, jsonl_part, fps)
        report.codec = sink.encoder.codec_name if sink.encoder else ""
        report.width, report.height = (sink.encoder.width, sink.encoder.height) if sink.encoder else (0, 0)
        report.frames_written = sink.encoder.frames_written if sink.encoder else 0
        report.frames_held, report.frames_skipped = sink.held, sink.skipped
        if sink.encoder is None:
            raise CollectorError(f"job {job_id!r}: none of its {timeline.frame_slots} frames could be read")
        os.replace(video_part, outputs.video)
        os.replace(jsonl_part, outputs.detections)
    finally:
        for part in (video_part, jsonl_part):
            part.unlink(missing_ok=True)
    report.seconds = round(time.perf_counter() - started, 3)
    _write_json_atomically(outputs.report, report.to_dict())
    return report


def _write(
    store: JobStore,
    options: ReassembleOptions,
    timeline: Timeline,
    report: ReassemblyReport,
    video_part: Path,
    jsonl_part: Path,
    fps: float,
) -> _VideoSink:
    sink = _VideoSink(video_part, fps, options)
    workers = max(options.workers or store.download_workers, 1)
    window = options.window or 2 * workers
    progress = tqdm(
        total=len(timeline.slots),
        unit="frame",
        desc=f"reassemble {options.job_id}",
        file=sys.stderr,
        disable=(not sys.stderr.isatty()) if options.progress is None else not options.progress,
    )
    try:
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collector-fetch") as pool,
            jsonl_part.open("w", encoding="utf-8") as jsonl,
        ):
            for fetched in ordered_window(pool, lambda s: fetch_slot(store, s), timeline.slots, window):
                slot = fetched.slot
                if fetched.image is not None:
                    status, video_frame = "ok", sink.frame(fetched.image)
                    fetched.image = None
                else:
                    status = {"error": "error", "missing": "missing"}.get(slot.kind, "unreadable")
                    if status == "error":
                        record = fetched.record or {}
                        report.errors.append(
                            {
                                "frame_index": slot.frame_index,
                                "timestamp_us": slot.timestamp_us,
                                "error_class": record.get("error_class"),
                                "reason": record.get("reason") or fetched.problem,
                            }
                        )
                    elif status == "unreadable":
                        report.unreadable.append({"frame_index": slot.frame_index, "reason": fetched.problem})
                    video_frame = sink.hole()
                if status == "ok":
                    report.frames_from_results += 1
                jsonl.write(json.dumps(detections_line(fetched, status, video_frame), separators=(",", ":")) + "\n")
                progress.update(1)
        if sink.encoder is not None:
            sink.encoder.close()
    except BaseException:
        if sink.encoder is not None:
            sink.encoder.abort()
        raise
    finally:
        progress.close()
    return sink


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
    parts = [
        f"Reassembled job {report.job_id} ({state}): {report.frames_written} video frames written to "
        f"{report.video} ({report.codec}, {report.width}x{report.height} at {report.fps:g} fps) from "
        f"{report.frames_from_results} of {expected} published frames in {report.seconds:.1f} s{rate}."
    ]
    policy = "held from the previous frame" if report.missing_policy == "hold" else "skipped"
    if report.missing:
        parts.append(f"{len(report.missing)} missing ({format_ranges(report.missing)}) {policy}.")
    else:
        parts.append("No frames missing.")
    if report.errors:
        shown = "; ".join(f"{e['frame_index']}: {e['reason']}" for e in report.errors[:3])
        more = f"; +{len(report.errors) - 3} more" if len(report.errors) > 3 else ""
        parts.append(f"{plural(len(report.errors), 'error record')} ({shown}{more}) {policy}.")
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
    parts.append(f"Detections: {report.detections}; report: {report.report}.")
    return " ".join(parts)
