"""``python -m loadtest calibrate``: measured service times, startup time and memory → a profile (JSON).

Usage::

    python -m loadtest calibrate runs/pipeline-30fps-X runs/local-study-short-Y [--startup] [--out PROFILE]
    entry = entry_from_run(Path("runs/pipeline-30fps-X"), cores=2)       # one run folder → one service entry
    starts = measure_startup(cpus=(1, 2), repeats=3)                      # short: a few seconds each

**Service times** come from our own load-test run folders (``python -m loadtest local`` / ``pipeline``):
the worker logs one JSON line per front-door request (``prediction``) and per frame (``frame
processed``) with its stage times (``latency_ms``: decode, queue, model, draw, encode, store). Each
run becomes one entry of the profile (:mod:`loadtest.planner.profile`) with the distributions of the
time the request held the pipeline (model + draw), the time around it (decode + encode + store) and
its CPU (decode + model + draw + encode) — measured *inside* the worker. What the run measured at the
client (goodput, latency) is stored beside them as ``observed``, for ``reproduce`` to compare with;
the model never reads it.

**Startup and memory** (``--startup``): a fresh interpreter pinned to 1, then 2 cores (``taskset``)
imports the worker, builds its pipeline and runs the warm-up inference — what a container does before
``/readyz`` answers — and the time from spawning it to that point is the startup time; it then runs
20 frames and reports its peak RSS. A few seconds per run, ``--repeats`` (3) runs per core count.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtest.planner.profile import Distribution, Profile, ProfileError, ServiceEntry, StartupEntry

REPO = Path(__file__).resolve().parents[2]
RECORD_MESSAGES = {"prediction": "request", "frame processed": "frame"}
LOGS = ("pull-workers.log", "workers.log")
STARTUP_FRAMES = 20

STARTUP_PROBE = """
import resource, sys, time
t0 = float(sys.argv[1])
import numpy as np
import cv2
import worker.app  # noqa: F401  - what gunicorn imports
from worker.pipeline import Pipeline
pipeline = Pipeline.from_yaml()
pipeline.run(np.zeros((64, 64, 3), dtype=np.uint8))  # the worker's warm-up
ready = time.time() - t0
image = cv2.imdecode(np.frombuffer(open(sys.argv[2], 'rb').read(), np.uint8), cv2.IMREAD_COLOR)
for _ in range(int(sys.argv[3])):  # decode, pipeline (draws in place), encode: a frame's work
    frame = image.copy()
    pipeline.run(frame)
    cv2.imencode('.jpg', frame)
