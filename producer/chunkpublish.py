"""Publishing one chunk: decode its byte range, JPEG-encode its frames, publish them under their planned indices.

Usage::

    publisher = ChunkPublisher(ChunkJob(job_id, "videos/long.mp4", table.codec, settings, ...))
    state = publisher.publish(chunk, ChunkState.planned(chunk), report=events.put, should_stop=stop.is_set)
    state.state, state.confirmed, state.published          # complete / stopped / failed, and how far
    publisher.close()

One :class:`ChunkPublisher` per process (a local worker process, a Cloud Run task): one Pub/Sub client, the
file opened once, chunks published one after the other. Within a chunk the work is the sequential
producer's: a thread decodes and encodes up to :data:`~producer.job.PREFETCH_FRAMES` frames ahead
(:class:`~producer.prefetch.Prefetcher`) while this one publishes with flow control; Pub/Sub's
confirmations keep the chunk's run of confirmed frames (:class:`~producer.progress.ConfirmedPrefix`).
``report`` receives the chunk's :class:`~producer.chunkprogress.ChunkState` from a thread of its own every
:data:`REPORT_INTERVAL_S` when it changed (so confirmations are reported while publishing waits on flow control),
and once at the end. A resumed chunk (``state.confirmed`` > 0) decodes from its
start and publishes from its first unconfirmed frame. Nothing raises: a failure ends the chunk ``failed``
with its error, and the caller goes on with the next chunk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from framecontract.message import MAX_INLINE_PAYLOAD_BYTES
from framecontract.settings import Settings
from producer.byteranges import open_byte_ranges
from producer.chunkdecode import decode_chunk
from producer.chunkprogress import ChunkState
from producer.chunks import Chunk
from producer.demux import CodecParameters
from producer.encode import EncodedFrame, encode_jpeg, resize_image
from producer.errors import ProducerError
from producer.messages import frame_message
from producer.numbering import PublishedFrame
from producer.options import output_size
from producer.prefetch import Prefetcher
from producer.progress import ConfirmedPrefix
from producer.publishing import FramePublisher, PublishLimits

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.2
PREFETCH_FRAMES = 8
FLUSH_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ChunkJob:
    """What every chunk of one job shares; picklable (sent to worker processes)."""

    job_id: str
    source: str
    """The file's path, or its ``gs://`` URI."""
    codec: CodecParameters
    settings: Settings
    jpeg_quality: int
    max_side: int | None = None
    resize: tuple[int, int] | None = None
    inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES
    decoder_threads: int = 1
    limits: PublishLimits = PublishLimits()
    generation: int | None = None
    """A ``gs://`` source: the object generation the plan was made from (a replaced object is an error)."""


def error_text(exc: BaseException) -> str:
    """One line for the manifest: a :class:`ProducerError` as it reads, anything else with its type."""
    return str(exc) if isinstance(exc, ProducerError) else f"{type(exc).__name__}: {exc}"


class ChunkPublisher:
    """Publishes the chunks of one job given to this process, one after the other."""

    def __init__(self, job: ChunkJob, publisher_client: Any = None, storage_client: Any = None) -> None:
        from framecontract.clients import make_publisher, make_storage_client

        self.job = job
        self._client = publisher_client or make_publisher(job.settings, **job.limits.client_kwargs())
        self._storage_client = storage_client
        self._make_storage = lambda: make_storage_client(job.settings)
        self._ranges: Any = None
        self._confirmed: ConfirmedPrefix | None = None
        self._publisher = FramePublisher(self._client, job.settings.topic_path, on_settled=self._settled)

    def _settled(self, frame_index: int, ok: bool) -> None:
        if self._confirmed is not None:
            self._confirmed.settled(frame_index, ok)

    def _storage(self) -> Any:
        if self._storage_client is None:
            self._storage_client = self._make_storage()
        return self._storage_client

    def _open(self) -> Any:
        if self._ranges is None:
            storage = self._storage() if self.job.source.lower().startswith("gs://") else None
            self._ranges = open_byte_ranges(self.job.source, self.job.settings, client=storage,
                                            generation=self.job.generation)
        return self._ranges

    def publish(self, chunk: Chunk, state: ChunkState, report: Callable[[ChunkState], None],
                should_stop: Callable[[], bool]) -> ChunkState:
        """Publish ``chunk`` from ``state.confirmed`` on; its final state (``complete``, ``stopped``, ``failed``)."""
        run = _ChunkRun(self, chunk, state, report, should_stop)
        try:
            return run.run()
        finally:
            self._confirmed = None

    def close(self) -> None:
        """Stop the Pub/Sub client's batching and close the file (after the last chunk)."""
        self._publisher.close()
        if self._ranges is not None:
            self._ranges.close()


