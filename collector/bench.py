"""Reassembly benchmark: a synthetic job on a local storage emulator, reassembled, against the encode-only bound.

Usage::

    .venv/bin/python -m collector.bench --frames 300 [--width 768 --height 576] [--workers 8]

Starts the patched storage emulator (``python -m deploy.storage_emulator``) as a child process on a
free port, seeds a job of counter frames the way the worker writes results, then measures in one run:

- ``reassemble``: ``collector reassemble`` in a child process (frames/s from its report; peak RSS);
- ``encode-only``: the same frames, already decoded in memory, through the same encoder settings;
- ``download-only`` and ``decode-only``: the other two stages alone, for context.

Prints one JSON object; ``ratio`` = reassemble fps / encode-only fps (issue 5 targets ≥ 0.8).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from collector.plan import parse_listing, plan_timeline
from collector.reassemble import ordered_window
from collector.store import EMULATOR_DOWNLOAD_WORKERS, JobStore
from collector.synthetic import counter_frame, encode_jpeg, seed_job
from collector.video import DEFAULT_PRESET, VideoEncoder
from framecontract.clients import make_storage_client
from framecontract.settings import Settings

BENCH_JOB = "bench"


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


def measure_encode_only(frames: int, width: int, height: int, fps: float, preset: str, path: Path) -> float:
    """Frames/s of the encoder alone (frames generated outside the timer)."""
    spent = 0.0
    with VideoEncoder.open(path, fps, width, height, preset=preset) as video:
        for index in range(frames):
            image = cv2.imdecode(np.frombuffer(encode_jpeg(counter_frame(index, width, height)), np.uint8), 1)
            start = time.perf_counter()
            video.write_bgr(image)
            spent += time.perf_counter() - start
        start = time.perf_counter()
        video.close()
        spent += time.perf_counter() - start
    return frames / spent


def measure_download_and_decode(store: JobStore, workers: int) -> tuple[float, float]:
    """Frames/s of downloading every annotated JPEG (+ detections) with the thread pool, and of decoding them."""
    timeline = plan_timeline(parse_listing(BENCH_JOB, store.list_job(BENCH_JOB)), None)
    names = [(s.result.image.name, s.result.detections.name) for s in timeline.slots if s.result and s.result.image
             and s.result.detections]  # fmt: skip
    start = time.perf_counter()
    jpegs: list[bytes] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        fetch = lambda pair: (store.download(pair[0]), store.download(pair[1]))  # noqa: E731
        jpegs.extend(image for image, _ in ordered_window(pool, fetch, names, 2 * workers))
    download_fps = len(names) / (time.perf_counter() - start)
    start = time.perf_counter()
    for data in jpegs:
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    decode_fps = len(jpegs) / (time.perf_counter() - start)
    return download_fps, decode_fps


def run(frames: int, width: int, height: int, workers: int, preset: str, fps: float = 10.0) -> dict[str, Any]:
    """Seed, reassemble, measure; returns the figures."""
    bucket_name = "bench"
    proc, url = start_emulator(bucket_name)
    try:
        settings = Settings(project="bench", bucket=bucket_name, storage_emulator_host=url)
        bucket = make_storage_client(settings).bucket(bucket_name)
        start = time.perf_counter()
        seed_job(bucket, BENCH_JOB, range(frames), fps=fps, width=width, height=height)
        seed_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory(prefix="collector-bench-") as tmp:
            out = Path(tmp) / "bench.mp4"
            env = dict(os.environ, STORAGE_EMULATOR_HOST=url, GOOGLE_CLOUD_PROJECT="bench",
                       FRAMES_BUCKET=bucket_name, FRAME_FANOUT_SETTINGS=str(Path(tmp) / "none.json"))  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            done = subprocess.run(
                [sys.executable, "-m", "collector.cli", "reassemble", "--job", BENCH_JOB, "-o", str(out),
                 "--workers", str(workers), "--preset", preset, "--no-progress"],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            if done.returncode != 0:
                raise RuntimeError(f"reassemble failed: {done.stderr.strip()}")
            report = json.loads((Path(tmp) / "bench.report.json").read_text())
            reassemble_fps = report["frames_written"] / report["seconds"]
            encode_fps = measure_encode_only(frames, width, height, fps, preset, Path(tmp) / "encode-only.mp4")
        download_fps, decode_fps = measure_download_and_decode(JobStore.from_settings(settings), workers)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "frames": frames,
        "size": f"{width}x{height}",
        "workers": workers,
        "preset": preset,
        "cpus": os.cpu_count(),
        "seed_s": round(seed_s, 2),
        "reassemble_s": report["seconds"],
        "reassemble_fps": round(reassemble_fps, 1),
        "encode_only_fps": round(encode_fps, 1),
        "ratio": round(reassemble_fps / encode_fps, 3),
        "download_only_fps": round(download_fps, 1),
        "decode_only_fps": round(decode_fps, 1),
        "reassemble_peak_rss_mib": round(max(peak_kib, before) / 1024, 1),
        "codec": report["codec"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--workers", type=int, default=EMULATOR_DOWNLOAD_WORKERS)
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.frames, args.width, args.height, args.workers, args.preset), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