print(f"{ready:.3f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
"""


def log_records(log_path: Path) -> Iterator[dict[str, Any]]:
    """The JSON records of a worker log, in order; other lines (gunicorn's own, tracebacks) are skipped."""
    with log_path.open(errors="replace") as fh:
        for line in fh:
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def worker_records(log_path: Path) -> list[dict[str, Any]]:
    """The per-frame / per-request records of a worker log (JSON lines), successful ones only."""
    return [record for record in log_records(log_path)
            if record.get("message") in RECORD_MESSAGES and isinstance(record.get("latency_ms"), dict)
            and record.get("outcome", "processed") == "processed"]


def stage_times(latency: dict[str, float]) -> tuple[float, float, float]:
    """(lock, outside, cpu) in ms from one record's stage times (see the module docstring).

    >>> stage_times({"decode": 3, "queue": 9, "model": 30, "draw": 2, "encode": 1, "store": 10, "total": 55})
    (32, 14, 36)
    """
    get = latency.get
    lock = get("model", 0) + get("draw", 0)
    outside = get("decode", 0) + get("encode", 0) + get("store", 0)
    cpu = get("decode", 0) + lock + get("encode", 0)
    return lock, outside, cpu


def _processes(log_path: Path) -> int:
    """Worker processes in a log: the pull supervisor's count, or the gunicorn workers that became ready."""
    pids = set()
    for record in log_records(log_path):
        if record.get("message") == "pull supervisor started":
            return int(record["processes"])
        if record.get("message") == "worker ready":
            pids.add(record.get("pid"))
    return len(pids)


def _pull_max_held(log_path: Path) -> int | None:
    for record in log_records(log_path):
        if record.get("message") == "pull worker ready":
            return int(record.get("max_held", 0)) or None
    return None


def entry_from_run(run_dir: Path, cores: int, role: str = "calibration", entry_id: str | None = None) -> ServiceEntry:
    """One service entry from a run folder (``run.json`` + the worker log it kept)."""
    from loadtest.results import load_run

    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ProfileError(f"{run_dir}: no run.json (not a run folder of python -m loadtest)")
    meta = json.loads(meta_path.read_text())
    log = _worker_log(run_dir)
    records = worker_records(log)
    kind = RECORD_MESSAGES[records[0]["message"]]
    processes = _processes(log)
    if processes < 1:
        raise ProfileError(f"{log}: cannot tell how many worker processes ran (no 'worker ready' lines)")
    times = [stage_times(r["latency_ms"]) for r in records]
    data = load_run(run_dir)
    t = data.totals
    if kind == "request":
        load = {k: meta["load"][k] for k in ("users", "spawn_rate", "duration_s", "fps", "client") if k in meta["load"]}
        delivery = "direct"
        per_process = load["users"] / processes
        image_bytes = _image_bytes(meta["load"].get("image", "dog"))
    else:
        load = {"rate_fps": meta["rate_fps"], "duration_s": meta["duration_s"], "frames": meta["frames"]}
        held = _pull_max_held(log)
        delivery = "pull" if held else "push"
        per_process = float(held) if held else 2.0 / processes
        image_bytes = int(meta.get("image", {}).get("bytes", 0))
    observed = {"good_per_s": t.ok_per_s, "requests": t.requests, "good": t.ok, "failures": t.failures,
                "failures_by_kind": t.failures_by_kind, "refusals_by_kind": t.refusals_by_kind,
                "good_p50_ms": t.ok_p50_ms, "good_p95_ms": t.ok_p95_ms, "duration_s": data.duration_s}
    return ServiceEntry(
        id=entry_id or run_dir.name, kind=kind, source=str(meta.get("label") or run_dir.name),
        recorded_at=str(meta.get("started_at") or meta.get("start") or _from_name(run_dir.name)),
        cores=cores, processes=processes, concurrency_per_process=round(per_process, 3), delivery=delivery,
        samples=len(records), lock=Distribution.from_values([x[0] for x in times]),
        outside=Distribution.from_values([x[1] for x in times]), cpu=Distribution.from_values([x[2] for x in times]),
        image_bytes=image_bytes, load=load, host=dict(meta.get("client", {})), observed=observed, role=role)


def _worker_log(run_dir: Path) -> Path:
    for name in LOGS:
        if (run_dir / name).is_file() and worker_records(run_dir / name):
            return run_dir / name
    raise ProfileError(f"{run_dir}: no worker log with per-frame or per-request records ({' or '.join(LOGS)})")


def delivery_delay_from_run(run_dir: Path) -> Distribution:
    """Publish-to-delivery time of a light pipeline run: per frame, (log time - capture time) - the worker's own
    total. At light load nothing waits for a free process, so this is the emulator's and client's overhead."""
    values = []
    for record in worker_records(_worker_log(run_dir)):
        if record["message"] != "frame processed" or "timestamp_us" not in record:
            continue
        logged = dt.datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
        values.append(max(0.0, (logged - record["timestamp_us"] / 1e6) * 1000 - record["latency_ms"]["total"]))
    if not values:
        raise ProfileError(f"{run_dir}: no frame records to measure the delivery time from (a pipeline run is needed)")
    return Distribution.from_values(values)


def measure_http_rtt(requests: int = 200) -> float:
    """Median round trip of a tiny HTTP request over a kept-alive connection on 127.0.0.1 (seconds)."""
    import http.client
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            conn.request("GET", "/")
            conn.getresponse().read()
            times.append(time.perf_counter() - started)
        conn.close()
    finally:
        server.shutdown()
        server.server_close()
    return round(statistics.median(times), 6)


def _from_name(name: str) -> str:
    stamp = name.rsplit("-", 1)[-1]
    try:
        return dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).isoformat()
    except ValueError:
        return "?"


def _image_bytes(spec: str) -> int:
    try:
        from loadtest.checks import load_image

        return len(load_image(spec).data)
    except (OSError, ValueError, RuntimeError):
        return 0


def measure_startup(cpus: Iterable[int] = (1, 2), repeats: int = 3, image: Path | None = None,
                    say: Callable[[str], None] = print) -> list[StartupEntry]:
    """Container-like starts pinned to each core count (``taskset``), ``repeats`` times each."""
    if image is None:
        from framecontract.assets import asset_path

        image = asset_path("dog")
    taskset = shutil.which("taskset")
    available = os.cpu_count() or 1
    out = []
    for n in cpus:
        if n > available:
            say(f"startup: skipping {n} cores (this machine has {available})")
            continue
        samples, rss = [], []
        for _ in range(repeats):
            pin = [taskset, "-c", ",".join(str(c) for c in range(n))] if taskset else []
            started = time.time()
            proc = subprocess.run([*pin, sys.executable, "-c", STARTUP_PROBE, f"{started:.6f}", str(image),
                                   str(STARTUP_FRAMES)], cwd=REPO, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"startup probe failed: {proc.stderr[-2000:]}")
            ready_s, rss_mib = map(float, proc.stdout.split()[-2:])
            samples.append(round(ready_s, 3))
            rss.append(rss_mib)
            say(f"startup on {n} core(s): {ready_s:.2f} s to ready, peak RSS {rss_mib:.0f} MiB")
        out.append(StartupEntry(cpus=n, samples_s=tuple(samples), peak_rss_mib=round(max(rss), 1)))
    return out


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                              capture_output=True, text=True, check=True).stdout.strip() or "?"
    except (OSError, subprocess.CalledProcessError):
        return "?"


