"""Reassembly benchmark: throughput against the download + decode + encode bound, and peak memory vs job length.

Usage::

    .venv/bin/python -m collector.bench                      # 1,000-frame throughput + 1,000/10,000 memory
    .venv/bin/python -m collector.bench --frames 300 --memory-frames ""     # quick: throughput only

Starts the patched storage emulator (``python -m deploy.storage_emulator``) as a child process on a
free port, seeds synthetic jobs of 768x576 counter frames the way the worker writes results, then:

Throughput (``--frames`` N, ``--repeat`` rounds, each compared with its own stage figures; the
headline is the round with the most CPU available):

- ``reassemble``: ``collector reassemble`` in a child process (frames/s and CPU seconds from its
  report, plus the emulator's CPU time from ``/proc``; peak RSS: ``VmHWM`` at exit);
- the same work stage by stage, in this process, with the same code and settings:
  ``download`` (:func:`collector.reassemble.download_slot` on the same thread pool and window),
  ``decode`` (:func:`collector.reassemble.decode_downloaded`: JPEG → BGR → I420, same pool),
  ``encode`` (:meth:`collector.video.VideoEncoder.write_i420`, same preset, frames already in memory).

The bound is ``min(slowest stage, cores / CPU per frame)``: a pipeline cannot beat its slowest stage,
and when every stage wants the same cores (here: 2, shared with the emulator) it cannot beat the
machine's CPU either. ``ratio`` = reassemble frames/s / bound (issue 5 targets ≥ 0.8); the ratio
to the slowest stage alone is printed too. The machine may be shared: :func:`available_cores` measures
the CPU a busy loop actually gets before and after each round, and the bound and ratio are also given
with that instead of ``os.cpu_count()``.

Memory (``--memory-frames``, default 1000,10000): one reassembly per job length in a fresh child
process; peak RSS is that child's ``VmHWM`` read at its exit (:data:`PEAK_RSS_WRAPPER`). To explain
any growth, the Python allocations of the job's listing + plan are measured too (tracemalloc, peak
and kept): the per-frame metadata is the only thing that grows with the job.

Prints one JSON object on stdout and a short table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.plan import Slot, parse_listing, plan_timeline
from collector.reassemble import decode_downloaded, default_window, download_slot, ordered_window
from collector.store import EMULATOR_DOWNLOAD_WORKERS, JobStore
from collector.synthetic import seed_job
from collector.video import DEFAULT_PRESET, VideoEncoder
from framecontract.clients import make_storage_client
from framecontract.settings import Settings

BUCKET = "bench"
FPS = 10.0
SEED_THREADS = 4
"""Upload threads while seeding (the emulator answers one request at a time; more threads only queue)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(bucket: str) -> tuple[subprocess.Popen[str], str]:
    """The storage emulator as a child process; returns (process, url) once it listens."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploy.storage_emulator", "--port", str(port), "--default-bucket", bucket],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening" not in line:
        proc.terminate()
        raise RuntimeError(f"storage emulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Measured:
    """One measured stage or run: frames, wall seconds, CPU seconds (ours + the emulator's)."""

    frames: int
    wall_s: float
    cpu_s: float
    emulator_cpu_s: float = 0.0
    peak_rss_mib: float | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s

    @property
    def cpu_ms_per_frame(self) -> float:
        return 1000 * (self.cpu_s + self.emulator_cpu_s) / self.frames

    def to_dict(self) -> dict[str, Any]:
        data = {
            "fps": round(self.fps, 1),
            "wall_s": round(self.wall_s, 2),
            "cpu_ms_per_frame": round(self.cpu_ms_per_frame, 2),
            "of_which_emulator_ms": round(1000 * self.emulator_cpu_s / self.frames, 2),
        }
        if self.peak_rss_mib is not None:
            data["peak_rss_mib"] = round(self.peak_rss_mib, 1)
        return data


@contextmanager
def measuring(frames: int, emulator_pid: int) -> Iterator[list[Measured]]:
    """Wall and CPU time (this process and the emulator) of the ``with`` body."""
    box: list[Measured] = []
    wall, cpu, emu = time.perf_counter(), self_cpu_s(), process_cpu_s(emulator_pid)
    yield box
    box.append(Measured(frames, time.perf_counter() - wall, self_cpu_s() - cpu, process_cpu_s(emulator_pid) - emu))


def _spin(seconds: float) -> float:
    """Burn CPU for ``seconds`` of wall time; returns the CPU seconds obtained."""
    cpu, end = time.process_time(), time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(range(1000))
    return time.process_time() - cpu


def available_cores(seconds: float = 1.0) -> float:
    """CPU the machine gives us right now: one busy process per core for ``seconds``, CPU obtained / wall.

    On a shared machine this is below ``os.cpu_count()``; the bound uses it as well as the nominal count.
    """
    from concurrent.futures import ProcessPoolExecutor

    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_spin, [0.05] * cores))  # start the workers outside the measurement
        return sum(pool.map(_spin, [seconds] * cores)) / seconds


