"""A file in Cloud Storage published by a Cloud Run job whose tasks are its chunks.

Usage (what ``python -m deploy.gcp decode`` runs in the job; locally against the emulators too)::

    python -m producer.cloudjob plan gs://videos/long.mp4 --job-id J --chunks 40 [--fps 5 --max-side 960 ...]
    CLOUD_RUN_TASK_INDEX=3 CLOUD_RUN_TASK_COUNT=40 python -m producer.cloudjob run J

``plan`` (one task) does what the local producer does before it publishes: the demux pass over the object
(one sequential read), every frame's timestamp, sampling decision and ``frame_index``, ``--chunks``
keyframe-aligned chunks; it writes the plan (``jobs/<job>/chunks/plan.json``: each chunk's packets with their
byte ranges and CRCs, the decoder's parameters, the object's generation) and then the job's ``running``
manifest, and prints the job id.

``run`` (every task of the execution) publishes the chunks ``n`` with ``n % CLOUD_RUN_TASK_COUNT ==
CLOUD_RUN_TASK_INDEX``: each reads only its byte ranges of the object (that generation), and records its
progress in ``jobs/<job>/chunks/<n>.json`` (the chunk's record as the manifest holds it, with ``heartbeat_at``),
written by that task only, every heartbeat and at the end. Task 0 also keeps the job's manifest: every
heartbeat it merges the chunk records into it (``chunks``, the contiguous ``frames_confirmed``), and once every
chunk has ended (or one has been silent for :func:`silent_after_s`) it writes the final manifest. Running
``run`` again (a retried task, a new execution) continues every chunk from its own confirmed run: that is
``--resume`` for a Cloud Run job. SIGTERM (Cloud Run's timeout or cancel) stops reading and publishes what was
decoded.

Exit status: 0 when this task's chunks (and, for task 0, the job) are complete; 1 otherwise (Cloud Run retries
the task up to the job's ``--max-retries``); 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions as gexc

from framecontract.layout import job_prefix
from framecontract.manifest import Manifest, parse_utc_iso, utc_now_iso
from framecontract.settings import Settings, load_settings
from producer.chunkedjob import gcs_fingerprint
from producer.chunkprogress import ChunkState, contiguous_progress, job_state, last_published
from producer.chunkpublish import ChunkJob, ChunkPublisher
from producer.chunks import Chunk
from producer.demux import CodecParameters
from producer.errors import InputError, ProducerError, UsageError
from producer.options import DEFAULT_JPEG_QUALITY, ProducerOptions, format_size, parse_resize
from producer.parallel import prepare_chunks, publish_limits
from producer.progress import Heartbeat
from producer.resume import ResumePlan, resumed_manifest
from producer.stopping import StopRequest, stop_on_signals

log = logging.getLogger("producer.cloudjob")

PLAN_SCHEMA = "1"
HANDOVER_HEARTBEAT_S = 60.0
"""The manifest ``plan`` writes promises a heartbeat every 60 s (stale after 180 s): time for the run's tasks to
start; task 0 then writes every ``--heartbeat`` seconds."""
MAX_CHUNKS = 1000
"""One record per chunk in the manifest (about 300 bytes each; manifests are at most 4 MiB)."""


def plan_name(job_id: str) -> str:
    return f"{job_prefix(job_id)}chunks/plan.json"


def chunk_record_name(job_id: str, chunk: int) -> str:
    return f"{job_prefix(job_id)}chunks/{chunk:06d}.json"


def task_chunks(chunks: int, index: int, count: int) -> list[int]:
    """The chunks task ``index`` of ``count`` publishes: every ``count``-th from ``index`` (pure).

    >>> task_chunks(10, 1, 4), task_chunks(3, 3, 4)
    ([1, 5, 9], [])
    """
    return list(range(index, chunks, count))


def silent_after_s(heartbeat_interval_s: float) -> float:
    """A chunk whose task has not written its record for this long is taken to be lost (its task died)."""
    return max(3 * heartbeat_interval_s, 60.0)


class CloudPlan:
    """What every task of the job needs: the job, the object and its generation, the options, the chunks."""

    def __init__(self, job: ChunkJob, chunks: tuple[Chunk, ...], heartbeat_interval_s: float) -> None:
        self.job, self.chunks, self.heartbeat_interval_s = job, chunks, heartbeat_interval_s

    def to_json(self) -> str:
        job = self.job
        return json.dumps({
            "schema": PLAN_SCHEMA, "job_id": job.job_id, "source": job.source, "generation": job.generation,
            "codec": job.codec.to_json(), "jpeg_quality": job.jpeg_quality, "max_side": job.max_side,
            "resize": format_size(job.resize) if job.resize else None,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "chunks": [chunk.to_json() for chunk in self.chunks]}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, settings: Settings) -> CloudPlan:
        data = json.loads(text)
        if data.get("schema") != PLAN_SCHEMA:
            raise InputError(f"unknown plan schema {data.get('schema')!r}", "plan the job again with this producer")
        job = ChunkJob(data["job_id"], data["source"], CodecParameters.from_json(data["codec"]), settings,
                       int(data["jpeg_quality"]), data["max_side"],
                       parse_resize(data["resize"]) if data["resize"] else None,
                       limits=publish_limits(1), generation=data["generation"])
        return cls(job, tuple(Chunk.from_json(c) for c in data["chunks"]), float(data["heartbeat_interval_s"]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m producer.cloudjob",
                                     description="Plan a gs:// video into chunks, or publish a task's chunks.")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="demux the object, plan every frame, write the plan and the manifest")
    plan.add_argument("source", metavar="gs://BUCKET/OBJECT")
    plan.add_argument("--job-id", required=True)
    plan.add_argument("--chunks", type=int, required=True, help=f"how many chunks to cut (1..{MAX_CHUNKS})")
    plan.add_argument("--fps", type=float)
    plan.add_argument("--max-frames", type=int)
    plan.add_argument("--duration", type=float)
    size = plan.add_mutually_exclusive_group()
    size.add_argument("--max-side", type=int)
    size.add_argument("--resize")
    plan.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY)
    plan.add_argument("--heartbeat", type=float, default=5.0)
    run = sub.add_parser("run", help="publish this task's chunks (CLOUD_RUN_TASK_INDEX of CLOUD_RUN_TASK_COUNT)")
    run.add_argument("job_id", metavar="JOB")
    return parser


def plan_job(args: argparse.Namespace, settings: Settings, clients: Any = None) -> str:
    """The ``plan`` command: the plan object and the ``running`` manifest; the job id."""
    from producer.byteranges import is_gcs_uri, open_byte_ranges
    from producer.job import JobClients, check_topic, manifest_for
    from producer.storage import JobWriter

    if not is_gcs_uri(args.source):
        raise UsageError(f"{args.source!r} is not a gs:// object", "upload the video to Cloud Storage first")
    if not 1 <= args.chunks <= MAX_CHUNKS:
        raise UsageError(f"--chunks must be 1..{MAX_CHUNKS}, got {args.chunks}", "cut fewer chunks")
    options = ProducerOptions(job_id=args.job_id, fps=args.fps, max_frames=args.max_frames, duration=args.duration,
                              max_side=args.max_side, resize=args.resize, jpeg_quality=args.jpeg_quality,
                              heartbeat_interval=args.heartbeat).validated()
    clients = clients or JobClients.from_settings(settings)
    prepared = prepare_chunks(args.source, options, 1, settings, storage_client=clients.storage,
                              target_chunks=args.chunks)
    with open_byte_ranges(args.source, client=clients.storage, generation=prepared.generation) as ranges:
        fingerprint = gcs_fingerprint(ranges)  # type: ignore[arg-type]
    check_topic(clients.publisher, settings.topic_path)
    store = JobWriter(clients.storage, settings.bucket)
    job = ChunkJob(args.job_id, args.source, prepared.table.codec, settings, options.jpeg_quality, options.max_side,
                   options.resize, generation=prepared.generation)
    plan = CloudPlan(job, prepared.chunks, options.heartbeat_interval)
    blob = clients.storage.bucket(settings.bucket).blob(plan_name(args.job_id))
    try:
        blob.upload_from_string(plan.to_json(), content_type="application/json", if_generation_match=0)
    except gexc.PreconditionFailed:
        raise UsageError(f"job {args.job_id!r} already has a plan", "choose another --job-id") from None
    manifest = manifest_for(args.job_id, prepared.info, options, settings, decoder="PyAV, in chunks",
                            cloud_run_chunks=len(prepared.chunks))
    records = tuple(ChunkState.planned(c).to_record() for c in prepared.chunks)
    manifest = dataclasses.replace(manifest, source_fingerprint=fingerprint, chunks=records,
                                   heartbeat_interval_s=HANDOVER_HEARTBEAT_S)
    store.create_manifest(manifest)
    log.info("job %s: %d chunks planned, %d frames to publish", args.job_id, len(prepared.chunks),
             prepared.frames.published)
    return args.job_id


class ChunkRecords:
    """This task's chunk records in the bucket: one object per chunk, written by the task publishing it."""

    def __init__(self, bucket: Any, job_id: str, interval_s: float) -> None:
        self.bucket, self.job_id, self.interval_s = bucket, job_id, interval_s
        self._written: dict[int, float] = {}
        self._lock = threading.Lock()  # the publishing thread and the chunk's reporter thread both report

    def read_all(self) -> dict[int, dict[str, Any]]:
        """Every chunk record of the job (``heartbeat_at`` included), by chunk number."""
        records = {}
        for blob in self.bucket.list_blobs(prefix=f"{job_prefix(self.job_id)}chunks/"):
            name = blob.name.rsplit("/", 1)[-1]
            if name[:-5].isdigit() and name.endswith(".json"):
                records[int(name[:-5])] = json.loads(blob.download_as_bytes())
        return records

    def report(self, state: ChunkState) -> None:
        """Write ``state`` if its chunk's record is older than the interval, or if it is final."""
        with self._lock:
            now = time.monotonic()
            if not state.finished and now - self._written.get(state.chunk, -1e9) < self.interval_s:
                return
            self._written[state.chunk] = now
            record = {**state.to_record(), "heartbeat_at": utc_now_iso()}
            try:
                self.bucket.blob(chunk_record_name(self.job_id, state.chunk)).upload_from_string(
                    json.dumps(record), content_type="application/json")
            except (gexc.GoogleAPIError, OSError) as exc:  # the next report tries again; a final one fails the task
                log.warning("chunk %d: record not written (%s)", state.chunk, exc)
                if state.finished:
                    raise


