"""``--parallel N``: one video file published by N processes, chunk by chunk, exactly as one process would publish it.

Usage::

    prepared = prepare_chunks("videos/long.mp4", options, processes=4, opencv=(info, first_image))
    run = ParallelRun(job_id, prepared, options, settings, store, manifest, processes=4)
    report = run.run(store.create_manifest, handle_signals=True, show_progress=True)

The coordinator (this process) makes the plan before anything is published — the demux pass
(:mod:`producer.demux`), every frame's timestamp, sampling decision and ``frame_index``, the keyframe-aligned
chunks (:mod:`producer.chunks`) — checks that PyAV's first frame is OpenCV's, writes the manifest, and starts
``N`` worker processes (``spawn``: no gRPC state crosses a fork). Workers take chunks from a queue in order
(chunk 0 first, so the confirmed run from frame 0 grows early; a slow chunk leaves the others to the other
workers), publish each with their own Pub/Sub client (:mod:`producer.chunkpublish`) and report each chunk's
:class:`~producer.chunkprogress.ChunkState` back. The coordinator writes them into the heartbeat (the
manifest's ``chunks``, and the exact contiguous ``frames_confirmed``), shows the progress, turns SIGINT/SIGTERM
into a stop (workers finish publishing what they decoded; chunks not started stay ``pending``), notices a
worker that died (its chunk ``failed``), and writes the final manifest. A chunk that fails does not stop the
others; the job then ends ``failed`` and ``--resume`` publishes what is missing, chunk by chunk.

Workers die with the coordinator (``PR_SET_PDEATHSIG`` on Linux, else they notice their parent is gone), so a
``kill -9`` leaves a stale manifest and nothing still publishing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from framecontract.manifest import Manifest
from framecontract.message import MAX_INLINE_PAYLOAD_BYTES, MAX_MESSAGE_BYTES
from framecontract.settings import Settings
from producer.byteranges import GcsRanges, open_byte_ranges
from producer.chunkdecode import packet_bytes, same_pixels_as_opencv
from producer.chunkprogress import ChunkState, contiguous_progress, job_state, last_published
from producer.chunkpublish import ChunkJob, ChunkPublisher, error_text
from producer.chunks import CHUNKS_PER_PROCESS, Chunk, FramePlan, cut_chunks, plan_frames
from producer.demux import MAX_HEADER_BYTES, PacketTable, chunkable, demux
from producer.errors import ProducerError
from producer.options import JobOptions
from producer.progress import Heartbeat
from producer.publishing import PublishLimits
from producer.sources import SourceInfo
from producer.stopping import StopRequest, stop_on_signals
from producer.storage import JobWriter

log = logging.getLogger(__name__)

POLL_S = 0.1
PARENT_CHECK_S = 0.5
SAMPLED_CHUNKS = 16
PACKETS_PER_SAMPLE = 3


class NotChunkable(ProducerError):
    """This file cannot be cut into chunks that publish exactly what one decoder would (exit status 2)."""

    exit_code = 2


class ChunksFailedError(ProducerError):
    """Some chunks of a parallel job could not be published (exit status 1)."""


@dataclass(frozen=True)
class PreparedChunks:
    """Everything decided before publishing: the packets, every frame's fate, the chunks."""

    table: PacketTable
    frames: FramePlan
    chunks: tuple[Chunk, ...]
    info: SourceInfo
    generation: int | None = None
    """A ``gs://`` source: the object generation the plan was made from."""

    @property
    def video_seconds(self) -> float:
        """Source time covered by the frames read (one frame interval past the last)."""
        frames = self.frames.frames
        if not frames:
            return 0.0
        interval = 1 / self.info.fps if self.info.fps else 0.0
        return (frames[-1].timestamp_us - frames[0].timestamp_us) / 1e6 + interval


def info_from_table(table: PacketTable) -> SourceInfo:
    """What the manifest records about a source only PyAV reads (a ``gs://`` object)."""
    return SourceInfo(name=table.source, kind="file", clock="stream", fps=table.fps, width=table.codec.width,
                      height=table.codec.height, frame_count=len(table.packets) or None)