def seed(bucket: Any, job_id: str, frames: int, width: int, height: int) -> float:
    """Seed a complete job of ``frames`` counter frames with :data:`SEED_THREADS` threads; seconds taken."""
    start = time.perf_counter()
    chunks = [range(i, frames, SEED_THREADS) for i in range(SEED_THREADS)]
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(lambda c: seed_job(bucket, job_id, c, fps=FPS, width=width, height=height,
                                         published=frames, shuffle_seed=None), chunks))  # fmt: skip
    return time.perf_counter() - start


PEAK_RSS_WRAPPER = """\
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    hwm = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    open(out, "w").write(hwm.split()[1])
atexit.register(peak)
sys.argv[0] = "collector"
runpy.run_module("collector.cli", run_name="__main__")
"""
"""Runs ``collector ...`` and writes its peak RSS (KiB, ``VmHWM``) to the file named by the first argument.
Not ``ru_maxrss``: Linux carries the parent's high-water mark over fork + exec into the child's."""


def run_reassemble(url: str, job_id: str, workers: int, preset: str, emulator_pid: int) -> Measured:
    """``collector reassemble`` in a child process: frames/s and CPU from its report, peak RSS from VmHWM."""
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        out = Path(tmp) / "bench.mp4"
        env = dict(os.environ, STORAGE_EMULATOR_HOST=url, GOOGLE_CLOUD_PROJECT="bench", FRAMES_BUCKET=BUCKET,
                   FRAME_FANOUT_SETTINGS=str(Path(tmp) / "none.json"))  # fmt: skip
        hwm = Path(tmp) / "peak-rss-kib"
        command = [sys.executable, "-c", PEAK_RSS_WRAPPER, str(hwm), "reassemble", "--job", job_id, "-o", str(out),
                   "--workers", str(workers), "--preset", preset, "--no-progress"]  # fmt: skip
        emu = process_cpu_s(emulator_pid)
        with open(Path(tmp) / "stderr", "w+") as stderr:
            done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
            stderr.seek(0)
            if done.returncode != 0:
                raise RuntimeError(f"reassemble failed: {stderr.read().strip()}")
        emulator_cpu = process_cpu_s(emulator_pid) - emu
        report = json.loads((Path(tmp) / "bench.report.json").read_text())
        peak_kib = int(hwm.read_text())
    # CPU from the report: the reassembly itself, without the interpreter's start-up and imports
    return Measured(report["frames_written"], report["seconds"], report["cpu_seconds"], emulator_cpu,
                    peak_kib / 1024)  # fmt: skip


