"""``make demo``: the whole pipeline on the local stack, end to end, as a user would run it.

Usage::

    python -m deploy.demo [--video PATH] [--max-frames N] [--workers 2] [--out out/]

Measures the machine's compute bound (the cores x the detector alone, one thread), starts a private
local stack (free ports, its own stack dir; pull workers, one per core, unless ``--mode push``), runs
``python -m producer`` on the sample video, ``collector wait`` until every frame is processed,
``collector reassemble`` into an H.264 MP4 plus detections JSONL, prints where they are, a one-line
summary and the run's ratio to the bound, and stops the stack
(also on Ctrl-C or failure). The same steps drive the end-to-end test (:func:`run_video_job`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local import StackHandle, start_stack, stop_stack
from deploy.stack_config import StackConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


class DemoError(RuntimeError):
    """A step of the demo failed; the message names the step and its output."""


@dataclass(frozen=True)
class JobRun:
    """What one end-to-end run produced."""

    job_id: str
    video: Path
    detections: Path
    report: Path
    frames: int
    frames_with_people: int
    people_boxes: int
    seconds_publish_to_done: float

    def summary(self) -> str:
        fps = self.frames / self.seconds_publish_to_done if self.seconds_publish_to_done else 0.0
        return (
            f"{self.frames} frames, {self.frames_with_people} with people ({self.people_boxes} person boxes), "
            f"{self.seconds_publish_to_done:.1f} s from first publish to last result ({fps:.1f} frames/s)"
        )


def _run(step: str, argv: list[str], env: dict[str, str], capture: bool = False) -> str:
    """Run one CLI step; stderr goes to the terminal (progress bars), stdout captured if asked."""
    proc = subprocess.run(argv, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE if capture else None, text=True)
    if proc.returncode != 0:
        raise DemoError(f"{step} failed with exit code {proc.returncode}: {' '.join(argv)}")
    return proc.stdout or ""


def run_video_job(handle: StackHandle, video: Path, out_dir: Path, max_frames: int | None = None,
                  wait_timeout_s: float = 1800) -> JobRun:
    """Produce → wait → reassemble through the real CLIs against a started stack."""
    env = handle.env() | {"PYTHONUNBUFFERED": "1"}
    python = sys.executable
    produce = [python, "-m", "producer", str(video)] + (["--max-frames", str(max_frames)] if max_frames else [])
    started = time.time()
    stdout = _run("producer", produce, env, capture=True)
    job_id = stdout.strip().splitlines()[-1].strip()
    _run("collector wait", [python, "-m", "collector.cli", "wait", "--job", job_id,
                            "--timeout", str(wait_timeout_s)], env)
    elapsed = last_result_at(handle, job_id) - started
    job_dir = out_dir / job_id
    job_dir.mkdir(parents=True, exist_ok=True)
    video_out, detections = job_dir / f"{job_id}.mp4", job_dir / f"{job_id}.detections.jsonl"
    _run("collector reassemble", [python, "-m", "collector.cli", "reassemble", "--job", job_id,
                                  "-o", str(video_out), "--detections", str(detections)], env)
    frames = with_people = boxes = 0
    for line in detections.read_text().splitlines():
        record = json.loads(line)
        frames += 1
        people = [d for d in record.get("detections") or [] if d.get("label") == "person"]
        with_people += bool(people)
        boxes += len(people)
    report = next(iter(sorted(job_dir.glob("*report*.json"))), job_dir / "report.json")
    return JobRun(job_id, video_out, detections, report, frames, with_people, boxes, elapsed)


def last_result_at(handle: StackHandle, job_id: str) -> float:
    """When the job's last result object was created (epoch s): the end of the run, however long the
    ``collector wait`` poll took to notice it."""
    from collector.store import JobStore

    assert handle.settings is not None
    listed = [o.updated for o in JobStore.from_settings(handle.settings).list_job(job_id)
              if o.updated is not None and ("/detections/" in o.name or "/errors/" in o.name)]
    return max(listed).timestamp() if listed else time.time()


def compute_bound(video: Path, cores: int, frames: int = 100) -> float:
    """The machine's compute bound, frames/s: ``cores`` x the detector alone (1 thread) on ``video``'s frames."""
    from deploy.bench import detector_alone_fps, load_frames

    return cores * detector_alone_fps(load_frames(video, frames))


def main(argv: list[str] | None = None) -> int:
    from framecontract.assets import asset_path

    parser = argparse.ArgumentParser(prog="python -m deploy.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="video file (default: the cached vtest.avi)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--mode", choices=("pull", "push"), default="pull",
                        help="how frames reach the workers (default pull: uses every core)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out", help="output folder")
    args = parser.parse_args(argv)
    from worker.pull import default_processes

    video = args.video or asset_path("vtest")
    cores = default_processes()
    workers = args.workers or cores
    say = lambda msg: print(f"[demo] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"measuring this machine's compute bound: {cores} core(s) x the detector alone, 1 thread ...")
    bound = compute_bound(video, cores)
    with tempfile.TemporaryDirectory(prefix="frame-fanout-demo-") as stack_dir:
        config = StackConfig(workers=workers, mode=args.mode, port=None, pubsub_port=None, storage_port=None,
                             stack_dir=Path(stack_dir))
        say(f"starting the local stack (Pub/Sub emulator, GCS emulator, {workers} {args.mode} worker processes)")
        handle = start_stack(config, say=say)
        try:
            say(f"producing {video}")
            run = run_video_job(handle, video, args.out, args.max_frames)
        except DemoError as exc:
            print(f"error: {exc}; logs are in {stack_dir}", file=sys.stderr)
            _show_log_tails(handle)
            return 1
        finally:
            say("stopping the local stack")
            stop_stack(handle)
    print(f"job:        {run.job_id}")
    print(f"video:      {run.video}")
    print(f"detections: {run.detections}")
    print(f"summary:    {run.summary()}")
    fps = run.frames / run.seconds_publish_to_done if run.seconds_publish_to_done else 0.0
    print(f"machine:    {fps / bound:.2f} of this machine's compute bound ({cores} cores x the detector alone = "
          f"{bound:.1f} frames/s; {args.mode} mode, {workers} worker processes)")
    return 0


def _show_log_tails(handle: StackHandle) -> None:
    for name, proc in handle.processes.items():
        log = getattr(proc, "log_path", None)
        if log and Path(log).exists():
            tail = Path(log).read_text(errors="replace").splitlines()[-15:]
            print(f"--- {name} log ({log}) ---\n" + "\n".join(tail), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
