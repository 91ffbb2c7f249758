"""Worker throughput benchmark: the push endpoint end to end vs raw model inference, same run.

Usage::

    python -m worker.benchmark [--frames 150] [--repeat 3]

Baseline: the NanoDet detector alone (``detect()`` on already-decoded frames, one thread) — the
most a worker process could do per core. Measured: the same frames as Pub/Sub push envelopes
POSTed with two in flight (as Pub/Sub pushes; ``--concurrency``) to a real gunicorn worker
process (one process, the production gunicorn config, so one inference at a time) that decodes,
runs the PeekingDuck pipeline (model + draw.bbox), encodes and stores the
annotated JPEG and detections create-only in the storage emulator. The two alternate ``--repeat``
times; the ratio of medians is reported with the per-stage breakdown from the stored records.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import requests

from framecontract.endpoints import PUSH_PATH, READY_PATH

REPO = Path(__file__).resolve().parents[1]


def load_frames(video: Path, count: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    capture.release()
    return frames


def raw_inference_fps(frames: list[bytes]) -> float:
    import numpy as np

    from framecontract.assets import asset_path
    from worker.detectors.nanodet import NanoDetDetector

    detector = NanoDetDetector(asset_path("nanodet"), num_threads=1)
    images = [cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR) for f in frames]
    detector.detect(images[0])
    started = time.perf_counter()
    for image in images:
        detector.detect(image)
    return len(images) / (time.perf_counter() - started)


def push_fps(url: str, frames: list[bytes], job_id: str, concurrency: int) -> float:
    """Frames/s through the push endpoint with ``concurrency`` pushes in flight, as Pub/Sub sends them."""
    from concurrent.futures import ThreadPoolExecutor

    from framecontract.message import FrameAttributes

    envelopes = [
        {"message": {"data": base64.b64encode(jpeg).decode(), "messageId": f"{job_id}-{index}",
                     "attributes": FrameAttributes(job_id, index, index * 100_000, 768, 576).to_pubsub()}}
        for index, jpeg in enumerate(frames)
    ]

    def push_share(share: int) -> None:
        session = requests.Session()
        for envelope in envelopes[share::concurrency]:
            response = session.post(url + PUSH_PATH, json=envelope, timeout=60)
            if response.status_code != 204:
                raise RuntimeError(f"push returned {response.status_code}: {response.text}")

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(push_share, range(concurrency)))
    return len(frames) / (time.perf_counter() - started)


def stage_breakdown(client: Any, bucket: str, job_ids: list[str]) -> dict[str, float]:
    stages: dict[str, list[float]] = {}
    for job_id in job_ids:
        for blob in client.list_blobs(bucket, prefix=f"jobs/{job_id}/detections/"):
            for stage, ms in json.loads(blob.download_as_bytes())["latency_ms"].items():
                stages.setdefault(stage, []).append(ms)
    return {stage: statistics.median(values) for stage, values in stages.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="pushes in flight (default 2 = WORKER_MAX_IN_FLIGHT; the emulator pushes 2 at a time)")
    args = parser.parse_args(argv)

    from deploy.emulators import free_port
    from deploy.storage_emulator import StorageEmulator
    from framecontract.assets import asset_path
    from framecontract.clients import make_storage_client
    from framecontract.settings import Settings

    frames = load_frames(asset_path("vtest"), args.frames)
    emulator = StorageEmulator(default_bucket="bench").start()
    settings = Settings(project="bench", bucket="bench", storage_emulator_host=emulator.url)
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="1", WORKER_PUSH_AUTH="off",
               STORAGE_EMULATOR_HOST=emulator.url,
               GOOGLE_CLOUD_PROJECT="bench", FRAMES_BUCKET="bench")
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:worker.gunicorn_conf",
                                   "--no-control-socket", "worker.app:create_app()"],
                                  cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if requests.get(url + READY_PATH, timeout=1).status_code == 200:
                        break
                except requests.RequestException:  # refused, or accepted but not answered while loading
                    time.sleep(0.2)
            raw, push, jobs = [], [], []
            for round_ in range(args.repeat):
                raw.append(raw_inference_fps(frames))
                jobs.append(f"bench-{round_}")
                push.append(push_fps(url, frames, jobs[-1], args.concurrency))
                print(f"round {round_ + 1}: raw inference {raw[-1]:.1f} frames/s, push end to end {push[-1]:.1f} "
                      f"frames/s, ratio {push[-1] / raw[-1]:.2f}", file=sys.stderr)
            stages = stage_breakdown(make_storage_client(settings), "bench", jobs)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            emulator.stop()
    raw_fps, push_fps_ = statistics.median(raw), statistics.median(push)
    print(f"frames: {len(frames)} of vtest.avi (768x576), {args.repeat} alternating rounds, 1 worker process, "
          f"{args.concurrency} pushes in flight")
    print(f"raw model inference (1 thread):       {raw_fps:.1f} frames/s")
    print(f"push endpoint, envelope → stored:      {push_fps_:.1f} frames/s")
    print(f"ratio (per core):                      {push_fps_ / raw_fps:.2f}")
    print("median per-stage latency (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