def calibrate(run_dirs: Sequence[Path], startup: Sequence[StartupEntry], command: str, cores: int | None = None,
              previous: Profile | None = None, validation_dirs: Sequence[Path] = (), delivery_run: Path | None = None,
              http_rtt_s: float | None = None) -> Profile:
    """A profile from run folders and startup measurements; what is not measured again (startup, round trip,
    delivery time) is kept from ``previous``."""
    cores = cores or os.cpu_count() or 1
    entries = tuple([entry_from_run(path, cores) for path in run_dirs]
                    + [entry_from_run(path, cores, role="validation") for path in validation_dirs])
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ProfileError(f"the same run folder twice: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    startup = tuple(startup) or (previous.startup if previous else ())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    provenance = {
        "recorded_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "git_commit": git_commit(),
        "machine": {"cores": cores, "load_average_1m": None if load is None else round(load, 2),
                    "python": sys.version.split()[0]},
        "note": "service times measured inside our worker on a shared machine (the runs' host verdicts are kept "
                "per entry); startup = interpreter start to warm pipeline, pinned with taskset",
        "startup_median_s": {str(s.cpus): round(statistics.median(s.samples_s), 3) for s in startup},
    }
    if delivery_run is not None:
        delivery, source = delivery_delay_from_run(delivery_run), delivery_run.name
    else:
        delivery, source = (previous.delivery_delay, previous.delivery_source) if previous else (None, "")
    rtt = http_rtt_s if http_rtt_s is not None else (previous.http_rtt_s if previous else 0.0)
    provenance["http_rtt_s"] = rtt
    return Profile(provenance=provenance, entries=entries, startup=startup, delivery_delay=delivery,
                   delivery_source=source, http_rtt_s=rtt)