def measure_stages(store: JobStore, job_id: str, workers: int, preset: str, emulator_pid: int) -> dict[str, Measured]:
    """Download, decode and encode the job's frames one stage at a time, as reassembly does them."""
    slots: list[Slot] = list(plan_timeline(parse_listing(job_id, store.list_job(job_id)), None).slots)
    n = len(slots)
    window = default_window(workers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        with measuring(n, emulator_pid) as box:
            downloaded = list(ordered_window(pool, lambda s: download_slot(store, s), slots, window))
        download = box[0]
        with measuring(n, emulator_pid) as box:
            decoded = list(ordered_window(pool, decode_downloaded, downloaded, window))
        decode = box[0]
    del downloaded
    planes = [f.planes for f in decoded if f.planes is not None]
    del decoded
    height, width = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
        with (
            measuring(n, emulator_pid) as box,
            VideoEncoder.open(Path(tmp) / "encode.mp4", FPS, width, height, preset=preset) as video,
        ):  # the encoder is flushed and closed inside the measurement
            for frame in planes:
                video.write_i420(frame)
        encode = box[0]
    return {"download": download, "decode": decode, "encode": encode}


def round_figures(reassembly: Measured, stages: dict[str, Measured], cores: float, available: float) -> dict[str, Any]:
    """One round's figures: the reassembly against the bound from that round's own stage measurements."""
    slowest_name, slowest = min(stages.items(), key=lambda kv: kv[1].fps)
    cpu_ms = sum(s.cpu_ms_per_frame for s in stages.values())
    bound = min(slowest.fps, 1000 * cores / cpu_ms)
    bound_available = min(slowest.fps, 1000 * available / cpu_ms)
    return {
        "reassemble": reassembly.to_dict(),
        "stages": {name: m.to_dict() for name, m in stages.items()},
        "slowest_stage": f"{slowest_name} {slowest.fps:.1f}",
        "stages_cpu_ms_per_frame": round(cpu_ms, 2),
        "serial_fps": round(1 / sum(1 / s.fps for s in stages.values()), 1),
        "bound_fps": round(bound, 1),
        "ratio": round(reassembly.fps / bound, 3),
        "ratio_to_slowest_stage": round(reassembly.fps / slowest.fps, 3),
        "cores_available": round(available, 2),
        "bound_available_cores_fps": round(bound_available, 1),
        "ratio_available_cores": round(reassembly.fps / bound_available, 3),
    }


def throughput(
    bucket: Any, store: JobStore, url: str, emulator_pid: int, frames: int, workers: int, preset: str,
    repeat: int, width: int, height: int, seeded: set[str], log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Reassembly vs its stages, ``repeat`` rounds; each round is compared with its own stage figures.

    The headline is the round in which the machine gave us the most CPU (the least disturbed one).
    """
    job_id = f"bench-{frames}"
    if job_id not in seeded:
        log(f"seeding {job_id} ({frames} frames) ... {seed(bucket, job_id, frames, width, height):.0f} s")
        seeded.add(job_id)
    cores = float(os.cpu_count() or 1)
    rounds = []
    for i in range(repeat):
        before = available_cores()
        reassembly = run_reassemble(url, job_id, workers, preset, emulator_pid)
        stages = measure_stages(store, job_id, workers, preset, emulator_pid)
        available = (before + available_cores()) / 2
        rounds.append(round_figures(reassembly, stages, cores, available))
        r = rounds[-1]
        log(f"round {i + 1}/{repeat}: reassemble {reassembly.fps:.1f} frames/s; "
            + ", ".join(f"{k} {v.fps:.1f}" for k, v in stages.items())
            + f"; bound {r['bound_fps']}, ratio {r['ratio']}; cores available {available:.2f}: "
            f"bound {r['bound_available_cores_fps']}, ratio {r['ratio_available_cores']}")  # fmt: skip
    best_round = max(range(len(rounds)), key=lambda k: rounds[k]["cores_available"])
    return {
        "frames": frames,
        "headline_round": best_round + 1,
        **rounds[best_round],
        "rounds": [
            {k: r[k] for k in ("ratio", "ratio_available_cores", "cores_available", "bound_fps")}
            | {"reassemble_fps": r["reassemble"]["fps"]}
            for r in rounds
        ],
    }


def plan_memory_mib(store: JobStore, job_id: str) -> tuple[float, float]:
    """(peak, kept) MiB of Python allocations for the listing + plan of a job (tracemalloc, this process)."""
    tracemalloc.start()
    try:
        timeline = plan_timeline(parse_listing(job_id, store.list_job(job_id)), None)
        kept, peak = tracemalloc.get_traced_memory()
        del timeline
    finally:
        tracemalloc.stop()
    return peak / 2**20, kept / 2**20


def memory(
    bucket: Any, store: JobStore, url: str, emulator_pid: int, lengths: list[int], workers: int, preset: str,
    width: int, height: int, seeded: set[str], log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Peak RSS of one reassembly per job length, each in a fresh child process, and what its plan takes."""
    out: dict[str, Any] = {}
    for frames in lengths:
        job_id = f"bench-{frames}"
        if job_id not in seeded:
            log(f"seeding {job_id} ({frames} frames) ... {seed(bucket, job_id, frames, width, height):.0f} s")
            seeded.add(job_id)
        measured = run_reassemble(url, job_id, workers, preset, emulator_pid)
        peak, kept = plan_memory_mib(store, job_id)
        log(f"memory {frames} frames: peak RSS {measured.peak_rss_mib:.1f} MiB, {measured.fps:.1f} frames/s; "
            f"listing + plan: {peak:.1f} MiB at peak, {kept:.1f} MiB kept")  # fmt: skip
        out[str(frames)] = measured.to_dict() | {"plan_peak_mib": round(peak, 1), "plan_kept_mib": round(kept, 1)}
    return out


def run(
    frames: int, memory_frames: list[int], width: int, height: int, workers: int, preset: str, repeat: int,
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> dict[str, Any]:  # fmt: skip
    """Everything the module docstring lists, against one emulator; returns the figures."""
    proc, url = start_emulator(BUCKET)
    try:
        settings = Settings(project="bench", bucket=BUCKET, storage_emulator_host=url)
        bucket = make_storage_client(settings).bucket(BUCKET)
        store = JobStore.from_settings(settings)
        seeded: set[str] = set()
        result: dict[str, Any] = {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
            "size": f"{width}x{height}",
            "workers": workers,
            "preset": preset,
            "repeat": repeat,
        }
        if frames:
            result["throughput"] = throughput(bucket, store, url, proc.pid, frames, workers, preset, repeat,
                                              width, height, seeded, log)  # fmt: skip
        if memory_frames:
            result["memory"] = memory(bucket, store, url, proc.pid, memory_frames, workers, preset, width, height,
                                      seeded, log)  # fmt: skip
        result["load_average_at_end"] = os.getloadavg()[0]
        return result
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def table(result: dict[str, Any]) -> str:
    """The human summary printed on stderr."""
    lines = []
    if "throughput" in result:
        t = result["throughput"]
        head = f"round {t['headline_round']} (most CPU available: {t['cores_available']} of {result['cpus']} cores):"
        lines.append(head)
        lines.append(f"{'stage':<12} {'frames/s':>9} {'CPU ms/frame':>13} (of which emulator)")
        for name, m in [("reassemble", t["reassemble"]), *t["stages"].items()]:
            lines.append(f"{name:<12} {m['fps']:>9} {m['cpu_ms_per_frame']:>13} ({m['of_which_emulator_ms']})")
        lines.append(
            f"bound {t['bound_fps']} frames/s = min(slowest stage {t['slowest_stage']}, {result['cpus']} cores / "
            f"{t['stages_cpu_ms_per_frame']} ms); ratio {t['ratio']} (to the slowest stage alone "
            f"{t['ratio_to_slowest_stage']}; serial would be {t['serial_fps']}); with the CPU available: "
            f"bound {t['bound_available_cores_fps']}, ratio {t['ratio_available_cores']}"
        )
        for number, r in enumerate(t["rounds"], 1):
            lines.append(
                f"  round {number}: reassemble {r['reassemble_fps']} frames/s, ratio {r['ratio']}, "
                f"{r['cores_available']} cores available, ratio to that {r['ratio_available_cores']}"
            )
    for frames, m in result.get("memory", {}).items():
        lines.append(
            f"memory: {frames:>6} frames  peak RSS {m['peak_rss_mib']} MiB  ({m['fps']} frames/s); listing + plan "
            f"{m['plan_peak_mib']} MiB at peak, {m['plan_kept_mib']} MiB kept"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m collector.bench``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m collector.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000, help="throughput job length (0: skip) (1000)")
    parser.add_argument(
        "--memory-frames", default="1000,10000",
        help="job lengths for the peak-memory runs, comma-separated ('' skips) (1000,10000)",
    )  # fmt: skip
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--workers", type=int, default=EMULATOR_DOWNLOAD_WORKERS)
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    parser.add_argument("--repeat", type=int, default=3, help="throughput rounds (3)")
    args = parser.parse_args(argv)
    lengths = [int(x) for x in args.memory_frames.split(",") if x.strip()]
    result = run(args.frames, lengths, args.width, args.height, args.workers, args.preset, max(args.repeat, 1))
    print(table(result), file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