def prepare_chunks(source: str, options: JobOptions, processes: int, settings: Settings | None = None,
                   opencv: tuple[SourceInfo, np.ndarray] | None = None, starts: Sequence[int] | None = None,
                   storage_client: Any = None, target_chunks: int | None = None) -> PreparedChunks:
    """Demux ``source``, plan every frame, cut the chunks (at ``starts`` when resuming); :class:`NotChunkable` if
    the file cannot be cut exactly, or if PyAV's first frame is not ``opencv``'s (the sequential producer's)."""
    with open_byte_ranges(source, settings, client=storage_client) as ranges:
        table = demux(ranges)
        reason = chunkable(table)
        if reason is not None:
            raise NotChunkable(f"{source!r} cannot be cut into chunks exactly: {reason}",
                               "publish it with --parallel 1")
        info = opencv[0] if opencv is not None else info_from_table(table)
        frames = plan_frames(table, info.fps, options)
        target = target_chunks or processes * CHUNKS_PER_PROCESS
        chunks = tuple(cut_chunks(table, frames, target, starts))
        if not packets_addressable(chunks, ranges):
            raise NotChunkable(f"{source!r} cannot be cut into chunks exactly: its packets are not stored as "
                               "contiguous bytes (MPEG-TS and other packetised containers)",
                               "publish it with --parallel 1, or remux it to MP4 (ffmpeg -i IN -c copy OUT.mp4)")
        if opencv is not None and not same_pixels_as_opencv(chunks[0], table.codec, ranges, opencv[1]):
            raise NotChunkable(f"{source!r}: PyAV's first frame is not OpenCV's (rotation metadata, or a pixel "
                               "format the two convert differently)", "publish it with --parallel 1")
        generation = ranges.generation if isinstance(ranges, GcsRanges) else None
        return PreparedChunks(table, frames, chunks, info, generation)


