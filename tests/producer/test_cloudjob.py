"""``python -m producer.cloudjob``: a gs:// video planned by one task and published by several, as a Cloud Run job
would run it, here as processes against the emulators (``CLOUD_RUN_TASK_INDEX``/``COUNT`` set as Cloud Run sets
them); compared frame by frame with the sequential producer's job on the same file; a stopped execution is
continued by the next one, each chunk from its own confirmed run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framecontract.clients import make_storage_client
from framecontract.settings import Settings
from producer import cloudjob, publishing
from producer.chunkprogress import ChunkState
from producer.clips import make_h264_clip
from producer.job import run_job
from producer.stopping import StopRequest
from tests.producer.helpers import job_options, read_manifest
from tests.producer.test_parallel_resume import assert_same_as, frames_of
from tests.producer.test_resume_jobs import REPO, cli_env


@pytest.fixture
def cloud_settings(pubsub_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in cli_env(pubsub_settings, tmp_path).items():
        monkeypatch.setenv(name, value)
    return pubsub_settings


def run_tasks(settings: Settings, tmp_path: Path, job_id: str, count: int) -> list[subprocess.CompletedProcess]:
    """One execution: ``count`` tasks at once, as Cloud Run starts them."""
    env = dict(os.environ) | cli_env(settings, tmp_path)
    tasks = [subprocess.Popen([sys.executable, "-m", "producer.cloudjob", "run", job_id], cwd=REPO, text=True,
                              env=env | {"CLOUD_RUN_TASK_INDEX": str(i), "CLOUD_RUN_TASK_COUNT": str(count)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(count)]
    done = []
    for task in tasks:
        out, err = task.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(task.args, task.returncode, out, err))
    return done


def test_a_cloud_run_job_publishes_what_the_sequential_producer_publishes_and_continues_a_stopped_execution(
    cloud_settings: Settings, vtest_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cloud_settings
    clip = make_h264_clip(tmp_path / "open.mp4", vtest_path, 320, 240, 240, keyint=24, bframes=3, open_gop=True)
    make_storage_client(settings).bucket(settings.bucket).blob("in/open.mp4").upload_from_filename(str(clip))
    uri = f"gs://{settings.bucket}/in/open.mp4"
    reference = run_job(clip, job_options(job_id="reference", parallel=1, fps=15, max_side=200), settings)

    assert cloudjob.main(["plan", uri, "--job-id", "cloud", "--chunks", "4", "--fps", "15", "--max-side", "200",
                          "--heartbeat", "1"]) == 0
    assert capsys.readouterr().out.strip() == "cloud"
    planned = read_manifest(settings, "cloud")
    assert (planned.state, planned.heartbeat_interval_s, len(planned.chunks)) == ("running", 60.0, 4)
    assert sum(c["frames"] for c in planned.chunks) == reference.frames_published
    assert cloudjob.main(["plan", uri, "--job-id", "cloud", "--chunks", "4"]) == 2
    assert capsys.readouterr().err.strip() == "error: job 'cloud' already has a plan — choose another --job-id"

    # execution 1: a single task, stopped (as by SIGTERM) after its 10th publish
    stop, original, made = StopRequest(), publishing.FramePublisher.publish, []

    def publish_then_stop_at_10(self: publishing.FramePublisher, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        made.append(1)
        if len(made) == 10:
            stop.request("SIGTERM received")

    monkeypatch.setattr(publishing.FramePublisher, "publish", publish_then_stop_at_10)
    assert cloudjob.run_task("cloud", settings, 0, 1, stop) is False
    stopped = read_manifest(settings, "cloud")
    states = [ChunkState.from_record(c) for c in stopped.chunks]
    assert stopped.state == "stopped" and [s.state for s in states] == ["stopped", "pending", "pending", "pending"]
    assert stopped.heartbeat_interval_s == 1.0 and 10 <= states[0].confirmed == stopped.frames_confirmed
    monkeypatch.setattr(publishing.FramePublisher, "publish", original)

    # execution 2: three tasks; each chunk continues from its own confirmed run
    tasks = run_tasks(settings, tmp_path, "cloud", 3)
    assert [t.returncode for t in tasks] == [0, 0, 0], [t.stderr[-2000:] for t in tasks]
    final = read_manifest(settings, "cloud")
    assert (final.state, final.frames_published, final.frames_confirmed, final.error) == (
        "complete", reference.frames_published, reference.frames_published, None)
    assert all(c["state"] == "complete" for c in final.chunks)
    assert [r["previous_state"] for r in final.resumes] == ["stopped"]
    confirmed_first = set(range(states[0].confirmed))
    jobs = frames_of(settings, 2 * reference.frames_published)
    assert_same_as(jobs["reference"], jobs["cloud"], exactly_once=confirmed_first | set(
        range(states[0].frames, reference.frames_published)))
