"""One producer job: open the source, write the manifest, decode → sample → resize → encode → publish, finish.

Usage::

    settings = load_settings()
    report = run_job("videos/vtest.avi", ProducerOptions(fps=5).validated(), settings, show_progress=True)
    report = run_job("http://cam/video.mjpg", ProducerOptions(duration=60, max_side=640).validated(), settings)
    report.job_id, report.state, report.frames_published, report.frames_dropped, report.frames_per_second
    report = resume_job("videos/vtest.avi", "vtest-20261128t181840-e804", settings)   # after a crash or a stop

Order of work, so that no job is ever half-published without a manifest that says so:

1. open the source and decode its first frame (bad input, an unreachable stream, fails here, before
   anything exists); the options and the job id were checked once before, by
   :meth:`~producer.options.ProducerOptions.validated`;
2. check the topic, then create ``jobs/<job>/manifest.json`` with state ``running`` (a missing
   topic or bucket fails here, before anything is published);
3. publish frames until the source ends, ``--max-frames`` or ``--duration`` is reached, a stop is
   requested (SIGINT/SIGTERM: every frame already read is still published), a live source stays
   lost longer than ``--reconnect-timeout``, or a publish fails;
4. wait for every pending publish, then overwrite the manifest with the final state:
   ``complete``, ``stopped`` or ``failed`` (with ``error``), with the drop count and the gaps of a
   live source, and raise if it failed.

From step 2 to step 4 a heartbeat thread rewrites the running manifest every
``options.heartbeat_interval`` seconds with ``heartbeat_at`` and the progress Pub/Sub has confirmed
(:class:`~producer.progress.ConfirmedPrefix`), so that a producer that dies (``kill -9``, a lost host)
leaves a manifest the collector can call stale, and :func:`resume_job` can continue: it checks the job
and the source (:mod:`producer.resume`), replays the same decode and sampling, leaves out the frames
already confirmed before encoding them, and publishes the rest under the indices they had.

Frame policies: ``every-frame`` (files and folders by default) never drops — when publishing is
slow, reading waits (Pub/Sub flow control → the read-ahead queue → the decoder). ``latest-frame``
(live sources by default) never makes the reader wait: when publishing falls behind, the oldest
frames waiting to be published are dropped and counted (``frames_dropped``), so what is published
stays current and the camera connection is drained at its own pace. Whatever was dropped or skipped,
the frames published are numbered 0..N-1 by :func:`~producer.numbering.number_published`, as they are
taken to be published.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from tqdm import tqdm

from framecontract.clients import make_publisher, make_storage_client
from framecontract.layout import gs_uri, manifest_name
from framecontract.manifest import DEFAULT_HEARTBEAT_INTERVAL_S, Manifest, utc_now_iso
from framecontract.message import MAX_INLINE_PAYLOAD_BYTES
from framecontract.settings import Settings
from producer.encode import EncodedFrame, encode_jpeg, resize_image
from producer.errors import ProducerError, PublishFailedError, ResourceNotFoundError, ServiceUnavailableError
from producer.messages import frame_message
from producer.numbering import PublishedFrame, number_published
from producer.opening import open_source
from producer.options import JobOptions, Policy, check_job_id, format_size, output_size
from producer.prefetch import Prefetcher
from producer.progress import ConfirmedPrefix, Heartbeat
from producer.publishing import FramePublisher, PublishLimits
from producer.resume import (
    CannotResumeError,
    ResumePlan,
    check_resumable,
    check_resume_source,
    check_same_source,
    fingerprint_of,
    resume_options,
    resumed_manifest,
    skip_published,
)
from producer.sampling import TimestampSampler, sampled
from producer.sources import DecodedFrame, FrameSource, SourceInfo
from producer.stopping import StopRequest, stop_on_signals
from producer.storage import JobWriter

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 120.0
"""How long to wait for pending publishes at the end before declaring the job failed."""

PREFETCH_FRAMES = 8
"""Encoded frames made ahead of publishing (about 100 KB each for 768x576): overlap at bounded memory."""

LATEST_FRAME_LIMITS = PublishLimits(max_pending_messages=48, max_pending_bytes=24_000_000)
"""Flow control for ``latest-frame``: a short publish backlog, so that a slow Pub/Sub makes the producer
drop old frames within a few seconds instead of queueing 400 (tens of seconds of latency on a camera)."""

STOP_GRACE_S = 5.0
"""After a stop, how long to wait for a source stuck in a read before finishing without it."""

PUBSUB_PREFLIGHT_RETRY = Retry(initial=0.2, maximum=2.0, multiplier=2.0, timeout=15.0,
                        predicate=if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded))


@dataclass(frozen=True)
class JobClients:
    """The Google clients a job uses; tests and benchmarks may pass their own."""

    publisher: Any
    """A ``pubsub_v1.PublisherClient`` (its batch and flow-control settings are the caller's)."""
    storage: Any
    """A ``storage.Client``."""

    @classmethod
    def from_settings(cls, settings: Settings, limits: PublishLimits | None = None) -> JobClients:
        """Clients for ``settings`` (emulators when their hosts are set), publisher with ``limits``."""
        limits = limits or PublishLimits()
        return cls(make_publisher(settings, **limits.client_kwargs()), make_storage_client(settings))


@dataclass(frozen=True)
class JobReport:
    """How a job ended (it ended ``complete`` or ``stopped``; ``failed`` raises instead)."""

    job_id: str
    state: str
    manifest: Manifest
    frames_decoded: int
    frames_published: int
    seconds: float
    """Wall time from the first decoded frame until every publish was confirmed."""
    stop_reason: str | None = None
    stop_signal: int | None = None
    frames_dropped: int = 0
    """Frames read but not published (``latest-frame`` when publishing fell behind)."""
    video_seconds: float = 0.0
    """Span of source time covered by the decoded frames (0 for live sources)."""
    resumed_from: int | None = None
    """A resumed job: the frame it continued at (``frames_published`` counts this run's frames only)."""
    chunks: int = 0
    """A job published in chunks (``--parallel``): how many; 0 for a sequential job."""
    processes: int = 0
    """... and by how many processes."""
    chunks_resumed: int | None = None
    """A resumed chunked job: how many of its chunks this run published (the others were complete)."""

    @property
    def frames_per_second(self) -> float:
        return self.frames_published / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for people: what was published, how fast."""
        realtime = ""
        if self.video_seconds and self.seconds:
            realtime = f", {self.video_seconds / self.seconds:.1f}× real time"
        how = f"stopped ({self.stop_reason})" if self.state == "stopped" else self.state
        dropped = f", {self.frames_dropped} dropped" if self.frames_dropped else ""
        gaps = len(self.manifest.gaps)
        gap_note = f"; {gaps} reconnect{'s' if gaps != 1 else ''}" if gaps else ""
        if self.chunks_resumed is not None:
            what = (f"resumed {self.chunks_resumed} of {self.chunks} chunks and published {self.frames_published} "
                    f"frames, {self.manifest.frames_published} in all ({self.frames_decoded} decoded)")
        elif self.resumed_from is not None:
            what = (f"resumed at frame {self.resumed_from} and published {self.frames_published} frames, "
                    f"{self.manifest.frames_published} in all ({self.frames_decoded} decoded{dropped})")
        else:
            what = f"published {self.frames_published} frames (of {self.frames_decoded} decoded{dropped})"
        chunk_note = ""
        if self.chunks:
            chunk_note = (f"; {self.chunks} chunk{'s' if self.chunks != 1 else ''} on {self.processes} "
                          f"process{'es' if self.processes != 1 else ''}")
        return (f"job {self.job_id} {how}: {what} in {self.seconds:.2f} s — "
                f"{self.frames_per_second:.1f} frames/s{realtime}{gap_note}{chunk_note}")


def run_job(
    source: str | os.PathLike[str] | FrameSource,
    options: JobOptions,
    settings: Settings,
    *,
    clients: JobClients | None = None,
    stop: StopRequest | None = None,
    handle_signals: bool = False,
    show_progress: bool = False,
    inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES,
    flush_timeout_s: float = FLUSH_TIMEOUT_S,
    default_parallel: int = 1,
) -> JobReport:
    """Publish one source (a path or URL — see :func:`~producer.opening.open_source` — or an opened
    :class:`FrameSource`, which is closed at the end) as a job; :class:`ProducerError` on bad input
    or a failed job.

    ``options`` are checked already (``ProducerOptions(...).validated()``) and used as they are.
    ``handle_signals`` turns SIGINT/SIGTERM into a clean stop (main thread only); ``stop`` can
    also be requested by the caller. ``inline_limit_bytes`` is the claim-check threshold.
    A video file (or a ``gs://`` object) is published in chunks by ``options.parallel`` processes
    (``default_parallel`` when not given; the command line's is one per core): :mod:`producer.chunkedjob`.
    """
    if not isinstance(options, JobOptions):
        raise TypeError(f"run_job takes checked options (ProducerOptions.validated()), not {type(options).__name__}")
    if not isinstance(source, FrameSource):
        from producer.chunkedjob import DEFAULT_PARALLEL_MIN_FRAMES, chunked_processes, run_chunked_job

        processes = chunked_processes(os.fspath(source), options, default_parallel)
        if processes:
            return run_chunked_job(os.fspath(source), options, settings, processes, clients=clients, stop=stop,
                                   handle_signals=handle_signals, show_progress=show_progress,
                                   inline_limit_bytes=inline_limit_bytes,
                                   min_frames=DEFAULT_PARALLEL_MIN_FRAMES if options.parallel is None else 0)
        source = open_source(os.fspath(source), options)
    with closing(source):
        policy = options.policy_for(is_live(source.info))
        job_id = options.job_id_for(job_name_of(source.info))
        if clients is None:
            clients = JobClients.from_settings(settings, LATEST_FRAME_LIMITS if policy == "latest-frame" else None)
        check_topic(clients.publisher, settings.topic_path)
        store = JobWriter(clients.storage, settings.bucket)
        manifest = start_manifest(job_id, source, options, settings)
        run = _PublishRun(job_id, source, options, policy, settings, store, clients.publisher, stop or StopRequest(),
                          inline_limit_bytes, manifest)
        return run.run(store.create_manifest, handle_signals, show_progress, flush_timeout_s)


def resume_job(
    source: str | os.PathLike[str] | FrameSource,
    job_id: str,
    settings: Settings,
    *,
    heartbeat_interval: float | None = None,
    stale_after_s: float | None = None,
    clients: JobClients | None = None,
    stop: StopRequest | None = None,
    handle_signals: bool = False,
    show_progress: bool = False,
    inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES,
    flush_timeout_s: float = FLUSH_TIMEOUT_S,
    now: dt.datetime | None = None,
    parallel: int | None = None,
) -> JobReport:
    """Continue job ``job_id`` from ``source`` (the same file or folder) where Pub/Sub's confirmations end.

    Refused, with :class:`~producer.resume.CannotResumeError` (exit status 2) and nothing written: a live
    source, an unknown or ``complete`` job, a live or ``--latest-frame`` job, another file, another topic,
    a ``running`` job whose producer is not stale (``stale_after_s`` overrides the job's threshold).
    The job keeps its own options (sampling, size, quality, bounds); ``heartbeat_interval`` (default: the
    job's) is this run's. See :mod:`producer.resume` for how the frames already published are left out.
    A job published in chunks resumes chunk by chunk, by ``parallel`` processes (default: one per core):
    :func:`producer.chunkedjob.resume_chunked_job`.
    """
    job_id = check_job_id(job_id)
    if not isinstance(source, FrameSource):
        check_resume_source(os.fspath(source))
    clients = clients or JobClients.from_settings(settings)
    store = JobWriter(clients.storage, settings.bucket)
    manifest = store.read_manifest(job_id)
    if manifest is None:
        where = gs_uri(settings.bucket, manifest_name(job_id))
        raise CannotResumeError(f"job {job_id!r} not found: no manifest at {where}",
                                "check the job id, and --bucket/--project")
    check_resumable(manifest, settings.topic_path, now or dt.datetime.now(dt.UTC), stale_after_s)
    options = resume_options(manifest, heartbeat_interval or manifest.heartbeat_interval_s
                             or DEFAULT_HEARTBEAT_INTERVAL_S)
    if manifest.chunks:
        from producer.chunkedjob import resume_chunked_job

        if isinstance(source, FrameSource):
            raise TypeError("a job published in chunks resumes from its file's path, not from an opened source")
        return resume_chunked_job(os.fspath(source), manifest, options, settings, store, clients,
                                  parallel or os.cpu_count() or 1, stop=stop, handle_signals=handle_signals,
                                  show_progress=show_progress, inline_limit_bytes=inline_limit_bytes)
    if parallel is not None and parallel > 1:
        raise CannotResumeError(f"job {job_id!r} was published by one process, and resumes the same way",
                                "omit --parallel")
    if not isinstance(source, FrameSource):
        source = open_source(os.fspath(source), options)
    with closing(source):
        check_same_source(manifest, fingerprint_of(source.info), source.info)
        check_topic(clients.publisher, settings.topic_path)
        plan = ResumePlan.of(manifest)
        restarted = resumed_manifest(manifest, plan, options.heartbeat_interval)
        run = _PublishRun(job_id, source, options, "every-frame", settings, store, clients.publisher,
                          stop or StopRequest(), inline_limit_bytes, restarted, plan)
        return run.run(store.update_manifest, handle_signals, show_progress, flush_timeout_s)


def is_live(info: SourceInfo) -> bool:
    """True for sources timestamped by the wall clock (streams, webcams)."""
    return info.clock == "wallclock"


def job_name_of(info: SourceInfo) -> str:
    """What a generated job id is named after: the file or folder name, or host and last path part of a URL."""
    name = info.name
    if "://" not in name:
        return name.rstrip("/") or "job"
    rest = name.split("://", 1)[1].split("?", 1)[0]
    host, _, path = rest.partition("/")
    host = host.rsplit("@", 1)[-1].split(":", 1)[0].replace(".", "-")
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return f"{host}-{last}" if last else host


def start_manifest(job_id: str, source: FrameSource, options: JobOptions, settings: Settings) -> Manifest:
    """The ``running`` manifest of a new job (``width``/``height``: the size frames are published at)."""
    return manifest_for(job_id, source.info, options, settings, getattr(source, "reader", None))


def manifest_for(job_id: str, info: SourceInfo, options: JobOptions, settings: Settings, reader: str | None = None,
                 **more_options: Any) -> Manifest:
    """The ``running`` manifest of a new job from what is known about its source (``more_options``: recorded too)."""
    live = is_live(info)
    width, height = output_size(info.width, info.height, options.max_side, options.resize)
    extra: dict[str, Any] = {}
    if info.kind == "images":
        extra["image_fps"] = info.fps
    if live:
        extra["reconnect_timeout_s"] = options.reconnect_timeout
        extra["reader"] = reader
    return Manifest(
        job_id=job_id, source=info.name, source_kind=info.kind, clock=info.clock,
        source_fps=info.fps, sample_fps=options.fps, width=width, height=height,
        heartbeat_at=utc_now_iso(), heartbeat_interval_s=options.heartbeat_interval,
        source_fingerprint=fingerprint_of(info),
        options={
            "sampling": "by-timestamp" if options.fps else "every-frame",
            "policy": options.policy_for(live),
            "max_frames": options.max_frames,
            "duration_s": options.duration,
            "max_side": options.max_side,
            "resize": format_size(options.resize) if options.resize is not None else None,
            "jpeg_quality": options.jpeg_quality,
            "topic": settings.topic_path,
            "source_frame_count": info.frame_count,
            "source_width": info.width,
            "source_height": info.height,
            **extra,
            **more_options,
        },
    )


def check_topic(publisher_client: Any, topic_path: str) -> None:
    """Fail early, with a remedy, when the topic does not exist or Pub/Sub does not answer.

    A publisher allowed to publish but not to read topic metadata (PermissionDenied) is let
    through: a missing topic then shows up as the first failed publish.
    """
    try:
        publisher_client.get_topic(topic=topic_path, retry=PUBSUB_PREFLIGHT_RETRY, timeout=15.0)
    except gexc.NotFound:
        raise topic_not_found(topic_path) from None
    except gexc.PermissionDenied:
        log.info("not allowed to look up %s; publishing without checking it", topic_path)
    except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as exc:
        raise pubsub_unreachable(exc) from None


def topic_not_found(topic_path: str) -> ResourceNotFoundError:
    """The error for a missing topic."""
    topic = topic_path.rsplit("/", 1)[-1]
    return ResourceNotFoundError(
        f"Pub/Sub topic {topic_path!r} not found",
        "start the local stack with 'python -m deploy.local up', or create the topic "
        f"('gcloud pubsub topics create {topic}'), or pass --topic/--project",
    )


def pubsub_unreachable(exc: BaseException) -> ServiceUnavailableError:
    """The error for a Pub/Sub service that does not answer."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    where = f"the Pub/Sub emulator at {host}" if host else "Pub/Sub"
    return ServiceUnavailableError(
        f"cannot reach {where} ({type(exc).__name__}: {str(exc)[:200]})",
        "start the local stack with 'python -m deploy.local up' (or check PUBSUB_EMULATOR_HOST), or your network",
    )


class _PublishRun:
    """The publishing loop of one job and the bookkeeping for its final manifest."""

    def __init__(self, job_id: str, source: FrameSource, options: JobOptions, policy: Policy,
                 settings: Settings, store: JobWriter, publisher_client: Any, stop: StopRequest,
                 inline_limit_bytes: int, manifest: Manifest, plan: ResumePlan | None = None) -> None:
        self.job_id, self.source, self.options, self.policy, self.settings = job_id, source, options, policy, settings
        self.store, self.stop = store, stop
        self.inline_limit_bytes = inline_limit_bytes
        self.manifest = manifest
        """The running manifest as written at the start; heartbeats and the end write copies of it."""
        self.plan = plan or ResumePlan(0, None, None)
        self.confirmed = ConfirmedPrefix(self.plan.start, self.plan.first_timestamp_us,
                                         self.plan.confirmed_timestamp_us)
        self.publisher = FramePublisher(publisher_client, settings.topic_path, on_settled=self.confirmed.settled)
        self.heartbeat = Heartbeat(options.heartbeat_interval, self._beat, name=f"heartbeat-{job_id}")
        self._manifest_lock = threading.Lock()
        self._final_written = False
        self.first_timestamp_us: int | None = self.plan.first_timestamp_us
        self.last_timestamp_us: int | None = self.plan.confirmed_timestamp_us
        self.last_frame_index: int | None = self.plan.start - 1 if self.plan.start else None
        self.first_decoded_us: int | None = None
        self.last_decoded_us: int | None = None
        self.claim_checked = 0
        self.frames_decoded = 0
        self.frames_dropped = 0
        self.bound_reached: str | None = None
        """Why reading ended early without a stop request (``--duration``), for the log."""
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.deadline: float | None = None

    def run(self, write_first: Callable[[Manifest], None], handle_signals: bool, show_progress: bool,
            flush_timeout_s: float) -> JobReport:
        """Write the first manifest with ``write_first``, publish with heartbeats, finish; the job's report."""
        with stop_on_signals(self.stop) if handle_signals else nullcontext(self.stop):  # a signal stops from here
            write_first(self.manifest)
            log.info("job %s: manifest written, publishing %s to %s (%s%s)", self.job_id, self.source.info.name,
                     self.settings.topic_path, self.policy,
                     f", resuming at frame {self.plan.start}" if self.plan.start else "")
            self.heartbeat.start()
            try:
                self.publish_all(show_progress)
                return self.finish(self.manifest, flush_timeout_s)
            finally:
                self.heartbeat.stop()

    def _beat(self) -> None:
        """One heartbeat: the running manifest with the confirmed progress (never after the final manifest)."""
        with self._manifest_lock:
            if not self._final_written:
                progress = self.confirmed.snapshot()
                self.store.write_heartbeat(self.manifest.beat(progress.frames_confirmed, progress.first_timestamp_us,
                                                              progress.confirmed_timestamp_us))

    def publish_all(self, show_progress: bool) -> None:
        """Publish until the end, ``max_frames``, ``duration``, a stop request or a failure; never raises.

        Decoding, sampling, resizing and encoding run :data:`PREFETCH_FRAMES` ahead in a thread
        (OpenCV releases the GIL) while this thread publishes; ``latest-frame`` drops the oldest of
        them when publishing falls behind. On a stop request no new frame is read, and every frame
        already read and encoded is still published.
        """
        if self.stop.requested:  # before the first frame was read: a 'stopped' job with no frames
            return
        start, max_items = self.plan.start, self.options.max_frames
        if max_items is not None:
            max_items -= start
            if max_items <= 0:  # a resumed job whose --max-frames frames are all confirmed
                return
        if self.options.duration is not None and is_live(self.source.info):
            self.deadline = time.monotonic() + self.options.duration  # ends a live job even while it stalls
        with tqdm(total=self._expected_frames(), initial=start, unit="frame", desc=self.job_id, file=sys.stderr,
                  disable=None if show_progress else True, dynamic_ncols=True) as progress, \
                Prefetcher(self._encoded_frames(), PREFETCH_FRAMES, name=f"decode-{self.job_id}",
                           policy="drop-oldest" if self.policy == "latest-frame" else "block",
                           max_items=max_items, stop_grace_s=STOP_GRACE_S,
                           should_stop=self._should_stop, on_stop=self._interrupt_source) as frames:
            try:
                for frame in number_published(frames, start):  # frame_index given here, after any drop
                    self._publish_one(frame)
                    progress.update()
                    if self.publisher.failed:
                        break
            except KeyboardInterrupt:
                self.stop.request("interrupted")
            except Exception as exc:  # recorded in the manifest as 'failed', raised by finish()
                self.error = exc
            finally:
                self.frames_dropped = frames.dropped
                if frames.abandoned:
                    log.warning("job %s: the source did not return within %g s of the stop; finishing without it",
                                self.job_id, STOP_GRACE_S)

    def _should_stop(self) -> bool:
        """Polled by the read-ahead queue: stop reading (signal, or a live ``--duration`` that ran out)?"""
        if self.deadline is not None and self.bound_reached is None and time.monotonic() >= self.deadline:
            self.bound_reached = f"--duration {self.options.duration:g} s reached"
        return self.stop.requested or self.bound_reached is not None

    def _interrupt_source(self) -> None:
        interrupt = getattr(self.source, "interrupt", None)
        if interrupt is not None:
            interrupt()

    def _encoded_frames(self) -> Iterator[tuple[int, EncodedFrame]]:
        """``(timestamp_us, jpeg)`` of each frame that may be published: decode → sample → bound → (resume: leave
        out what was published) → resize → encode.

        Not numbered yet: ``latest-frame`` may still drop some of them in the read-ahead queue.
        """
        max_side, resize, quality = self.options.max_side, self.options.resize, self.options.jpeg_quality
        kept = self._kept_frames()
        if self.plan.start:
            kept = skip_published(kept, self.plan, lambda f: f.timestamp_us, self.job_id)
        for frame in kept:
            image = frame.image
            if max_side is not None or resize is not None:
                height, width = image.shape[:2]
                image = resize_image(image, output_size(width, height, max_side, resize))
            yield frame.timestamp_us, encode_jpeg(image, quality)

    def _kept_frames(self) -> Iterator[DecodedFrame]:
        """The decoded frames ``--fps`` sampling keeps, up to ``--duration``: the frames numbered 0, 1, 2, ..."""
        sampler = TimestampSampler(self.options.fps)
        duration_us = None if self.options.duration is None else round(self.options.duration * 1e6)
        for frame in sampled(self._counted(self.source.frames()), sampler, lambda f: f.timestamp_us):
            if duration_us is not None and frame.timestamp_us - (self.first_decoded_us or 0) >= duration_us:
                self.bound_reached = f"--duration {self.options.duration:g} s reached"
                return
            yield frame

    def _counted(self, frames: Iterator[DecodedFrame]) -> Iterator[DecodedFrame]:
        for frame in frames:
            self.frames_decoded += 1
            if self.first_decoded_us is None:
                self.first_decoded_us = frame.timestamp_us
            self.last_decoded_us = frame.timestamp_us
            yield frame

    def _publish_one(self, frame: PublishedFrame[EncodedFrame]) -> None:
        message = frame_message(self.job_id, frame.frame_index, frame.timestamp_us, frame.content,
                                self.settings.bucket, self.inline_limit_bytes)
        if message.payload_name is not None:
            self.store.put_payload(message.payload_name, frame.content.data)
            self.claim_checked += 1
        self.confirmed.sent(frame.frame_index, frame.timestamp_us)
        self.publisher.publish(message.data, message.attributes, frame.frame_index)
        if self.first_timestamp_us is None:
            self.first_timestamp_us = frame.timestamp_us
        self.last_timestamp_us, self.last_frame_index = frame.timestamp_us, frame.frame_index

    def _expected_frames(self) -> int | None:
        """Estimate of the frames to publish, for the progress bar."""
        info, options = self.source.info, self.options
        total = info.frame_count
        if total is not None and options.fps and info.fps:
            total = math.ceil(total * min(1.0, options.fps / info.fps))
        if total is not None and options.duration and info.fps:
            total = min(total, math.ceil(options.duration * min(info.fps, options.fps or info.fps)))
        if options.max_frames is not None:
            total = min(total, options.max_frames) if total is not None else options.max_frames
        return total

    def _video_seconds(self) -> float:
        """Source time covered by the decoded frames (one frame interval past the last); 0 for live sources."""
        info = self.source.info
        if is_live(info) or self.first_decoded_us is None or self.last_decoded_us is None:
            return 0.0
        interval = 1 / info.fps if info.fps else 0.0
        return (self.last_decoded_us - self.first_decoded_us) / 1e6 + interval

    def finish(self, manifest: Manifest, flush_timeout_s: float) -> JobReport:
        """Flush, write the final manifest, and return the report (or raise if the job failed)."""
        aborted = False
        try:
            flushed = self.publisher.flush(flush_timeout_s)
        except KeyboardInterrupt:
            flushed, aborted = False, True
        seconds = time.perf_counter() - self.started
        self.heartbeat.stop()
        failure = self._failure(flushed, aborted, flush_timeout_s)
        state = "failed" if failure else ("stopped" if self.stop.requested else "complete")
        progress = self.confirmed.snapshot()
        final = manifest.finish(
            state, frames_published=self.plan.start + self.publisher.succeeded, frames_dropped=self.frames_dropped,
            first_timestamp_us=self.first_timestamp_us, last_timestamp_us=self.last_timestamp_us,
            last_frame_index=self.last_frame_index, error=str(failure) if failure else None,
            gaps=tuple(getattr(self.source, "gaps", ())), gaps_total=getattr(self.source, "gaps_total", 0),
            images_skipped=len(getattr(self.source, "skipped", None) or ()),
            frames_confirmed=progress.frames_confirmed, confirmed_timestamp_us=progress.confirmed_timestamp_us,
        )
        with self._manifest_lock:
            self._final_written = True
            self.store.update_manifest(final)
        if not aborted:
            self.publisher.close()
        if self.claim_checked:
            log.info("job %s: %d frames went through the claim check", self.job_id, self.claim_checked)
        if self.bound_reached:
            log.info("job %s: %s", self.job_id, self.bound_reached)
        if aborted:
            raise KeyboardInterrupt(f"job {self.job_id} aborted; manifest says 'failed'")
        if failure is not None:
            if isinstance(failure, ProducerError):
                raise failure.for_job(self.job_id) from self.error
            raise failure  # an unexpected error: keep its traceback
        return JobReport(self.job_id, state, final, self.frames_decoded, self.publisher.succeeded,
                         seconds, self.stop.reason, self.stop.signal_number, self.frames_dropped,
                         self._video_seconds(), self.plan.start if self.plan.start else None)

    def _failure(self, flushed: bool, aborted: bool, flush_timeout_s: float) -> BaseException | None:
        """Why the job failed, or ``None``: the loop's error first, then failed or unconfirmed publishes."""
        if self.error is not None:
            return self.error
        publisher = self.publisher
        if publisher.failures:
            first = publisher.failures[0]
            if isinstance(first.error, gexc.NotFound):
                return topic_not_found(publisher.topic_path)
            if isinstance(first.error, gexc.ServiceUnavailable | gexc.DeadlineExceeded | gexc.RetryError):
                return pubsub_unreachable(first.error)
            return PublishFailedError(
                f"{publisher.failed} of {publisher.submitted} frames could not be published "
                f"(first: frame {first.frame_index}: {type(first.error).__name__}: {first.error})",
                "check the topic and Pub/Sub quotas, then run the job again with a new job id",
            )
        if aborted or not flushed:
            why = "aborted" if aborted else f"still unconfirmed after {flush_timeout_s:g} s"
            return PublishFailedError(f"{publisher.pending} of {publisher.submitted} publishes {why}",
                                      "check that Pub/Sub is reachable, then run the job again with a new job id")
        return None
