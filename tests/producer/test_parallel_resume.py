"""Parallel jobs that stop, fail or die part-way, and ``--resume`` by chunk, through the real emulators.

- a stopped job: its chunks stop where their confirmed runs end; the resume publishes only what is missing,
  each chunk from its own first unconfirmed frame, every frame exactly once;
- a chunk whose bytes change under it fails; the other chunks complete; the job ends ``failed`` naming the
  chunk; with the file restored, the resume publishes that chunk only;
- a coordinator killed with SIGKILL takes its worker processes with it; the collector calls it stale; the
  resume completes it;
- the heartbeat's ``frames_confirmed`` is the exact contiguous run over the chunks' runs.

Each result is compared, frame by frame, with an uninterrupted sequential run of the same file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from framecontract.clients import make_storage_client
from framecontract.layout import manifest_name
from framecontract.manifest import Manifest
from framecontract.message import FrameAttributes
from framecontract.settings import Settings
from producer.chunkedjob import run_chunked_job
from producer.chunkprogress import ChunkState, contiguous_progress
from producer.job import manifest_for, resume_job, run_job
from producer.parallel import ChunksFailedError, ParallelRun, prepare_chunks
from producer.resume import fingerprint_of
from producer.sources import open_video_file
from producer.stopping import StopRequest
from producer.storage import JobWriter
from tests.producer.helpers import job_options, pull_all, read_manifest
from tests.producer.slow_worker import gated_worker_main
from tests.producer.test_resume_jobs import REPO, cli_env, wait_for


def frames_of(settings: Settings, expected: int) -> dict[str, list[tuple[int, int, bytes]]]:
    """Every pulled message by job: ``(frame_index, timestamp_us, JPEG)``, duplicates kept."""
    jobs: dict[str, list[tuple[int, int, bytes]]] = {}
    for message in pull_all(settings, expected=expected, deadline_s=60):
        attrs = FrameAttributes.from_pubsub(message.attributes)
        jobs.setdefault(attrs.job_id, []).append((attrs.frame_index, attrs.timestamp_us, message.data))
    return jobs


def assert_same_as(reference: list[tuple[int, int, bytes]], got: list[tuple[int, int, bytes]],
                   exactly_once: set[int] | None = None) -> None:
    """``got`` holds every frame of ``reference`` with its timestamp and bytes (those in ``exactly_once`` once)."""
    expected = {index: (ts, data) for index, ts, data in reference}
    counts: dict[int, int] = {}
    for index, ts, data in got:
        assert (ts, data) == expected[index], f"frame {index} differs"
        counts[index] = counts.get(index, 0) + 1
    assert sorted(counts) == sorted(expected), "every frame at least once"
    duplicated = sorted(i for i in exactly_once or expected if counts[i] != 1)
    assert duplicated == [], f"published more than once: {duplicated[:10]}"


def test_a_stopped_parallel_job_resumes_only_what_is_missing(pubsub_settings: Settings, vtest_path: Path) -> None:
    reference = run_job(vtest_path, job_options(job_id="reference", parallel=1, fps=5), pubsub_settings)
    stop = StopRequest()
    seen: list[Manifest] = []

    def stop_once_a_heartbeat_counts_frames() -> None:
        try:  # the gated workers hold their publishes until this stop: it is always requested
            seen.append(wait_for(lambda: (m := read_manifest_or_none(pubsub_settings, "stopped-par")) is not None
                                 and m.frames_confirmed >= 10 and m, "a heartbeat with 10 frames confirmed"))
        finally:
            stop.request("test stop")

    stopper = threading.Thread(target=stop_once_a_heartbeat_counts_frames)
    stopper.start()
    first = run_chunked_job(str(vtest_path), job_options(job_id="stopped-par", fps=5, heartbeat_interval=1.0),
                            pubsub_settings, 2, stop=stop, worker_target=gated_worker_main)
    stopper.join()
    assert first.state == "stopped" and 0 < first.frames_published < reference.frames_published

    beat = seen[0]  # the running heartbeat: frames_confirmed is the contiguous run over the chunks' runs
    assert beat.state == "running" and len(beat.chunks) == 4
    assert beat.frames_confirmed == contiguous_progress([ChunkState.from_record(c) for c in beat.chunks]
                                                        ).frames_confirmed
    stopped = read_manifest(pubsub_settings, "stopped-par")
    states = [ChunkState.from_record(c) for c in stopped.chunks]
    assert stopped.state == "stopped" and {s.state for s in states} <= {"complete", "stopped", "pending"}
    assert any(s.state != "complete" for s in states)
    assert stopped.frames_published == sum(s.published for s in states) == first.frames_published
    assert all(s.published == s.confirmed for s in states), "a stop flushes: everything published is confirmed"

    report = resume_job(vtest_path, "stopped-par", pubsub_settings, parallel=2)
    resumed = [s.chunk for s in states if s.state != "complete"]
    assert (report.state, report.chunks_resumed, report.chunks) == ("complete", len(resumed), 4)
    assert report.frames_published == reference.frames_published - first.frames_published
    assert report.summary().startswith(
        f"job stopped-par complete: resumed {len(resumed)} of 4 chunks and published {report.frames_published} "
        f"frames, {reference.frames_published} in all (")

    jobs = frames_of(pubsub_settings, 2 * reference.frames_published)
    assert_same_as(jobs["reference"], jobs["stopped-par"])  # every frame exactly once
    final = read_manifest(pubsub_settings, "stopped-par")
    assert (final.state, final.frames_published, final.frames_confirmed) == (
        "complete", reference.frames_published, reference.frames_published)
    assert [(r["previous_state"], r["chunks"]) for r in final.resumes] == [("stopped", resumed)]
    resumed_from = {s.chunk: s.confirmed for s in states}
    for record in final.chunks:
        assert record["state"] == "complete" and record["confirmed"] == record["frames"]
        assert resumed_from[record["chunk"]] <= record["published"] == record["frames"]


def read_manifest_or_none(settings: Settings, job_id: str) -> Manifest | None:
    blob = make_storage_client(settings).bucket(settings.bucket).blob(manifest_name(job_id))
    return Manifest.from_json(blob.download_as_bytes()) if blob.exists() else None


def test_a_chunk_that_fails_is_reported_the_others_complete_and_resume_finishes_it(
    pubsub_settings: Settings, vtest_path: Path, tmp_path: Path
) -> None:
    video = tmp_path / "vtest.avi"
    video.write_bytes(vtest_path.read_bytes())
    run_job(video, job_options(job_id="reference", parallel=1), pubsub_settings)
    options = job_options(job_id="broken", parallel=2)
    with open_video_file(video) as opened:
        prepared = prepare_chunks(str(video), options, 2, opencv=(opened.info, opened.first_image))
        fingerprint = fingerprint_of(opened.info)
    assert [c.first_frame_index for c in prepared.chunks] == [0, 250, 500, 750]
    victim = prepared.chunks[2].packets[10]  # a packet of chunk 2's only, in the middle of the file
    original = video.read_bytes()

    def create_manifest_then_damage_chunk_2(manifest: Manifest) -> None:
        store.create_manifest(manifest)
        damaged = bytearray(original)
        damaged[victim.pos + 20: victim.pos + 24] = b"\x00\xff\x00\xff"
        video.write_bytes(bytes(damaged))

    store = JobWriter(make_storage_client(pubsub_settings), pubsub_settings.bucket)
    manifest = dataclasses.replace(manifest_for("broken", prepared.info, options, pubsub_settings, parallel=2,
                                                decoder="PyAV, in chunks"), source_fingerprint=fingerprint)
    run = ParallelRun("broken", prepared, options, pubsub_settings, store, manifest, 2)
    with pytest.raises(ChunksFailedError) as caught:
        run.run(create_manifest_then_damage_chunk_2, handle_signals=False, show_progress=False)

    failed = read_manifest(pubsub_settings, "broken")
    states = {s.chunk: s for s in (ChunkState.from_record(c) for c in failed.chunks)}
    assert failed.state == "failed" and [states[n].state for n in range(4)] == [
        "complete", "complete", "failed", "complete"]
    published = failed.frames_published
    assert published == 250 + 250 + states[2].published + 45 and states[2].confirmed == states[2].published < 250
    reason = (f"chunk 2 (frames 500..749) failed: chunk 2: packet {500 + 10} of '{video}' (bytes {victim.pos}.."
              f"{victim.pos + victim.size}) is not what the demux pass read — the file changed since the job "
              "started, or its container does not store packets as contiguous bytes; start a new job with "
              f"--parallel 1; {published} of 795 frames published")
    assert failed.error == reason and states[2].error == reason.split(" failed: ", 1)[1].rsplit("; ", 1)[0]
    assert str(caught.value) == (f"job broken: {reason} — fix the cause, then 'python -m producer SOURCE --resume "
                                 "broken' publishes the rest, chunk by chunk")
    assert caught.value.exit_code == 1
    assert failed.frames_confirmed == 500 + states[2].confirmed, "the contiguous run stops in chunk 2"

    video.write_bytes(original)
    report = resume_job(video, "broken", pubsub_settings, parallel=2)
    assert (report.state, report.chunks_resumed, report.frames_published) == ("complete", 1, 795 - published)
    jobs = frames_of(pubsub_settings, 2 * 795)
    assert_same_as(jobs["reference"], jobs["broken"])
    assert read_manifest(pubsub_settings, "broken").resumes[-1]["chunks"] == [2]


def test_a_killed_parallel_producer_takes_its_workers_along_and_resume_completes_it(
    pubsub_settings: Settings, vtest_path: Path, tmp_path: Path
) -> None:
    settings = pubsub_settings
    reference = run_job(vtest_path, job_options(job_id="reference", parallel=1, fps=4), settings)
    env = dict(os.environ) | cli_env(settings, tmp_path)
    killed = subprocess.Popen(
        [sys.executable, "-m", "tests.producer.slow_producer", "0.02", str(vtest_path), "--job-id", "killed-par",
         "--fps", "4", "--heartbeat", "1", "--no-progress", "--parallel", "2"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        def running_with_progress() -> Manifest | None:
            assert killed.poll() is None, f"the producer ended before it was killed: {killed.communicate()}"
            manifest = read_manifest_or_none(settings, "killed-par")
            return manifest if manifest is not None and manifest.frames_confirmed >= 20 else None

        wait_for(running_with_progress, "a heartbeat with 20 frames confirmed")
        children = psutil.Process(killed.pid).children(recursive=True)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate()
    assert len(children) >= 2
    wait_for(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
             "the worker processes to die with their coordinator")

    left = read_manifest(settings, "killed-par")
    assert left.state == "running" and 20 <= left.frames_confirmed < reference.frames_published
    wait_for(lambda: left.producer_silence_s(dt.datetime.now(dt.UTC), 1.0) is not None, "the producer to be stale")
    states = [ChunkState.from_record(c) for c in left.chunks]
    confirmed_before = {s.first_frame_index + i for s in states for i in range(s.confirmed)}
    resumed = subprocess.run([sys.executable, "-m", "producer", str(vtest_path), "--resume", "killed-par",
                              "--stale-after", "1", "--no-progress", "--parallel", "2"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == "killed-par"
    assert re.match(r"job killed-par complete: resumed \d of 4 chunks and published \d+ frames, "
                    rf"{reference.frames_published} in all \(\d+ decoded\) in ", resumed.stderr.splitlines()[-1])
    jobs = frames_of(settings, 2 * reference.frames_published)
    assert_same_as(jobs["reference"], jobs["killed-par"], exactly_once=confirmed_before)
    final = read_manifest(settings, "killed-par")
    assert (final.state, final.frames_published, final.resumes[-1]["previous_state"]) == (
        "complete", reference.frames_published, "running")
