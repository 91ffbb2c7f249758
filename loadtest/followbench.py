"""``collector follow`` measured: capture-to-ordered-output latency from a live camera, and memory over a long job.

Usage::

    python -m loadtest.followbench latency                 # 60 s at 10 fps from the loopback camera, max-delay 2
    python -m loadtest.followbench latency --seconds 120 --max-delay 1 --json lat.json
    python -m loadtest.followbench memory                  # 18,000 frames (30 min at 10 fps), faster than real time
    python -m loadtest.followbench memory --frames 36000 --rate 200 --chart docs/img/follow-memory.png

**latency** starts a private local stack (free ports, its own stack dir, pull workers, one per core: what
``python -m deploy.local up`` starts), :class:`loadtest.camera.LoopbackCamera` on vtest.avi at ``--fps``
(10) in this process, and warms the workers up with a short job from the camera (not measured). Then it
runs ``python -m producer CAMERA_URL --duration S`` (the live path: latest-frame, wall-clock timestamps)
and, as soon as that job's manifest exists, :func:`collector.follow.follow` in this process with
``--max-delay`` (2) and the default poll (1 s), its JSON lines going to a sink that notes the wall time
each line is written. For every frame written in order::

    latency = wall time follow wrote the line - the frame's timestamp_us

The anchor is the contract's: a live source's ``timestamp_us`` is the capture wall clock, µs since the
epoch, taken by the producer when the frame's last byte was received (docs/producer.md, "Live sources";
``producer.live.WallClock``), on the same machine and clock as this process. On loopback that is within a
millisecond of the camera making the frame current, which is measured too (``camera to producer``: each
timestamp against the camera's last tick at or before it). The baseline, in the same run and for the same
frames: when the frame's detections (or error) object appeared in storage (its ``updated`` time) minus the
same anchor — the producer + Pub/Sub + worker part. The difference is what following costs: the wait for
the next poll, listing, reading the record, and the reorder wait behind earlier frames.

It reports p50/p95/max of both, frames written / missing / late / errors, the producer's dropped frames
(latest-frame), and stops everything — producer (SIGINT: it ends the job ``stopped``), follow, camera,
stack — also on Ctrl-C (exit 130) or failure.

**memory** runs on the storage emulator only (a child process, as ``collector.bench`` starts it): it
writes a synthetic 10 fps job of ``--frames`` frames (default 18,000 = 30 min at 10 fps) as workers write
it — each frame's detections record (:func:`collector.synthetic.detections_record`), people walking across
a counting line every 10 s; no JPEGs, which ``follow`` reads only for a page viewer — progressively, at
``--rate`` frames/s (default 60: **faster than real time**; the job's timestamps are 10 fps, and the
follower does the same work per frame either way, only its idle polls between frames are fewer), while
``collector follow --max-delay 2 --line ...`` (tracking and line counts on, as a live page would run it)
follows it as a child process writing JSONL to a pipe that is read and counted here. (The emulator answers
one request at a time and closes every connection; 60 writes a second leave it room for the follower's 32
list requests a second.) Every ``--sample-s`` seconds it reads the follower's VmRSS from ``/proc/PID/status``;
once every line is out, the follower's VmHWM (peak) is read, the manifest is made final, and its
``ru_maxrss`` is taken when it exits. It reports RSS at 10 %, 50 % and 100 % of the job and the slope of RSS
against frames written (least squares over the samples from 10 % on, MiB per 10,000 frames), and draws RSS
against frames written to ``--chart`` (PNG; default docs/img/follow-memory.png; ``--chart ''``: none).

Progress goes to stderr, the result as text to stdout, ``--json PATH`` writes it too. The figures and the
commands that gave them are in docs/collector.md ("Live latency", "Memory over a long job").
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHART = REPO_ROOT / "docs" / "img" / "follow-memory.png"
EXIT_INTERRUPTED = 130
Say = Callable[[str], None]


def _say(message: str) -> None:
    print(f"[followbench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pure parts


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated between closest ranks.

    >>> percentile([1, 2, 3, 4], 50)
    2.5
    >>> percentile([5.0], 95)
    5.0
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """``{count, p50, p95, max}`` (``None`` for no values), rounded to the millisecond when in seconds."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {"count": len(values), "p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "max": round(max(values), 3)}


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` against ``xs``.

    >>> slope([0, 1, 2], [1, 3, 5])
    2.0
    """
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if len(xs) < 2:
        raise ValueError("a slope needs at least 2 points")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a slope needs at least 2 different x values")
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


@dataclass(frozen=True)
class Sample:
    """One reading of the follower: seconds since it started, lines it had written, its RSS (KiB)."""

    seconds: float
    frames: int
    rss_kib: int


def rss_at(samples: Sequence[Sample], frames: int) -> Sample:
    """The first sample taken once ``frames`` lines were written (the last sample if none was)."""
    if not samples:
        raise ValueError("no samples")
    for sample in samples:
        if sample.frames >= frames:
            return sample
    return samples[-1]


def memory_slope_mib_per_10k(samples: Sequence[Sample], total_frames: int, from_share: float = 0.1) -> float:
    """RSS growth in MiB per 10,000 frames written: least squares over the samples from ``from_share`` of the job
    on (start-up — imports, first allocations — is not growth), at most one sample per frame count."""
    start = total_frames * from_share
    by_frames: dict[int, Sample] = {}
    for s in samples:
        if s.frames >= start:
            by_frames.setdefault(s.frames, s)
    points = sorted(by_frames.values(), key=lambda s: s.frames)
    return slope([s.frames for s in points], [s.rss_kib / 1024 for s in points]) * 10_000


def read_status_kib(pid: int, key: str) -> int | None:
    """A ``/proc/PID/status`` value in KiB (``VmRSS``, ``VmHWM``), ``None`` when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def _positive(kind: type, what: str, minimum: float, maximum: float | None = None) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: give {what}") from None
        if not (isinstance(value, int) or math.isfinite(value)) or value < minimum or (
                maximum is not None and value > maximum):
            bound = f"at least {minimum:g}" + (f" and at most {maximum:g}" if maximum is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    from collector.follow_cli import max_delay

    parser = argparse.ArgumentParser(prog="python -m loadtest.followbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency", help="capture-to-ordered-output latency from the loopback camera",
                         description="Capture-to-ordered-output latency of collector follow on the local stack, "
                         "from the loopback camera; baseline: the same frames' results appearing in storage.")
    lat.add_argument("--seconds", type=_positive(float, "seconds", 1, 3600), default=60.0,
                     help="how long the producer publishes (60)")
    lat.add_argument("--fps", type=_positive(float, "frames per second", 0.5, 60), default=10.0,
                     help="the camera's frame rate (10)")
    lat.add_argument("--max-delay", type=max_delay, default=2.0, metavar="S", help="follow's --max-delay (2)")
    lat.add_argument("--poll", type=_positive(float, "seconds", 0.05, 60), default=1.0, metavar="S",
                     help="follow's --poll (1)")
    lat.add_argument("--warmup", type=_positive(float, "seconds", 0, 600), default=5.0, metavar="S",
                     help="a job of S seconds from the camera first, not measured (5; 0: none)")
    lat.add_argument("--workers", type=_positive(int, "a whole number of processes", 1, 64), default=None,
                     help="worker processes (default: one per core)")
    lat.add_argument("--video", type=Path, default=None, help="what the camera shows (default: vtest.avi)")
    lat.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result here")
    mem = sub.add_parser("memory", help="the follower's RSS over a long synthetic job (storage emulator only)",
                         description="collector follow's memory over a long synthetic 10 fps job written while it "
                         "is followed, on the storage emulator.")
    mem.add_argument("--frames", type=_positive(int, "a whole number of frames", 100), default=18_000,
                     help="frames in the job (18000 = 30 min at 10 fps)")
    mem.add_argument("--rate", type=_positive(float, "frames per second", 1, 10_000), default=60.0,
                     help="frames written per second (60: faster than the job's 10 fps)")
    mem.add_argument("--sample-s", type=_positive(float, "seconds", 0.1, 60), default=2.0, metavar="S",
                     help="seconds between RSS readings (2)")
    mem.add_argument("--chart", default=str(DEFAULT_CHART), metavar="PNG",
                     help="RSS against frames written, as a PNG (docs/img/follow-memory.png; '' for none)")
    mem.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result here")
    return parser


# ---------------------------------------------------------------- latency


class StampedSink:
    """``follow``'s output: each JSON line parsed and stamped with the wall time it was written."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self._buffer = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        now = time.time()
        with self._lock:
            self._buffer += text
            *complete, self._buffer = self._buffer.split("\n")
            self.lines += [(now, json.loads(line)) for line in complete if line]
        return len(text)

    def flush(self) -> None:
        pass


class _LogSink:
    """``follow``'s stderr: counted, the first lines kept, nothing printed (the benchmark prints its own)."""

    def __init__(self) -> None:
        self.kept: list[str] = []

    def write(self, text: str) -> int:
        if len(self.kept) < 50:
            self.kept.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def latency_figures(lines: Sequence[tuple[float, dict[str, Any]]], stored_at: dict[int, float],
                    ticks: Sequence[float] = ()) -> dict[str, Any]:
    """The latency result from follow's stamped lines, the results' storage times (frame index → epoch s) and
    the camera's tick times (epoch s, rising). Pure."""
    output, worker, follow_part, camera = [], [], [], []
    counts = {"ok": 0, "error": 0, "unreadable": 0, "missing": 0}
    for written_at, line in lines:
        status = line.get("status", "")
        counts[status] = counts.get(status, 0) + 1
        ts = line.get("timestamp_us")
        if ts is None:
            continue
        captured = ts / 1_000_000
        output.append(written_at - captured)
        stored = stored_at.get(line["frame_index"])
        if stored is not None:
            worker.append(stored - captured)
            follow_part.append(written_at - stored)
        position = bisect.bisect_right(ticks, captured)
        if position:
            camera.append(captured - ticks[position - 1])
    return {"frames_written": sum(v for k, v in counts.items() if k != "missing"), "by_status": counts,
            "capture_to_output_s": summary(output), "capture_to_stored_s": summary(worker),
            "stored_to_output_s": summary(follow_part), "camera_to_producer_s": summary(camera)}


def _run_producer(env: dict[str, str], url: str, job_id: str, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "producer", url, "--duration", f"{seconds:g}", "--job-id", job_id, "--no-progress"],
        env=env | {"PYTHONUNBUFFERED": "1"}, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, start_new_session=True)


def _stop_process(proc: subprocess.Popen[str] | None, sig: int = signal.SIGINT, timeout: float = 20.0) -> None:
    """Stop a child we started: ``sig`` to it, then SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def _results_at(store: Any, job_id: str) -> dict[int, float]:
    """Frame index → when its detections or error object appeared in storage (``updated``, epoch s)."""
    from framecontract.layout import parse_result_name

    out: dict[int, float] = {}
    for obj in store.list_job(job_id):
        parsed = parse_result_name(obj.name)
        if parsed is None or parsed.kind not in ("detections", "errors") or obj.updated is None:
            continue
        out[parsed.frame_index] = min(out.get(parsed.frame_index, math.inf), obj.updated.timestamp())
    return out


def _wait_manifest(store: Any, job_id: str, producer: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while store.read_manifest(job_id) is None:
        if producer.poll() is not None:
            err = producer.stderr.read() if producer.stderr else ""
            raise RuntimeError(f"the producer exited ({producer.returncode}) before writing job {job_id}: {err}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id}: no manifest after {timeout:g} s")
        time.sleep(0.05)


def _warm_up(env: dict[str, str], store: Any, url: str, job_id: str, seconds: float, say: Say) -> None:
    """A short job from the camera, waited for until its results are stored (model loads, connections)."""
    say(f"warm-up: job {job_id}, {seconds:g} s from the camera (not measured)")
    producer = _run_producer(env, url, job_id, seconds)
    try:
        producer.wait(seconds + 60)
    finally:
        _stop_process(producer)
    manifest = store.read_manifest(job_id)
    wanted = manifest.frames_published if manifest is not None else 0
    deadline = time.monotonic() + 120
    while len(_results_at(store, job_id)) < wanted and time.monotonic() < deadline:
        time.sleep(0.5)


def run_latency(args: argparse.Namespace, say: Say = _say) -> dict[str, Any]:
    """The ``latency`` subcommand; raises KeyboardInterrupt through after stopping everything."""
    from collector.follow import FollowOptions, follow, summary_line
    from collector.store import JobStore
    from deploy.local import start_stack, stop_stack
    from deploy.stack_config import StackConfig
    from framecontract.assets import asset_path
    from loadtest.camera import LoopbackCamera
    from worker.pull import default_processes

    video = args.video or asset_path("vtest")
    workers = args.workers or default_processes()
    stamp = time.strftime("%Y%m%dt%H%M%S", time.gmtime())
    job_id = f"followbench-{stamp}"
    result: dict[str, Any] = {"command": "latency", "seconds": args.seconds, "fps": args.fps,
                              "max_delay_s": args.max_delay, "poll_s": args.poll, "workers": workers,
                              "video": video.name, "job_id": job_id}
    with contextlib.ExitStack() as stack:
        stack_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="frame-fanout-followbench-")))
        say(f"starting a local stack ({workers} pull worker processes) in {stack_dir}")
        handle = start_stack(StackConfig(workers=workers, port=None, pubsub_port=None, storage_port=None,
                                         stack_dir=stack_dir), say=lambda m: None)
        stack.callback(lambda: (say("stopping the local stack"), stop_stack(handle)))
        assert handle.settings is not None
        env = handle.env()
        store = JobStore.from_settings(handle.settings)
        camera = LoopbackCamera(video, fps=args.fps, port=0).start()
        stack.callback(camera.stop)
        say(f"camera: {camera.url} ({video.name}, {args.fps:g} fps)")
        if args.warmup > 0:
            _warm_up(env, store, camera.url, f"{job_id}-warmup", args.warmup, say)
        say(f"job {job_id}: the producer on the camera for {args.seconds:g} s, followed with --max-delay "
            f"{args.max_delay:g}")
        producer = _run_producer(env, camera.url, job_id, args.seconds)
        stack.callback(_stop_process, producer)
        _wait_manifest(store, job_id, producer)
        sink, log, stop = StampedSink(), _LogSink(), threading.Event()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["report"] = follow(store, FollowOptions(job_id, max_delay_s=args.max_delay, poll_s=args.poll),
                                       out=sink, log=log, stop=stop)
            except BaseException as exc:  # surfaced below
                box["error"] = exc

        follower = threading.Thread(target=target, name="followbench-follow", daemon=True)
        follower.start()
        stack.callback(lambda: (stop.set(), follower.join(30)))
        deadline = time.monotonic() + args.seconds + 180
        last_said = time.monotonic()
        while follower.is_alive():
            follower.join(0.5)
            if time.monotonic() - last_said >= 10:
                last_said = time.monotonic()
                say(f"{len(sink.lines)} lines written in order so far")
            if time.monotonic() > deadline:
                say("follow did not finish in time; stopping it")
                stop.set()
        if "error" in box:
            raise box["error"]
        report = box["report"]
        say(summary_line(report))
        producer.wait(30)
        manifest = store.read_manifest(job_id)
        stored = _results_at(store, job_id)
        ticks = list(camera.ticked_at)
    result.update(latency_figures(sink.lines, stored, ticks))
    result.update({"late": report.late, "missing": report.missing, "held_ms_max": report.held_ms_max,
                   "frames_published": manifest.frames_published if manifest else None,
                   "frames_dropped_by_producer": manifest.frames_dropped if manifest else None,
                   "state": manifest.state if manifest else None})
    return result


def format_latency(r: dict[str, Any]) -> str:
    def row(name: str, s: dict[str, Any]) -> str:
        if not s["count"]:
            return f"  {name:<34} no frames"
        return (f"  {name:<34} p50 {s['p50']:.3f} s   p95 {s['p95']:.3f} s   max {s['max']:.3f} s   "
                f"({s['count']} frames)")

    return "\n".join([
        f"collector follow, live: {r['seconds']:g} s at {r['fps']:g} fps from the loopback camera ({r['video']}), "
        f"--max-delay {r['max_delay_s']:g}, --poll {r['poll_s']:g}, {r['workers']} pull workers",
        row("capture -> written in order", r["capture_to_output_s"]),
        row("baseline: capture -> stored", r["capture_to_stored_s"]),
        row("stored -> written in order", r["stored_to_output_s"]),
        row("camera tick -> producer timestamp", r["camera_to_producer_s"]),
        f"  published {r['frames_published']} (producer dropped {r['frames_dropped_by_producer']}), written "
        f"{r['frames_written']} ({r['by_status'].get('ok', 0)} ok, {r['by_status'].get('error', 0)} errors), "
        f"missing {r['missing']}, late {r['late']}; held at most {r['held_ms_max']:.0f} ms; job {r['state']}",
    ])


# ---------------------------------------------------------------- memory

BUCKET = "followbench"
JOB_FPS = 10.0
LINE = "door:160,0,160,240"
WIDTH, HEIGHT = 320, 240


def walkers(frames: int, fps: float = JOB_FPS) -> list[Any]:
    """A person crossing the 320-px frame left to right every 10 s of the job (7 s in view)."""
    from collector.synthetic import MovingBox

    seconds = frames / fps
    return [MovingBox("person", box=(0.0, 80.0, 30.0, 160.0), velocity=(40.0, 0.0), appears_s=k * 10.0,
                      leaves_s=k * 10.0 + 7.0) for k in range(int(seconds // 10) + 1)]


def write_record(bucket: Any, job_id: str, index: int, timestamp_us: int, boxes: Sequence[Any]) -> None:
    """One frame's detections record, as a worker writes it (:func:`collector.synthetic.detections_record`)."""
    from collector.synthetic import detections_record
    from framecontract.layout import result_name

    record = detections_record(job_id, index, timestamp_us, WIDTH, HEIGHT, boxes)
    bucket.blob(result_name("detections", job_id, index, timestamp_us)).upload_from_string(
        record.to_json(), content_type="application/json")


@dataclass
class _Counter:
    """Lines of the follower's stdout, counted as they come."""

    lines: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def read(self, stream: Any) -> None:
        for text in stream:
            status = json.loads(text).get("status", "?")
            with self.cond:
                self.lines += 1
                self.by_status[status] = self.by_status.get(status, 0) + 1
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()


def run_memory(args: argparse.Namespace, say: Say = _say) -> dict[str, Any]:
    """The ``memory`` subcommand; raises KeyboardInterrupt through after stopping everything."""
    from concurrent.futures import ThreadPoolExecutor

    from collector.bench import start_emulator
    from collector.synthetic import synthetic_manifest, timestamp_of
    from framecontract.clients import make_storage_client
    from framecontract.layout import manifest_name
    from framecontract.settings import Settings

    frames, job_id = args.frames, "followbench-memory"
    result: dict[str, Any] = {"command": "memory", "frames": frames, "job_fps": JOB_FPS, "rate": args.rate,
                              "sample_s": args.sample_s}
    with contextlib.ExitStack() as stack:
        say("starting the storage emulator")
        emulator, url = start_emulator(BUCKET)
        stack.callback(lambda: _stop_process(emulator, signal.SIGTERM, 10))  # type: ignore[arg-type]
        settings = Settings(project="followbench", bucket=BUCKET, storage_emulator_host=url)
        bucket = make_storage_client(settings).bucket(BUCKET)

        def put_manifest(published: int | None) -> None:
            manifest = synthetic_manifest(job_id, published, JOB_FPS, WIDTH, HEIGHT,
                                          state="running" if published is None else "complete")
            bucket.blob(manifest_name(job_id)).upload_from_string(manifest.to_json(),
                                                                  content_type="application/json")

        put_manifest(None)
        scene = walkers(frames)
        argv = [sys.executable, "-m", "collector.cli", "follow", "--job", job_id, "--max-delay", "2", "--line", LINE]
        result["follow_command"] = " ".join(["collector", *argv[3:]])
        follower = subprocess.Popen(argv, env=os.environ | settings.to_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
        stack.callback(_stop_process, follower)
        counter = _Counter()
        reader = threading.Thread(target=counter.read, args=(follower.stdout,), daemon=True)
        reader.start()
        started = time.monotonic()
        samples: list[Sample] = []
        sampling = threading.Event()

        def sample() -> None:
            while True:
                rss = read_status_kib(follower.pid, "VmRSS")
                if rss is not None:
                    samples.append(Sample(round(time.monotonic() - started, 2), counter.lines, rss))
                if sampling.wait(args.sample_s):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stack.callback(sampling.set)
        say(f"job {job_id}: writing {frames} frames ({frames / JOB_FPS / 60:.0f} min at {JOB_FPS:g} fps) at "
            f"{args.rate:g} frames/s while `{result['follow_command']}` follows it")
        written_at = time.monotonic()
        last_said = written_at
        with ThreadPoolExecutor(max_workers=4) as pool:
            pending = []
            for index in range(frames):
                due = written_at + index / args.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                ts = timestamp_of(index, JOB_FPS)
                in_view = [b for b in scene if b.at(ts) is not None]
                pending.append(pool.submit(write_record, bucket, job_id, index, ts, in_view))
                if len(pending) > 64:
                    pending.pop(0).result()
                if follower.poll() is not None:
                    raise RuntimeError(f"follow exited ({follower.returncode}): {follower.stderr.read()}")
                if time.monotonic() - last_said >= 10:
                    last_said = time.monotonic()
                    rss = samples[-1].rss_kib / 1024 if samples else 0
                    say(f"{index + 1} frames written, {counter.lines} followed, follower RSS {rss:.1f} MiB")
            for future in pending:
                future.result()
        result["write_seconds"] = round(time.monotonic() - written_at, 1)
        with counter.cond:
            if not counter.cond.wait_for(lambda: counter.lines >= frames or follower.poll() is not None,
                                         timeout=300):
                raise RuntimeError(f"follow wrote {counter.lines} of {frames} lines in 300 s")
        time.sleep(args.sample_s)  # one more reading with every line written
        result["vm_hwm_kib"] = read_status_kib(follower.pid, "VmHWM")
        put_manifest(frames)
        _, status, usage = os.wait4(follower.pid, 0)
        follower.returncode = os.waitstatus_to_exitcode(status)
        sampling.set()
        sampler.join()
        reader.join(10)
        stderr = follower.stderr.read() if follower.stderr else ""
        result["ru_maxrss_kib"] = usage.ru_maxrss
        result["follow_exit"] = follower.returncode
        result["follow_summary"] = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    result["lines"], result["by_status"] = counter.lines, counter.by_status
    result["samples"] = [s.__dict__ for s in samples]
    points = {f"{p}%": rss_at(samples, math.ceil(frames * p / 100)) for p in (10, 50, 100)}
    result["rss_mib_at"] = {k: round(s.rss_kib / 1024, 1) for k, s in points.items()}
    result["slope_mib_per_10k_frames"] = round(memory_slope_mib_per_10k(samples, frames), 2)
    if args.chart:
        draw_chart(samples, Path(args.chart), result)
        result["chart"] = args.chart
    return result


def draw_chart(samples: Sequence[Sample], path: Path, result: dict[str, Any]) -> None:
    """RSS (MiB) against frames written, with the slope in the title (matplotlib, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    ax.plot([s.frames for s in samples], [s.rss_kib / 1024 for s in samples], marker=".", linewidth=1)
    ax.set_xlabel("frames written by collector follow")
    ax.set_ylabel("follower RSS (MiB)")
    top = max(s.rss_kib for s in samples) / 1024
    ax.set_ylim(0, top * 1.15)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"collector follow --line, {result['frames']:,} frames of a {result['job_fps']:g} fps job: "
                 f"{result['slope_mib_per_10k_frames']:+.2f} MiB per 10,000 frames", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def format_memory(r: dict[str, Any]) -> str:
    at = r["rss_mib_at"]
    hwm = r.get("vm_hwm_kib")
    return "\n".join([
        f"collector follow, memory: {r['frames']} frames of a {r['job_fps']:g} fps job "
        f"({r['frames'] / r['job_fps'] / 60:.0f} min), written at {r['rate']:g} frames/s in {r['write_seconds']} s, "
        f"followed by `{r['follow_command']}`",
        f"  RSS at 10 % {at['10%']} MiB, 50 % {at['50%']} MiB, 100 % {at['100%']} MiB; slope "
        f"{r['slope_mib_per_10k_frames']:+.2f} MiB per 10,000 frames; peak (VmHWM) "
        f"{'?' if hwm is None else f'{hwm / 1024:.1f}'} MiB, ru_maxrss {r['ru_maxrss_kib'] / 1024:.1f} MiB",
        f"  {r['lines']} lines {r['by_status']}; {r['follow_summary']}",
    ] + ([f"  chart: {r['chart']}"] if r.get("chart") else []))


# ---------------------------------------------------------------- main


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run, fmt = (run_latency, format_latency) if args.command == "latency" else (run_memory, format_memory)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # SIGTERM stops it like Ctrl-C (everything started is stopped), and Ctrl-C works even when it was
        # started with SIGINT ignored (`cmd &` in a script)
        previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = run(args)
    except KeyboardInterrupt:
        _say("interrupted; everything started was stopped")
        return EXIT_INTERRUPTED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(fmt(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
