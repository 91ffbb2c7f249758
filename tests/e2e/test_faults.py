"""Faults through the real emulators (issue 16): storage refusing, storage hung, workers killed, a frame that crashes.

Every test runs a private local stack (pull, the default, and push where the delivery path matters) whose
workers reach the storage emulator through :class:`tests.e2e.fault_proxy.FaultProxy` (``STORAGE_EMULATOR_HOST``
in the stack's ``extra_env``; the producer, the collector and these checks go to the emulator directly), and a
pipeline with one of the user's own nodes (``WORKER_CUSTOM_NODES``): ``custom_nodes.dabble.crash_on_marker``,
which ends its process on a frame whose top-left corner is red and lets every other frame through.

A job is the first frames of vtest.avi through the real producer; the fault starts once some of its frames are
done (the test fails if the job had already finished: nothing would have been tested), and every check waits on
a condition. Exactly once = one detections object and one annotated JPEG per published index, no error record,
nothing of the job in the dead-letter subscription. The figures (delays, redeliveries, duplicates) are printed
and, with ``FRAME_FANOUT_FAULT_FIGURES=path``, appended to that JSON Lines file; docs/faults.md has them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import psutil
import pytest

from collector.deadletters import DeadLetterReader
from deploy.demo import last_result_at
from deploy.emulators import free_port
from deploy.local import StackHandle, restart_workers, start_stack, stop_stack
from deploy.stack_config import PULL_WORKERS, WORKERS, StackConfig
from framecontract.clients import make_storage_client
from framecontract.layout import parse_result_name
from framecontract.manifest import Manifest
from tests import waiting
from tests.e2e.fault_proxy import FaultProxy

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
USER_NODES = Path(__file__).resolve().parent / "custom_nodes"
FRAMES = 48
OUTAGE_S = 10.0
MAX_ATTEMPTS = 5
FAULT_AFTER = 6
"""Frames done before the fault starts."""
JOB_TIMEOUT_S = 300.0
"""Longest a job may take to finish after a fault (killed pull workers: see docs/faults.md, the emulator)."""
PIPELINE = """\
nodes:
  - custom_nodes.dabble.crash_on_marker
  - custom_nodes.model.nanodet:
      score_threshold: 0.35
  - draw.bbox:
      show_labels: true
"""


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    return waiting.wait_for(condition, timeout_s, what, every_s)


def record_figure(name: str, **values: Any) -> None:
    line = json.dumps({"figure": name, **values})
    print(line)
    target = os.environ.get("FRAME_FANOUT_FAULT_FIGURES")
    if target:
        with open(target, "a") as out:
            out.write(line + "\n")


@dataclass
class FaultStack:
    """A started stack whose workers reach storage through ``proxy``."""

    handle: StackHandle
    proxy: FaultProxy
    mode: str

    @property
    def settings(self) -> Any:
        assert self.handle.settings is not None
        return self.handle.settings

    def env(self) -> dict[str, str]:
        return self.handle.env() | {"PYTHONUNBUFFERED": "1"}

    def results(self, job: str) -> list[Any]:
        """Parsed result names of the job (one listing, straight from the emulator)."""
        client = make_storage_client(self.settings)
        names = [b.name for b in client.list_blobs(self.settings.bucket, prefix=f"jobs/{job}/")]
        return [p for p in map(parse_result_name, names) if p is not None]

    def done(self, job: str) -> int:
        return sum(1 for p in self.results(job) if p.kind == "detections")

    def worker_log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for name in (WORKERS, PULL_WORKERS):
            proc = self.handle.processes.get(name)
            if proc is None or not proc.log_path.exists():
                continue
            for text in proc.log_path.read_text(errors="replace").splitlines():
                if text.startswith("{"):
                    try:
                        lines.append(json.loads(text))
                    except json.JSONDecodeError:
                        continue
        return lines

    def outcomes(self, job: str) -> Counter[str]:
        """What the workers logged for the job's frames: processed, duplicate, transient failures."""
        counts: Counter[str] = Counter()
        for line in self.worker_log_lines():
            if line.get("job_id") == job and line.get("outcome"):
                counts[line["outcome"]] += 1
            elif line.get("message", "").startswith("transient failure") and f"jobs/{job}/" in line.get("reason", ""):
                counts["transient"] += 1
        return counts


