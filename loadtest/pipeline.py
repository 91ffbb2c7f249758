"""``python -m loadtest pipeline``: frames through Pub/Sub at a target rate, capture-to-result latency.

Usage::

    python -m loadtest pipeline --rate 5 --duration 30                 # starts and stops its own local stack
    python -m loadtest pipeline --rate 5 --duration 30 --use-stack     # the stack of `deploy.local up`

    data = run_pipeline(settings, PipelinePlan(rate_fps=5, duration_s=30, image=img, run_dir=d))

One job ``loadtest-<UTC time>-<random>`` with a wall-clock manifest: frame ``i`` is published at
``start + i / rate`` with ``timestamp_us`` = the wall-clock time at that moment (the capture time of
a live camera). Each frame's latency is its stored detections object's creation time (GCS
``timeCreated``) minus that timestamp: queueing in Pub/Sub, push retries after 429s, inference and
storage included. Both clocks are this machine's (the emulators run here); against real GCS the
difference also carries clock skew, at most a few ms on Google's NTP. Frames with an error record
count as failures (``error-record``), frames with nothing stored within the drain time as
``missing``. Results land in a run folder like ``loadtest run``'s (``frames.csv``, ``run.json``,
``report.md``, ``report.png``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framecontract.layout import job_prefix, parse_result_name
from framecontract.manifest import Manifest
from framecontract.settings import Settings
from loadtest.checks import Image
from loadtest.cpu import CpuSampler, judge_client, write_cpu_csv
from loadtest.results import FrameLatency, RunData, load_run, write_frames_csv

Say = Callable[[str], None]
POLL_S = 1.0


@dataclass(frozen=True)
class PipelinePlan:
    """Rate, duration, image, where results go, and how long to wait for the last results."""

    rate_fps: float
    duration_s: float
    image: Image
    run_dir: Path
    drain_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.rate_fps <= 1000:
            raise ValueError(f"--rate must be > 0 and <= 1000 frames/s, got {self.rate_fps:g}")
        if not 0 < self.duration_s <= 3600:
            raise ValueError(f"--duration must be > 0 and <= 3600 s, got {self.duration_s:g}")
        if self.frames < 1:
            raise ValueError("rate x duration gives no frames; raise --rate or --duration")

    @property
    def frames(self) -> int:
        return int(self.rate_fps * self.duration_s)


def new_job_id(now: dt.datetime | None = None) -> str:
    """``loadtest-YYYYmmdd-HHMMSS-xxxx`` (a valid job id)."""
    now = now or dt.datetime.now(dt.UTC)
    return f"loadtest-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def to_us(when: dt.datetime) -> int:
    """A timezone-aware datetime as integer µs since the epoch (exact, no float rounding)."""
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def frame_results(job_id: str, captured: dict[int, int], listed: list[tuple[str, dt.datetime]]) -> list[FrameLatency]:
    """Pure: join the job's published frames (index → capture µs) with listed result objects (name, created).

    A detections object means ``ok``; an error record (without detections) ``error-record``; neither
    ``missing``.
    """
    done: dict[int, tuple[str, int]] = {}
    for name, created in listed:
        parsed = parse_result_name(name)
        if (parsed is None or parsed.job_id != job_id or parsed.kind not in ("detections", "errors")
                or captured.get(parsed.frame_index) != parsed.timestamp_us):
            continue
        outcome = "ok" if parsed.kind == "detections" else "error-record"
        if parsed.frame_index not in done or outcome == "ok":
            done[parsed.frame_index] = (outcome, to_us(created))
    return [
        FrameLatency(index, ts, done[index][1], done[index][0]) if index in done
        else FrameLatency(index, ts, None, "missing")
        for index, ts in sorted(captured.items())
    ]


def _list_results(client: Any, bucket: str, job_id: str) -> list[tuple[str, dt.datetime]]:
    prefix = job_prefix(job_id)
    found = []
    for kind in ("detections", "errors"):
        blobs = client.list_blobs(bucket, prefix=f"{prefix}{kind}/", fields="items(name,timeCreated),nextPageToken")
        for blob in blobs:
            found.append((blob.name, blob.time_created))
    return found


def run_pipeline(settings: Settings, plan: PipelinePlan, say: Say = print, label: str | None = None) -> RunData:
    """Publish, wait for the results, write the run folder, return its data (see the module docstring)."""
    from framecontract.clients import make_publisher, make_storage_client
    from loadtest.report import write_report
    from producer.encode import EncodedFrame
    from producer.messages import frame_message
    from producer.publishing import FramePublisher, PublishLimits
    from producer.storage import JobWriter

    plan.run_dir.mkdir(parents=True, exist_ok=False)
    job_id = new_job_id()
    storage = make_storage_client(settings)
    publisher = FramePublisher(make_publisher(settings, **PublishLimits(batch_max_latency_s=0.005).client_kwargs()),
                               settings.topic_path)
    jobs = JobWriter(storage, settings.bucket)
    manifest = Manifest(job_id=job_id, source=f"loadtest:{plan.image.name}", source_kind="images", clock="wallclock",
                        source_fps=plan.rate_fps, sample_fps=None, width=plan.image.width, height=plan.image.height,
                        options={"loadtest": True, "topic": settings.topic_path})
    jobs.create_manifest(manifest)
    jpeg = EncodedFrame(plan.image.data, plan.image.width, plan.image.height)
    say(f"job {job_id}: publishing {plan.frames} frames of {plan.image.name} at {plan.rate_fps:g}/s "
        f"to {settings.topic_path}")
    sampler = CpuSampler(os.getpid()).start()
    started_at = dt.datetime.now(dt.UTC)
    captured: dict[int, int] = {}
    t0 = time.monotonic()
    for index in range(plan.frames):
        delay = t0 + index / plan.rate_fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        captured[index] = time.time_ns() // 1000
        message = frame_message(job_id, index, captured[index], jpeg, settings.bucket)
        publisher.publish(message.data, message.attributes, frame_index=index)
    publish_s = time.monotonic() - t0
    flushed = publisher.flush(timeout=60)
    jobs.update_manifest(manifest.finish(
        "complete" if flushed and not publisher.failures else "failed", frames_published=publisher.succeeded,
        first_timestamp_us=captured[0], last_timestamp_us=captured[plan.frames - 1],
        last_frame_index=plan.frames - 1))
    say(f"published {publisher.succeeded}/{plan.frames} in {publish_s:.1f} s; waiting up to "
        f"{plan.drain_timeout_s:g} s for the results ...")
    deadline = time.monotonic() + plan.drain_timeout_s
    while True:
        listed = _list_results(storage, settings.bucket, job_id)
        frames = frame_results(job_id, captured, listed)
        stored = sum(1 for f in frames if f.outcome != "missing")
        if stored >= plan.frames or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    samples = sampler.stop()
    write_cpu_csv(samples, plan.run_dir / "cpu.csv")
    write_frames_csv(frames, plan.run_dir / "frames.csv")
    meta = {
        "kind": "pipeline", "label": label or plan.run_dir.name, "job_id": job_id, "rate_fps": plan.rate_fps,
        "duration_s": plan.duration_s, "frames": plan.frames, "published": publisher.succeeded,
        "publish_failures": len(publisher.failures), "publish_seconds": round(publish_s, 3),
        "image": {"name": plan.image.name, "bytes": len(plan.image.data), "width": plan.image.width,
                  "height": plan.image.height},
        "stored": stored, "topic": settings.topic_path, "bucket": settings.bucket,
        "started_at": started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "ended_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "client": dataclasses.asdict(judge_client(samples)),
    }
    (plan.run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    data = load_run(plan.run_dir)
    write_report([data], plan.run_dir, command=f"python -m loadtest pipeline --rate {plan.rate_fps:g} "
                                               f"--duration {plan.duration_s:g}")
    say(f"{stored}/{plan.frames} frames stored; sustained {data.totals.ok_per_s:.1f} frames/s; latency p50 "
        f"{data.totals.p50_ms or 0:.0f} ms, p95 {data.totals.p95_ms or 0:.0f} ms")
    return data
