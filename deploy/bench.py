"""End-to-end benchmark: the whole local stack against the machine's compute bound, pull and push.

Usage::

    python -m deploy.bench [--frames 400] [--modes pull,push] [--workers N]

The bound is measured in the same run: the detector alone (NanoDet, one onnxruntime thread) on the
same decoded frames, in one process; times the number of cores. It is taken before and after the
stack runs and averaged, so a machine that slows down mid-run lowers both sides. Then, for each
mode, a fresh local stack with one worker process per core runs ``python -m producer`` on the first
``--frames`` frames of vtest.avi; the run is timed from the producer's start to the creation time of
the last result object (GCS ``updated``), so the benchmark's own watching (a listing every few
seconds, in this process) adds nothing to the measured interval's end.

It prints, per mode: frames/s end to end, the ratio to the bound, the share of the cores left idle
during the run (``/proc/stat``), and the CPU each process spent per frame (the model's share is the
detector-alone time per frame; the rest of the worker is what remains of the worker processes'
CPU), so anyone can see where the rest goes. ``--json PATH`` writes the numbers too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deploy.local import StackHandle, start_stack, stop_stack
from deploy.stack_config import PUBSUB, PULL_WORKERS, STORAGE, WORKERS, StackConfig

Say = Callable[[str], None]
REPO_ROOT = Path(__file__).resolve().parents[1]
LIST_EVERY_S = 3.0
"""How often the benchmark lists the job's results while waiting (each listing is a few ms of emulator CPU)."""