class _ChunkRun:
    """The publishing of one chunk and its counters."""

    def __init__(self, owner: ChunkPublisher, chunk: Chunk, state: ChunkState, report: Callable[[ChunkState], None],
                 should_stop: Callable[[], bool]) -> None:
        self.owner, self.chunk, self.report, self.should_stop = owner, chunk, report, should_stop
        self.start = 0 if state.complete else state.confirmed
        self.state = state.advanced(state="running", error=None, decoded=0,
                                    resumed_from=self.start if self.start else None)
        start_ts = chunk.kept[self.start - 1][1] if self.start else None
        self.confirmed = ConfirmedPrefix(chunk.first_frame_index + self.start, None, start_ts)
        owner._confirmed = self.confirmed
        self.succeeded_before = owner._publisher.succeeded
        self.failed_before = owner._publisher.failed
        self.decoded = 0
        self.error: str | None = None

    def run(self) -> ChunkState:
        publisher = self.owner._publisher
        self.report(self._snapshot("running"))
        if self.start >= self.chunk.frames:
            return self._final(stopped=False)
        done = threading.Event()
        reporter = threading.Thread(target=self._report_until, args=(done,), name=f"report-{self.chunk.number}",
                                    daemon=True)
        reporter.start()  # confirmations are reported even while publishing is blocked (flow control, a stall)
        try:
            with Prefetcher(self._encoded(), PREFETCH_FRAMES, name=f"chunk-{self.chunk.number}",
                            should_stop=self.should_stop) as frames:
                for frame in frames:
                    self._publish_one(frame)
                    if publisher.failed > self.failed_before:
                        break
        except Exception as exc:  # the chunk fails; the process goes on with its next chunk
            self.error = error_text(exc)
            log.warning("job %s: chunk %d failed: %s", self.owner.job.job_id, self.chunk.number, self.error)
        if not publisher.flush(FLUSH_TIMEOUT_S) and self.error is None:
            self.error = f"{publisher.pending} publishes still unconfirmed after {FLUSH_TIMEOUT_S:g} s"
        if self.error is None and publisher.failed > self.failed_before:
            first = publisher.failures[-1]
            self.error = f"a publish failed (frame {first.frame_index}: {type(first.error).__name__}: {first.error})"
        done.set()
        reporter.join()
        return self._final(stopped=self.should_stop())

    def _report_until(self, done: threading.Event) -> None:
        """Every :data:`REPORT_INTERVAL_S`, the chunk's progress if it changed, until ``done``."""
        last = None
        while not done.wait(REPORT_INTERVAL_S):
            state = self._snapshot("running")
            if state != last:
                self.report(state)
                last = state

    def _encoded(self) -> Iterator[PublishedFrame[EncodedFrame]]:
        """Decode the chunk; JPEG-encode each frame it publishes this run (the frames before ``start`` are skipped)."""
        job, chunk = self.owner.job, self.chunk
        to_publish = {pts: (ts, index) for pts, ts, index in chunk.kept[self.start:]}
        last_pts = chunk.kept[-1][0]
        for frame in decode_chunk(chunk, job.codec, self.owner._open(), job.decoder_threads):
            self.decoded += 1
            entry = to_publish.get(frame.pts)
            if entry is not None:
                image = frame.image
                if job.max_side is not None or job.resize is not None:
                    height, width = image.shape[:2]
                    image = resize_image(image, output_size(width, height, job.max_side, job.resize))
                yield PublishedFrame(entry[1], entry[0], encode_jpeg(image, job.jpeg_quality))
            if frame.pts == last_pts:
                return

    def _publish_one(self, frame: PublishedFrame[EncodedFrame]) -> None:
        job = self.owner.job
        message = frame_message(job.job_id, frame.frame_index, frame.timestamp_us, frame.content,
                                job.settings.bucket, job.inline_limit_bytes)
        if message.payload_name is not None:
            from producer.storage import JobWriter

            JobWriter(self.owner._storage(), job.settings.bucket).put_payload(message.payload_name, frame.content.data)
        self.confirmed.sent(frame.frame_index, frame.timestamp_us)
        self.owner._publisher.publish(message.data, message.attributes, frame.frame_index)

    def _snapshot(self, state: str) -> ChunkState:
        progress = self.confirmed.snapshot()
        confirmed = progress.frames_confirmed - self.chunk.first_frame_index
        succeeded = self.owner._publisher.succeeded - self.succeeded_before
        confirmed_ts = progress.confirmed_timestamp_us if confirmed else None
        last_index = self.chunk.first_frame_index + confirmed - 1 if confirmed else None
        return self.state.advanced(state=state, confirmed=confirmed, confirmed_timestamp_us=confirmed_ts,
                                   published=self.start + succeeded, decoded=self.decoded,
                                   last_frame_index=last_index, last_timestamp_us=confirmed_ts, error=self.error)

    def _final(self, stopped: bool) -> ChunkState:
        done = self._snapshot("running")
        if self.error is not None:
            final = done.advanced(state="failed")
        elif done.confirmed >= self.chunk.frames:
            final = done.advanced(state="complete")
        else:
            final = done.advanced(state="stopped" if stopped else "failed",
                                  error=None if stopped else "the chunk ended before all its frames were published")
        self.report(final)
        return final