def merged_states(manifest: Manifest, records: dict[int, dict[str, Any]]) -> list[ChunkState]:
    """Each chunk as its task last recorded it, else as the manifest has it (pure)."""
    return [ChunkState.from_record(records.get(r["chunk"], r)) for r in manifest.chunks]


def lost_chunks(records: dict[int, dict[str, Any]], now: dt.datetime, silent_s: float) -> list[int]:
    """Chunks recorded ``running`` whose task has been silent for ``silent_s`` (pure)."""
    lost = []
    for number, record in records.items():
        at = parse_utc_iso(record.get("heartbeat_at"))
        if record.get("state") == "running" and at is not None and (now - at).total_seconds() >= silent_s:
            lost.append(number)
    return sorted(lost)


class Coordinator:
    """Task 0's keeper of the manifest: heartbeats from the chunk records, and the final manifest."""

    def __init__(self, store: Any, records: ChunkRecords, manifest: Manifest, interval_s: float) -> None:
        self.store, self.records, self.manifest, self.interval_s = store, records, manifest, interval_s
        self.lock = threading.Lock()
        self.final_written = False
        self.heartbeat = Heartbeat(interval_s, self.beat, name="coordinator")

    def states(self) -> list[ChunkState]:
        return merged_states(self.manifest, self.records.read_all())

    def beat(self) -> None:
        states = self.states()
        progress = contiguous_progress(states)
        with self.lock:
            if self.final_written:
                return
            beat = self.manifest.beat(progress.frames_confirmed, progress.first_timestamp_us,
                                      progress.confirmed_timestamp_us)
            self.store.write_heartbeat(dataclasses.replace(beat, chunks=tuple(s.to_record() for s in states)))

    def wait_and_finish(self, stop: StopRequest) -> str:
        """Wait until every chunk has ended or one is lost (or a stop), then write the final manifest."""
        silent_s = silent_after_s(self.interval_s)
        last_change, last_records = time.monotonic(), None
        while not stop.requested:
            records = self.records.read_all()
            states = merged_states(self.manifest, records)
            if all(s.finished for s in states):
                break
            if records != last_records:
                last_change, last_records = time.monotonic(), records
            lost = lost_chunks(records, dt.datetime.now(dt.UTC), silent_s)
            if lost or (time.monotonic() - last_change >= silent_s and not any(s.state == "running" for s in states)):
                break
            time.sleep(self.interval_s)
        return self.finish(stop)

    def finish(self, stop: StopRequest) -> str:
        self.heartbeat.stop()
        records = self.records.read_all()
        lost = set(lost_chunks(records, dt.datetime.now(dt.UTC), silent_after_s(self.interval_s)))
        states = [s.advanced(state="failed", error="its task stopped writing its record (killed or lost)")
                  if s.chunk in lost else s for s in merged_states(self.manifest, records)]
        state = job_state(states, stop.requested)
        failed = [s for s in states if not s.complete]
        error = None
        if state == "failed":
            names = ", ".join(f"{s.chunk} ({s.state}{': ' + s.error if s.error else ''})" for s in failed[:5])
            error = (f"{len(failed)} of {len(states)} chunks did not complete: {names}; run the job again to publish "
                     "the rest (each chunk continues from its confirmed frames)")
        progress = contiguous_progress(states)
        last_index, last_ts = last_published(states)
        final = self.manifest.finish(
            state, frames_published=sum(s.published for s in states), first_timestamp_us=progress.first_timestamp_us,
            last_timestamp_us=last_ts, last_frame_index=last_index, error=error,
            frames_confirmed=progress.frames_confirmed, confirmed_timestamp_us=progress.confirmed_timestamp_us)
        final = dataclasses.replace(final, chunks=tuple(s.to_record() for s in states))
        with self.lock:
            self.final_written = True
            self.store.update_manifest(final)
        return state