def packets_addressable(chunks: Sequence[Chunk], ranges: Any, samples: int = SAMPLED_CHUNKS) -> bool:
    """True if each sampled chunk's first packets are found, byte for byte, where the demux pass says they are
    (the first packets of chunk 0 and of up to ``samples`` chunks spread over the file; one small read each)."""
    step = max(1, len(chunks) // samples)
    for chunk in (*chunks[:1], *chunks[1::step]):
        for packet in chunk.packets[:PACKETS_PER_SAMPLE]:
            data = ranges.read(packet.pos, min(ranges.size, packet.pos + packet.size + MAX_HEADER_BYTES))
            if packet_bytes(data, 0, packet) is None:
                return False
    return True


def publish_limits(processes: int) -> PublishLimits:
    """Flow control per worker: the sequential producer's budget shared out, at least one maximal message."""
    default = PublishLimits()
    return PublishLimits(max_pending_messages=max(50, default.max_pending_messages // processes),
                         max_pending_bytes=max(MAX_MESSAGE_BYTES + 2_000_000, default.max_pending_bytes // processes))


def decoder_threads(processes: int) -> int:
    """Decoder threads per worker: the cores left over, at least one."""
    return max(1, (os.cpu_count() or 1) // processes)


# --------------------------------------------------------------------------- worker processes


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; elsewhere a thread watches the parent."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.prctl(1, signal.SIGKILL) == 0 and os.getppid() == parent:  # PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_main(worker: int, job: ChunkJob, tasks: Any, events: Any, stop: Any) -> None:
    """A worker process: publish chunks from ``tasks`` until ``None`` or a stop; report on ``events``."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides; a terminal's ^C reaches us too
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        publisher = ChunkPublisher(job)
    except Exception as exc:
        events.put(("error", worker, error_text(exc)))
        return
    try:
        while not stop.is_set():
            task = tasks.get()
            if task is None:
                break
            chunk, state = task
            if stop.is_set():
                break
            events.put(("start", worker, chunk.number))
            publisher.publish(chunk, state, lambda s: events.put(("state", worker, s)), stop.is_set)
    except Exception as exc:  # outside any chunk (the queue, the client): reported, the process ends
        events.put(("error", worker, error_text(exc)))
    finally:
        with contextlib.suppress(Exception):
            publisher.close()


# --------------------------------------------------------------------------- the coordinator


class ParallelRun:
    """The coordinator of one parallel job: workers, progress, heartbeats, the final manifest."""

    def __init__(self, job_id: str, prepared: PreparedChunks, options: JobOptions, settings: Settings,
                 store: JobWriter, manifest: Manifest, processes: int, stop: StopRequest | None = None,
                 states: Sequence[ChunkState] | None = None, inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES,
                 generation: int | None = None, worker_target: Callable[..., None] | None = None) -> None:
        self.job_id, self.prepared, self.options, self.settings = job_id, prepared, options, settings
        self.store, self.stop = store, stop or StopRequest()
        self.states: dict[int, ChunkState] = {
            s.chunk: s for s in (states or [ChunkState.planned(c) for c in prepared.chunks])}
        self.resumed = states is not None
        self.start_published = sum(s.published for s in self.states.values())
        todo = [c for c in prepared.chunks if not self.states[c.number].complete]
        self.todo = todo
        self.processes = max(1, min(processes, len(todo)))
        self.job = ChunkJob(job_id, prepared.table.source, prepared.table.codec, settings, options.jpeg_quality,
                            options.max_side, options.resize, inline_limit_bytes, decoder_threads(self.processes),
                            publish_limits(self.processes), generation or prepared.generation)
        self.manifest = dataclasses.replace(manifest, chunks=self._records())
        self.heartbeat = Heartbeat(options.heartbeat_interval, self._beat, name=f"heartbeat-{job_id}")
        self._lock = threading.Lock()
        self._final_written = False
        self.running: dict[int, int] = {}
        """worker → the chunk it is publishing."""
        self.worker_errors: list[str] = []
        self.aborted = False
        self.started = time.perf_counter()
        self.worker_target = worker_target or worker_main
        """What each worker process runs (:func:`worker_main`; a test may wrap it: it must be importable)."""

    def _records(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.states[n].to_record() for n in sorted(self.states))

    def _beat(self) -> None:
        with self._lock:
            if self._final_written:
                return
            progress = contiguous_progress(list(self.states.values()))
            beat = self.manifest.beat(progress.frames_confirmed, progress.first_timestamp_us,
                                      progress.confirmed_timestamp_us)
            chunks = self._records()
        self.store.write_heartbeat(dataclasses.replace(beat, chunks=chunks))

    def run(self, write_first: Callable[[Manifest], None], handle_signals: bool, show_progress: bool) -> Any:
        """Write the first manifest, publish every chunk not complete with heartbeats, finish; the job's report."""
        with stop_on_signals(self.stop) if handle_signals else nullcontext(self.stop):
            write_first(self.manifest)
            log.info("job %s: manifest written, publishing %s in %d chunks on %d processes", self.job_id,
                     self.prepared.table.source, len(self.todo), self.processes)
            self.heartbeat.start()
            try:
                self._publish_chunks(show_progress)
                return self.finish()
            finally:
                self.heartbeat.stop()

    def _publish_chunks(self, show_progress: bool) -> None:
        if not self.todo or self.stop.requested:
            return
        context = multiprocessing.get_context("spawn")
        tasks, events, stop_event = context.Queue(), context.Queue(), context.Event()
        for chunk in self.todo:
            tasks.put((chunk, self.states[chunk.number]))
        for _ in range(self.processes):
            tasks.put(None)
        workers = [context.Process(target=self.worker_target, args=(n, self.job, tasks, events, stop_event),
                                   name=f"chunks-{self.job_id}-{n}", daemon=True) for n in range(self.processes)]
        total = self.prepared.frames.published
        with tqdm(total=total, initial=self.start_published, unit="frame", desc=self.job_id, file=sys.stderr,
                  disable=None if show_progress else True, dynamic_ncols=True) as bar:
            for worker in workers:
                worker.start()
            try:
                self._event_loop(workers, events, stop_event, bar)
            except KeyboardInterrupt:  # a second signal: abort now
                self.aborted = True
                for worker in workers:
                    worker.kill()
                for number in self.running.values():
                    self._update(self.states[number].advanced(state="failed", error="aborted by a second signal"))
            finally:
                for worker in workers:
                    worker.join(5)
                    if worker.is_alive():
                        worker.kill()
                for q in (tasks, events):
                    q.cancel_join_thread()
                    q.close()

    def _event_loop(self, workers: list[Any], events: Any, stop_event: Any, bar: Any) -> None:
        shown = self.start_published
        alive = set(range(len(workers)))
        while True:
            if self.stop.requested and not stop_event.is_set():
                stop_event.set()
            try:
                kind, worker, payload = events.get(timeout=POLL_S)
            except queue.Empty:
                for number in sorted(alive):
                    if not workers[number].is_alive():
                        alive.discard(number)
                        self._worker_ended(number, workers[number].exitcode)
                if not alive:
                    break
                continue
            if kind == "start":
                self.running[worker] = payload
            elif kind == "state":
                self._update(payload)
                if payload.finished:
                    self.running.pop(worker, None)
            elif kind == "error":
                self.worker_errors.append(payload)
                log.warning("job %s: worker %d: %s", self.job_id, worker, payload)
            published = sum(s.published for s in self.states.values())
            if published != shown:
                bar.update(published - shown)
                shown = published

    def _update(self, state: ChunkState) -> None:
        with self._lock:
            self.states[state.chunk] = state

    def _worker_ended(self, worker: int, exitcode: int | None) -> None:
        number = self.running.pop(worker, None)
        if number is not None and not self.states[number].finished:
            how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"
            self._update(self.states[number].advanced(state="failed", error=f"its worker process died ({how})"))

    def finish(self) -> Any:
        """The final manifest (complete, stopped, failed); the report, or :class:`ChunksFailedError`."""
        from producer.job import JobReport

        seconds = time.perf_counter() - self.started
        self.heartbeat.stop()
        with self._lock:
            states = [self.states[n] for n in sorted(self.states)]
            for state in states:  # a chunk still 'running' here lost its worker without a word
                if state.state == "running":
                    self.states[state.chunk] = state.advanced(state="failed", error="its worker process ended")
            states = [self.states[n] for n in sorted(self.states)]
        state = job_state(states, self.stop.requested or self.aborted)
        if self.aborted:
            state = "failed"
        failure = self._failure(states) if state == "failed" else None
        progress = contiguous_progress(states)
        last_index, last_ts = last_published(states)
        final = self.manifest.finish(
            state, frames_published=sum(s.published for s in states), frames_dropped=0,
            first_timestamp_us=progress.first_timestamp_us or (states[0].first_timestamp_us
                                                               if states[0].confirmed else None),
            last_timestamp_us=last_ts, last_frame_index=last_index, error=failure,
            frames_confirmed=progress.frames_confirmed, confirmed_timestamp_us=progress.confirmed_timestamp_us)
        final = dataclasses.replace(final, chunks=tuple(s.to_record() for s in states))
        with self._lock:
            self._final_written = True
            self.store.update_manifest(final)
        published = final.frames_published - self.start_published
        decoded = sum(s.decoded for s in states)
        if self.aborted:
            raise KeyboardInterrupt(f"job {self.job_id} aborted; manifest says 'failed'")
        if failure is not None:
            raise ChunksFailedError(f"job {self.job_id}: {failure}",
                                    f"fix the cause, then 'python -m producer SOURCE --resume {self.job_id}' publishes "
                                    "the rest, chunk by chunk")
        resumed = len(self.todo) if self.resumed else None
        return JobReport(self.job_id, state, final, decoded, max(0, published), seconds, self.stop.reason,
                         self.stop.signal_number, 0, self.prepared.video_seconds,
                         chunks=len(states), processes=self.processes, chunks_resumed=resumed)

    def _failure(self, states: Sequence[ChunkState]) -> str:
        """What went wrong, for the manifest and the error line: the failed chunks, and what was published."""
        failed = [s for s in states if s.state == "failed"]
        published = sum(s.published for s in states)
        total = sum(s.frames for s in states)
        if not failed:
            why = self.worker_errors[0] if self.worker_errors else "the worker processes ended"
            return f"{published} of {total} frames published; {why}"
        first = failed[0]
        last = first.first_frame_index + first.frames - 1
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return (f"chunk {first.chunk} (frames {first.first_frame_index}..{last}) failed{more}: {first.error}; "
                f"{published} of {total} frames published")