@pytest.fixture
def fault_stack(tmp_path: Path) -> Iterator[Callable[[str], FaultStack]]:
    """Start a stack in a mode (``pull`` or ``push``) with the proxy in front of storage; stopped afterwards."""
    started: list[FaultStack] = []
    pipeline = tmp_path / "pipeline.yml"
    pipeline.write_text(PIPELINE)

    def start(mode: str) -> FaultStack:
        storage_port = free_port()
        proxy = FaultProxy(("127.0.0.1", storage_port)).start()
        config = StackConfig(
            workers=2, mode=mode, port=None, pubsub_port=None, storage_port=storage_port,
            stack_dir=tmp_path / f"stack-{mode}-{len(started)}", max_delivery_attempts=MAX_ATTEMPTS,
            extra_env={"STORAGE_EMULATOR_HOST": proxy.url, "WORKER_PIPELINE": str(pipeline),
                       "WORKER_CUSTOM_NODES": str(USER_NODES)},
        )
        try:
            handle = start_stack(config)
        except BaseException:
            proxy.stop()
            raise
        stack = FaultStack(handle, proxy, mode)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        try:
            stop_stack(stack.handle)
        finally:
            stack.proxy.stop()


def produce(stack: FaultStack, source: Path, *extra: str) -> tuple[str, float]:
    """Run the producer on ``source``; (job id, wall-clock time it started)."""
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "producer", str(source), "--no-progress", *extra], cwd=REPO,
                          env=stack.env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1].strip(), started


def produce_vtest(stack: FaultStack, frames: int = FRAMES) -> tuple[str, float]:
    from framecontract.assets import asset_path

    return produce(stack, asset_path("vtest"), "--max-frames", str(frames))


def wait_mid_job(stack: FaultStack, job: str, total: int) -> int:
    """Wait until :data:`FAULT_AFTER` frames are done; the job must not be over yet."""
    done = wait_for(lambda: (n := stack.done(job)) >= FAULT_AFTER and n, 120, f"{FAULT_AFTER} frames of {job}",
                    every_s=0.02)
    assert done < total, f"the job finished before the fault ({done} of {total} done): make it longer"
    return done


def collector(stack: FaultStack, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *argv], cwd=REPO, env=stack.env(),
                          capture_output=True, text=True, timeout=300)