def run_task(job_id: str, settings: Settings, index: int, count: int, stop: StopRequest,
             clients: Any = None) -> bool:
    """The ``run`` command for task ``index`` of ``count``: True if its chunks (and, task 0, the job) completed."""
    from framecontract.layout import gs_uri
    from producer.job import JobClients
    from producer.storage import JobWriter

    clients = clients or JobClients.from_settings(settings)
    store = JobWriter(clients.storage, settings.bucket)
    bucket = clients.storage.bucket(settings.bucket)
    try:
        plan = CloudPlan.from_json(bucket.blob(plan_name(job_id)).download_as_bytes(), settings)
    except gexc.NotFound:
        raise InputError(f"job {job_id!r} has no plan at {gs_uri(settings.bucket, plan_name(job_id))}",
                         "run 'python -m producer.cloudjob plan' first") from None
    manifest = store.read_manifest(job_id)
    if manifest is None or not manifest.chunks:
        raise InputError(f"job {job_id!r} has no manifest with chunks", "plan the job again")
    interval = plan.heartbeat_interval_s
    records = ChunkRecords(bucket, job_id, interval)
    coordinator = None
    if index == 0:
        if manifest.is_final:  # a new execution of a stopped or failed job: it runs again
            running = resumed_manifest(manifest, ResumePlan.of(manifest), interval)
        else:
            running = dataclasses.replace(manifest, heartbeat_interval_s=interval)
        coordinator = Coordinator(store, records, running, interval)
        coordinator.beat()
        coordinator.heartbeat.start()
    known = records.read_all()
    publisher = ChunkPublisher(dataclasses.replace(plan.job, settings=settings), storage_client=clients.storage)
    ok = True
    try:
        for number in task_chunks(len(plan.chunks), index, count):
            if stop.requested:
                ok = False
                break
            chunk = plan.chunks[number]
            state = ChunkState.from_record(known.get(number, manifest.chunks[number]))
            if state.complete:
                continue
            state = state.advanced(state="pending", published=state.confirmed, error=None)
            final = publisher.publish(chunk, state, records.report, lambda: stop.requested)
            ok = ok and final.complete
    finally:
        publisher.close()
    if coordinator is not None:
        return coordinator.wait_and_finish(stop) == "complete" and ok
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        if args.command == "plan":
            print(plan_job(args, settings), flush=True)
            return 0
        index = int(os.environ.get("CLOUD_RUN_TASK_INDEX", "0"))
        count = int(os.environ.get("CLOUD_RUN_TASK_COUNT", "1"))
        stop = StopRequest()
        with stop_on_signals(stop):
            return 0 if run_task(args.job_id, settings, index, count, stop) else 1
    except ProducerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
