"""A job published in chunks: which sources are, starting one, and resuming one chunk by chunk.

Usage::

    processes = chunked_processes("videos/long.mp4", options, default_parallel=os.cpu_count())   # 0: sequential
    report = run_chunked_job("videos/long.mp4", options, settings, processes, handle_signals=True)
    report = resume_chunked_job("videos/long.mp4", manifest, options, settings, store, clients, processes)

Which sources: a video file when more than one process is asked for (``--parallel N``, the command line's
default being one per core, for files of at least :data:`DEFAULT_PARALLEL_MIN_FRAMES` frames) and the policy is
``every-frame``; a ``gs://`` object always (it is read by byte
range, never by OpenCV). Live sources and folders of images stay sequential; asking for ``--parallel`` with
them is a usage error. A local file that cannot be cut exactly (:class:`~producer.parallel.NotChunkable`: an
open GOP at the start, frames without timestamps, a rotation OpenCV applies, ...) is published sequentially
with a warning.

The order of work is the sequential producer's (nothing exists until the source is known to be usable): the
file opened by OpenCV and its first frame decoded, the demux pass and the plan, the topic checked, the manifest
created (``options.parallel`` and the chunk records in it), then the chunks published
(:class:`~producer.parallel.ParallelRun`).

Resuming: the manifest's chunk records say where the job was cut and how far each chunk's confirmed run got.
The file is demuxed and planned again, cut at the same places; every chunk must publish the same frames under
the same indices as recorded (else the file does not decode as it did), and only the chunks that are not
complete are published again, each from its first unconfirmed frame.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from framecontract.manifest import Manifest
from framecontract.message import MAX_INLINE_PAYLOAD_BYTES
from framecontract.settings import Settings
from producer.byteranges import GcsRanges, is_gcs_uri, open_byte_ranges
from producer.chunkprogress import ChunkState
from producer.chunks import Chunk
from producer.errors import InputError, UsageError
from producer.opening import classify_source, open_source
from producer.options import JobOptions
from producer.parallel import NotChunkable, ParallelRun, prepare_chunks
from producer.redact import redact_url
from producer.resume import ResumePlan, check_same_source, fingerprint_of, resumed_manifest
from producer.sources import SourceInfo
from producer.stopping import StopRequest
from producer.storage import JobWriter

log = logging.getLogger(__name__)

DEFAULT_PARALLEL_MIN_FRAMES = 2000
"""Without ``--parallel``, a file shorter than this (by the container's frame count) is published by one process:
starting each worker costs about 0.8 s of CPU (imports, clients), more than chunks save on a short file (on this
project's 2-core machine vtest.avi's 795 frames publish in 1.4 s sequentially, 2.2 s in chunks). An explicit
``--parallel N`` always publishes in chunks."""


def chunked_processes(source: str, options: JobOptions, default_parallel: int) -> int:
    """How many processes publish ``source`` in chunks; 0: it is published sequentially (checks only, no I/O
    beyond telling a file from a folder). :class:`UsageError` for ``--parallel`` with a live source or a folder."""
    explicit = options.parallel
    spec = classify_source(source)
    if spec.kind == "gcs":
        return explicit or default_parallel
    if spec.kind in ("http", "stream") or (spec.kind == "webcam" and not Path(source).exists()):
        if explicit is not None and explicit > 1:
            what = "a webcam" if spec.kind == "webcam" else "a live source"
            raise UsageError(f"--parallel decodes a video file in chunks; {redact_url(source)!r} is {what}, "
                             "published as it arrives", "omit --parallel")
        return 0
    if Path(spec.target).is_dir():
        if explicit is not None and explicit > 1:
            raise UsageError(f"--parallel decodes a video file in chunks; {source!r} is a folder of images, "
                             "published by one process", "omit --parallel")
        return 0
    processes = explicit or default_parallel
    if processes <= 1 or options.policy_for(False) != "every-frame" or not Path(spec.target).is_file():
        return 0  # a missing path: the sequential opener says what is wrong, as always
    return processes


def gcs_fingerprint(ranges: GcsRanges) -> dict[str, Any]:
    """What identifies a Cloud Storage object for ``--resume``: its size and CRC32C (GCS keeps both)."""
    return {"method": "Cloud Storage object size + crc32c", "size": ranges.size, "crc32c": ranges.crc32c}


def run_chunked_job(source: str, options: JobOptions, settings: Settings, processes: int, *, clients: Any = None,
                    stop: StopRequest | None = None, handle_signals: bool = False, show_progress: bool = False,
                    inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES, worker_target: Any = None,
                    min_frames: int = 0) -> Any:
    """Publish a video file or ``gs://`` object in chunks by ``processes`` processes; the job's report.

    A local file of fewer than ``min_frames`` frames is published by one process instead (``run_job`` passes
    :data:`DEFAULT_PARALLEL_MIN_FRAMES` when ``--parallel`` was not given)."""
    from producer.job import JobClients, check_topic, job_name_of, manifest_for, run_job

    if is_gcs_uri(source):
        clients = clients or JobClients.from_settings(settings)  # the object is read through the storage client
        prepared = prepare_chunks(source, options, processes, settings, storage_client=clients.storage)
        with open_byte_ranges(source, client=clients.storage, generation=prepared.generation) as ranges:
            fingerprint = gcs_fingerprint(ranges)  # type: ignore[arg-type]
    else:
        opened = open_source(source, options)  # OpenCV, first frame decoded: bad input fails as it always has
        count = opened.info.frame_count
        if count is not None and count < min_frames:
            log.info("%s: %d frames, too short for worker processes to pay off; publishing it with one process",
                     source, count)
            return run_job(opened, options, settings, clients=clients, stop=stop, handle_signals=handle_signals,
                           show_progress=show_progress, inline_limit_bytes=inline_limit_bytes)
        with closing(opened):
            first = getattr(opened, "first_image", None)
            try:
                prepared = prepare_chunks(source, options, processes, settings, opencv=(opened.info, first))
            except NotChunkable as exc:
                log.warning("%s; publishing it with one process", exc.problem)
                return run_job(opened, options, settings, clients=clients, stop=stop, handle_signals=handle_signals,
                               show_progress=show_progress, inline_limit_bytes=inline_limit_bytes)
            fingerprint = fingerprint_of(opened.info)
    clients = clients or JobClients.from_settings(settings)
    job_id = options.job_id_for(job_name_of(prepared.info))
    check_topic(clients.publisher, settings.topic_path)
    store = JobWriter(clients.storage, settings.bucket)
    manifest = manifest_for(job_id, prepared.info, options, settings, parallel=processes,
                            decoder="PyAV, in chunks")
    manifest = dataclasses.replace(manifest, source_fingerprint=fingerprint)
    run = ParallelRun(job_id, prepared, options, settings, store, manifest, processes, stop,
                      inline_limit_bytes=inline_limit_bytes, worker_target=worker_target)
    return run.run(store.create_manifest, handle_signals, show_progress)


def check_same_chunks(job_id: str, chunks: Sequence[Chunk], states: Sequence[ChunkState]) -> None:
    """:class:`InputError` unless ``chunks`` (planned again) publish what the job's chunk records say (pure)."""
    remedy = "the file does not decode as it did when the job started (another FFmpeg?); start a new job"
    if len(chunks) != len(states):
        raise InputError(f"job {job_id!r}: the file now cuts into {len(chunks)} chunks, the job recorded "
                         f"{len(states)}", remedy)
    for chunk, state in zip(chunks, states, strict=True):
        if (chunk.first_frame_index, chunk.frames) != (state.first_frame_index, state.frames):
            raise InputError(f"job {job_id!r}: chunk {chunk.number} now holds frames {chunk.first_frame_index}.."
                             f"{chunk.first_frame_index + chunk.frames - 1}, the job recorded "
                             f"{state.first_frame_index}..{state.first_frame_index + state.frames - 1}", remedy)
        if state.confirmed and chunk.kept[state.confirmed - 1][1] != state.confirmed_timestamp_us:
            raise InputError(f"job {job_id!r}: frame {state.first_frame_index + state.confirmed - 1} is now at "
                             f"{chunk.kept[state.confirmed - 1][1]} µs, the job recorded "
                             f"{state.confirmed_timestamp_us} µs", remedy)


def resume_chunked_job(source: str, manifest: Manifest, options: JobOptions, settings: Settings, store: JobWriter,
                       clients: Any, processes: int, *, stop: StopRequest | None = None, handle_signals: bool = False,
                       show_progress: bool = False, inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES,
                       worker_target: Any = None) -> Any:
    """Publish the chunks of ``manifest``'s job that are not complete, each from its first unconfirmed frame."""
    from producer.job import check_topic

    states = [ChunkState.from_record(record) for record in manifest.chunks]
    starts = [state.first_position for state in states]
    if is_gcs_uri(source):
        with open_byte_ranges(source, client=clients.storage) as ranges:
            info = SourceInfo(source, "file", "stream", None, 0, 0, None)
            check_same_source(manifest, gcs_fingerprint(ranges), info)  # type: ignore[arg-type]
        prepared = prepare_chunks(source, options, processes, settings, starts=starts, storage_client=clients.storage)
    else:
        opened = open_source(source, options)
        with closing(opened):
            check_same_source(manifest, fingerprint_of(opened.info), opened.info)
            try:
                prepared = prepare_chunks(source, options, processes, settings, starts=starts,
                                          opencv=(opened.info, getattr(opened, "first_image", None)))
            except NotChunkable as exc:
                raise InputError(f"job {manifest.job_id!r}: {exc.problem}",
                                 "the file does not decode as it did when the job started; start a new job") from None
    check_same_chunks(manifest.job_id, prepared.chunks, states)
    check_topic(clients.publisher, settings.topic_path)
    todo = [s.chunk for s in states if not s.complete]
    states = [s if s.complete else s.advanced(state="pending", published=s.confirmed, error=None) for s in states]
    restarted = resumed_manifest(manifest, ResumePlan.of(manifest), options.heartbeat_interval)
    last = {**restarted.resumes[-1], "chunks": todo}
    restarted = dataclasses.replace(restarted, resumes=(*restarted.resumes[:-1], last))
    run = ParallelRun(manifest.job_id, prepared, options, settings, store, restarted, processes, stop, states=states,
                      inline_limit_bytes=inline_limit_bytes, worker_target=worker_target)
    return run.run(store.update_manifest, handle_signals, show_progress)


def default_processes() -> int:
    """The command line's ``--parallel`` when none is given: one process per core."""
    return os.cpu_count() or 1