def load_frames(video: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` frames of ``video``, decoded (BGR)."""
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise RuntimeError(f"cannot read frames from {video}")
    return frames


def detector_alone_fps(frames: list[np.ndarray], warmup: int = 5) -> float:
    """Frames/s of the detector alone on ``frames``: NanoDet, one thread, this process.

    This is what one core can do with nothing else in the way: the compute bound per core.
    """
    from framecontract.assets import asset_path
    from worker.detectors.nanodet import NanoDetDetector

    detector = NanoDetDetector(asset_path("nanodet"), num_threads=1)
    for frame in frames[:warmup]:
        detector.detect(frame)
    started = time.perf_counter()
    for frame in frames:
        detector.detect(frame)
    return len(frames) / (time.perf_counter() - started)


# ---------------------------------------------------------------- CPU accounting


def proc_stat_times() -> tuple[float, float]:
    """(idle, total) jiffies of the whole machine from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [float(v) for v in fh.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return idle, sum(values[:8])


def idle_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Fraction of the cores idle between two :func:`proc_stat_times` readings.

    >>> idle_share((100.0, 1000.0), (150.0, 1500.0))
    0.1
    """
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


class StatSampler:
    """``/proc/stat`` read every ``interval_s`` in a thread, so the idle share can be taken over exactly
    the measured interval (from the producer's start to the last result), not up to when it was noticed."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, tuple[float, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-proc-stat", daemon=True)

    def __enter__(self) -> StatSampler:
        self.samples.append((time.time(), proc_stat_times()))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.samples.append((time.time(), proc_stat_times()))

    def idle_share_until(self, end: float) -> float:
        """Idle share from the first sample to the last one taken at or before ``end`` (epoch seconds)."""
        until = [reading for when, reading in self.samples if when <= end] or [self.samples[0][1]]
        return idle_share(self.samples[0][1], until[-1])


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, alive now."""
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for member in members:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass
class ModeResult:
    """One mode's run."""

    mode: str
    frames: int
    seconds: float
    frames_per_s: float
    ratio: float
    idle_share: float
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)


@contextmanager
def running_stack(mode: str, workers: int, stack_dir: Path, max_held: int = 3) -> Iterator[StackHandle]:
    config = StackConfig(workers=workers, mode=mode, port=None, pubsub_port=None, storage_port=None,
                         stack_dir=stack_dir, pull_max_held=max_held)
    handle = start_stack(config, say=lambda m: None)
    try:
        yield handle
    finally:
        stop_stack(handle)


def run_job(handle: StackHandle, store: Any, video: Path, frames: int, job_id: str) -> None:
    """Publish ``frames`` frames as ``job_id`` and wait until every result is stored (warm-up, not timed)."""
    subprocess.run([sys.executable, "-m", "producer", str(video), "--max-frames", str(frames), "--job-id", job_id,
                    "--no-progress"], env=handle.env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, check=True)
    deadline = time.monotonic() + 300
    while sum("/detections/" in o.name for o in store.list_job(job_id)) < frames:
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up job {job_id} did not finish in 300 s")
        time.sleep(1.0)


def run_mode(mode: str, workers: int, video: Path, frames: int, bound_fps: float, model_ms: float,
             max_held: int = 3, warmup_frames: int = 0) -> ModeResult:
    """One fresh stack in ``mode``, one producer run of ``frames`` frames, timed and CPU-accounted."""
    from collector.store import JobStore

    with tempfile.TemporaryDirectory(prefix=f"frame-fanout-bench-{mode}-") as stack_dir, \
            running_stack(mode, workers, Path(stack_dir), max_held) as handle:
        assert handle.settings is not None
        store = JobStore.from_settings(handle.settings)
        if warmup_frames:
            run_job(handle, store, video, warmup_frames, f"bench-{mode}-warmup-{int(time.time())}")
        components = {name: proc.pid for name, proc in handle.processes.items()}
        job_id = f"bench-{mode}-{int(time.time())}"
        cpu_before = {name: tree_cpu_s(pid) for name, pid in components.items()}
        stat = StatSampler().__enter__()
        started_wall = time.time()
        producer = subprocess.Popen(
            [sys.executable, "-m", "producer", str(video), "--max-frames", str(frames), "--job-id", job_id,
             "--no-progress"], env=handle.env() | {"PYTHONUNBUFFERED": "1"}, cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        import psutil

        producer_ps = psutil.Process(producer.pid)
        producer_cpu = 0.0
        last_done = None
        while True:
            if producer.poll() is None:
                try:
                    t = producer_ps.cpu_times()
                    producer_cpu = t.user + t.system + t.children_user + t.children_system
                except psutil.NoSuchProcess:
                    pass
            time.sleep(LIST_EVERY_S if producer.poll() is not None else 0.5)
            objects = [o for o in store.list_job(job_id) if "/detections/" in o.name]
            if len(objects) >= frames:
                last_done = max(o.updated for o in objects if o.updated is not None)
                break
            if producer.poll() not in (None, 0):
                raise RuntimeError(f"producer failed: {producer.stderr.read() if producer.stderr else ''}")
        stat.__exit__()
        cpu_after = {name: tree_cpu_s(pid) for name, pid in components.items()}
        producer.wait()
    seconds = last_done.timestamp() - started_wall
    per_frame = {name: (cpu_after[name] - cpu_before[name]) * 1000 / frames for name in components}
    worker_total = per_frame.pop(PULL_WORKERS if mode == "pull" else WORKERS, 0.0)
    if mode == "pull":
        per_frame.pop(WORKERS, None)  # the front door's gunicorn, idle in pull mode
    cpu = {
        "model (detector alone)": model_ms,
        "rest of the worker": max(worker_total - model_ms, 0.0),
        "Pub/Sub emulator": per_frame.get(PUBSUB, 0.0),
        "storage emulator": per_frame.get(STORAGE, 0.0),
        "producer": producer_cpu * 1000 / frames,
    }
    fps = frames / seconds
    return ModeResult(mode, frames, round(seconds, 2), round(fps, 2), round(fps / bound_fps, 3),
                      round(stat.idle_share_until(last_done.timestamp()), 3), {k: round(v, 1) for k, v in cpu.items()})


def format_table(results: list[ModeResult], bound_fps: float, cores: int, per_core: list[float]) -> str:
    lines = [
        f"bound: {cores} cores x detector alone {statistics.mean(per_core):.1f} frames/s "
        f"(1 thread; before/after: {', '.join(f'{v:.1f}' for v in per_core)}) = {bound_fps:.1f} frames/s",
        "",
        "| mode | frames | s | frames/s | ratio to bound | cores idle | " +
        " | ".join(f"{k} ms/frame" for k in results[0].cpu_ms_per_frame) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(results[0].cpu_ms_per_frame),
    ]
    for r in results:
        lines.append(f"| {r.mode} | {r.frames} | {r.seconds:.1f} | {r.frames_per_s:.1f} | **{r.ratio:.2f}** | "
                     f"{r.idle_share * 100:.0f} % | " + " | ".join(f"{v:.1f}" for v in r.cpu_ms_per_frame.values())
                     + " |")
    lines.append("")
    for r in results:
        shares = core_shares(r, cores)
        lines.append(f"{r.mode}: where the cores went: " + ", ".join(f"{k} {v * 100:.0f} %" for k, v in shares.items()))
    return "\n".join(lines)


def core_shares(result: ModeResult, cores: int) -> dict[str, float]:
    """Share of the machine's cores each part used during the run (CPU ms per frame x frames/s), and idle.

    >>> core_shares(ModeResult("pull", 100, 2.0, 50.0, 0.5, 0.1, {"model": 10.0, "emulator": 4.0}), cores=2)
    {'model': 0.25, 'emulator': 0.1, 'idle': 0.1}
    """
    used = {name: ms * result.frames_per_s / (cores * 1000) for name, ms in result.cpu_ms_per_frame.items()}
    return {**{k: round(v, 3) for k, v in used.items()}, "idle": result.idle_share}


def main(argv: list[str] | None = None) -> int:
    from framecontract.assets import asset_path
    from worker.pull import default_processes

    parser = argparse.ArgumentParser(prog="python -m deploy.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400, help="frames of vtest.avi per mode (default 400)")
    parser.add_argument("--modes", default="pull,push", help="comma-separated: pull, push")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--warmup-frames", type=int, default=200,
                        help="frames run through each fresh stack before the timed job (JIT, caches, connections)")
    parser.add_argument("--max-held", type=int, default=3, help="messages each pull process holds")
    parser.add_argument("--bound-frames", type=int, default=150, help="frames for the detector-alone bound")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("pull", "push") for m in modes):
        parser.error("--modes takes pull and/or push")
    if args.frames < 50:
        parser.error("--frames must be at least 50")
    cores = default_processes()
    workers = args.workers or cores
    video = asset_path("vtest")

    def say(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    frames = load_frames(video, args.bound_frames)
    say(f"bound: the detector alone, 1 thread, {len(frames)} frames of vtest.avi ...")
    per_core = [detector_alone_fps(frames)]
    results = []
    for mode in modes:
        bound = cores * statistics.mean(per_core)
        say(f"{mode}: a fresh local stack with {workers} worker process(es), {args.frames} frames ...")
        result = run_mode(mode, workers, video, args.frames, bound, 1000 / statistics.mean(per_core),
                          args.max_held, args.warmup_frames)
        say(f"{mode}: {result.frames_per_s:.1f} frames/s, {result.ratio:.2f} of the bound")
        results.append(result)
    per_core.append(detector_alone_fps(frames))
    bound = cores * statistics.mean(per_core)
    model_ms = 1000 / statistics.mean(per_core)
    for result in results:  # the final bound is the mean of the before and after measurements
        result.ratio = round(result.frames_per_s / bound, 3)
        rest = result.cpu_ms_per_frame["model (detector alone)"] + result.cpu_ms_per_frame["rest of the worker"]
        result.cpu_ms_per_frame["model (detector alone)"] = round(model_ms, 1)
        result.cpu_ms_per_frame["rest of the worker"] = round(max(rest - model_ms, 0.0), 1)
    print(f"end to end, {args.frames} frames of vtest.avi (768x576), {workers} worker processes, {cores} cores, "
          f"{os.uname().machine}")
    print(format_table(results, bound, cores, per_core))
    if args.json:
        args.json.write_text(json.dumps({"bound_fps": bound, "per_core_fps": per_core, "cores": cores,
                                         "results": [asdict(r) for r in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