def status_json(stack: FaultStack, job: str) -> dict[str, Any]:
    done = collector(stack, "status", "--job", job, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def dead_letters_of(stack: FaultStack, job: str) -> dict[int, Any]:
    reader = DeadLetterReader.from_settings(stack.settings)
    assert reader is not None, "the stack's settings name its dead-letter subscription"
    return reader.for_job(job)


def wait_job_finished(stack: FaultStack, job: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    """Wait (collector status) until every published frame is processed, failed or dead-lettered."""
    return wait_for(lambda: (s := status_json(stack, job))["done"] and s, timeout_s, f"job {job} to finish",
                    every_s=0.5)


def assert_exactly_once(stack: FaultStack, job: str, frames: int) -> None:
    """One annotated JPEG and one detections object per published index; no error record, no dead letter."""
    parsed = stack.results(job)
    per_kind = Counter(p.kind for p in parsed)
    assert per_kind == {"frames": frames, "detections": frames}, per_kind
    for kind in ("frames", "detections"):
        assert sorted(p.frame_index for p in parsed if p.kind == kind) == list(range(frames)), kind
    client = make_storage_client(stack.settings)
    manifest = Manifest.from_json(client.bucket(stack.settings.bucket).blob(f"jobs/{job}/manifest.json")
                                  .download_as_bytes())
    assert (manifest.state, manifest.frames_published) == ("complete", frames)
    assert dead_letters_of(stack, job) == {}
    status = status_json(stack, job)
    assert (status["processed"], status["errors"], status["missing_count"], status["dead_lettered_count"],
            status["duplicates"]) == (frames, 0, 0, 0, 0), status


def job_seconds(stack: FaultStack, job: str, started: float) -> float:
    return round(last_result_at(stack.handle, job) - started, 1)


# ---------------------------------------------------------------- storage refusing / hung


@pytest.mark.parametrize("mode", ["pull", "push"])
@pytest.mark.parametrize("fault", ["refuse", "freeze"])
def test_storage_outage_mid_job_every_frame_once_none_dead_lettered(fault_stack, mode: str, fault: str) -> None:
    """Storage refusing connections (a server that is down) or frozen (a hung one) for 10 s mid-job.

    The same job runs once without a fault first, in the same stack: the delay is the difference.
    """
    stack = fault_stack(mode)
    baseline_job, started = produce_vtest(stack)
    wait_job_finished(stack, baseline_job)
    baseline_s = job_seconds(stack, baseline_job, started)

    job, started = produce_vtest(stack)
    done_before = wait_mid_job(stack, job, FRAMES)
    stack.proxy.set_mode(fault)  # type: ignore[arg-type]
    # The outage itself: its length is the point, not a synchronisation. Nothing here touches storage meanwhile:
    # the emulator serves one connection at a time, and a request frozen half-way holds it for everyone.
    time.sleep(OUTAGE_S)
    stack.proxy.set_mode("pass")
    wait_job_finished(stack, job)
    assert_exactly_once(stack, job, FRAMES)
    outcomes = stack.outcomes(job)
    fault_s = job_seconds(stack, job, started)
    record_figure(f"storage-{fault}", mode=mode, outage_s=OUTAGE_S, frames=FRAMES, done_before=done_before,
                  baseline_s=baseline_s, job_s=fault_s,
                  delay_s=round(fault_s - baseline_s, 1), transient_failures=outcomes["transient"],
                  duplicates=outcomes["duplicate"], processed=outcomes["processed"],
                  connections_reset=stack.proxy.reset_connections)
    assert outcomes["processed"] + outcomes["duplicate"] >= FRAMES


# ---------------------------------------------------------------- worker processes killed


def kill_children(pid: int) -> list[int]:
    children = psutil.Process(pid).children()
    for child in children:
        os.kill(child.pid, signal.SIGKILL)
    return [c.pid for c in children]


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_every_worker_process_killed_mid_job_then_restarted_every_frame_once(fault_stack, mode: str) -> None:
    """SIGKILL every worker process twice in one job: first the supervisor's children (pull) or gunicorn's
    workers (push), which their parent restarts; then the whole process group, parent included, which
    ``restart_workers`` starts again, as ``python -m deploy.local restart`` would."""
    stack = fault_stack(mode)
    name = PULL_WORKERS if mode == "pull" else WORKERS
    frames = 2 * FRAMES
    job, started = produce_vtest(stack, frames)

    wait_mid_job(stack, job, frames)
    killed = kill_children(stack.handle.processes[name].pid)
    assert killed, "no worker processes to kill"
    killed_at = time.time()
    done_at_first_kill = stack.done(job)
    wait_for(lambda: stack.done(job) >= done_at_first_kill + FAULT_AFTER, JOB_TIMEOUT_S,
             "frames done by the restarted processes", every_s=0.2)

    done_at_second_kill = stack.done(job)
    assert done_at_second_kill < frames, "the job finished before the second kill: make it longer"
    group = stack.handle.processes[name]
    os.killpg(group.pgid, signal.SIGKILL)
    wait_for(lambda: not group.alive(), 30, "the whole worker group to be gone")
    down_at = time.monotonic()
    assert restart_workers(stack.handle) == [name]
    restart_s = round(time.monotonic() - down_at, 1)

    wait_job_finished(stack, job)
    assert_exactly_once(stack, job, frames)
    outcomes = stack.outcomes(job)
    record_figure("workers-killed", mode=mode, frames=frames, processes_killed=len(killed),
                  done_at_first_kill=done_at_first_kill, done_at_second_kill=done_at_second_kill,
                  restart_s=restart_s, job_s=job_seconds(stack, job, started),
                  after_first_kill_s=round(last_result_at(stack.handle, job) - killed_at, 1),
                  duplicates=outcomes["duplicate"], processed=outcomes["processed"])


# ---------------------------------------------------------------- a frame that crashes its worker


def marked_frames(folder: Path, count: int, marked: int) -> Path:
    """The first ``count`` frames of vtest.avi as JPEGs in ``folder``; frame ``marked`` has a red top-left corner."""
    from framecontract.assets import asset_path

    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(asset_path("vtest")))
    for index in range(count):
        ok, frame = capture.read()
        assert ok
        if index == marked:
            frame[:16, :16] = (0, 0, 255)
        cv2.imwrite(str(folder / f"frame-{index:04d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    capture.release()
    return folder


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_a_frame_that_crashes_its_worker_is_dead_lettered_and_reported(fault_stack, mode: str, tmp_path) -> None:
    """Every delivery of the marked frame ends the worker process that runs it (os._exit in the user's node).

    After the subscription's 5 delivery attempts Pub/Sub moves it to the dead-letter topic; every other frame
    is processed once, and the collector reports the frame as dead-lettered (not missing).
    """
    stack = fault_stack(mode)
    frames, marked = 24, 20
    job, started = produce(stack, marked_frames(tmp_path / "images", frames, marked))
    letters = wait_for(lambda: dead_letters_of(stack, job), JOB_TIMEOUT_S, "the marked frame's dead letter",
                       every_s=1.0)
    assert sorted(letters) == [marked]
    assert letters[marked].delivery_attempts == MAX_ATTEMPTS
    status = wait_job_finished(stack, job)
    assert (status["processed"], status["errors"], status["missing_count"], status["dead_lettered_count"]) == (
        frames - 1, 0, 0, 1), status
    assert status["dead_lettered"][0]["frame_index"] == marked
    parsed = stack.results(job)
    expected = sorted(set(range(frames)) - {marked})
    for kind in ("frames", "detections"):
        assert sorted(p.frame_index for p in parsed if p.kind == kind) == expected, kind
    assert not [p for p in parsed if p.kind == "errors"]

    text = collector(stack, "status", "--job", job)
    assert f"dead-lettered 1: {marked} (Pub/Sub gave up on them after {MAX_ATTEMPTS} delivery attempts" in text.stdout
    assert "missing    0" in text.stdout
    waited = collector(stack, "wait", "--job", job, "--timeout", "60")
    assert waited.returncode == 3, waited.stderr  # done, with a frame that will not be processed
    assert f"1 dead-lettered ({marked}); done" in waited.stderr
    out = tmp_path / "out.mp4"
    reassembled = collector(stack, "reassemble", "--job", job, "-o", str(out), "--detections",
                            str(tmp_path / "out.jsonl"))
    assert reassembled.returncode == 0, reassembled.stderr
    lines = {r["frame_index"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert lines[marked]["status"] == "dead-lettered"
    assert lines[marked]["error"] == f"dead-lettered after {MAX_ATTEMPTS} delivery attempts"
    assert {r["status"] for i, r in lines.items() if i != marked} == {"ok"}
    report = json.loads(out.with_name("out.report.json").read_text())
    assert report["missing"] == [] and [d["frame_index"] for d in report["dead_lettered"]] == [marked]

    crashes = sum(1 for line in stack.worker_log_lines() if line.get("message") == "pull process died, restarting")
    if mode == "push":
        log = stack.handle.processes[WORKERS].log_path.read_text(errors="replace")
        crashes = log.count("exited with code 1")
    record_figure("crashing-frame", mode=mode, frames=frames, delivery_attempts=letters[marked].delivery_attempts,
                  worker_crashes=crashes, dead_lettered_after_s=round(time.time() - started, 1))
    # Pull: one crash per delivery attempt at most. Push: the emulator has 2 pushes in flight, and a push whose
    # connection broke is sent again at once on the other one without counting an attempt (measured: 10 worker
    # exits for 5 attempts, in pairs within the same second), so up to 2 per attempt.
    assert 1 <= crashes <= MAX_ATTEMPTS * (2 if mode == "push" else 1)


# ---------------------------------------------------------------- the proxy itself


def test_the_proxy_refuses_freezes_and_passes() -> None:
    """Against a one-line TCP echo server: each mode does what the fault tests rely on."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(1024), b"")],
                             daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    proxy = FaultProxy(("127.0.0.1", port)).start()
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
            conn.sendall(b"one")
            assert conn.recv(16) == b"one"
            proxy.set_mode("refuse")
            with pytest.raises(OSError):  # the open connection was reset
                conn.sendall(b"two")
                if not conn.recv(16):
                    raise ConnectionResetError
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        proxy.set_mode("freeze")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn:
            conn.sendall(b"held")
            conn.settimeout(0.5)
            with pytest.raises(TimeoutError):
                conn.recv(16)
            proxy.set_mode("pass")
            conn.settimeout(5)
            assert conn.recv(16) == b"held"
    finally:
        proxy.stop()
        server.close()
