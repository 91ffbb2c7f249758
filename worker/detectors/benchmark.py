"""Detector latency benchmark: SSD OIDv4 (LiteRT) vs NanoDet-m (onnxruntime), one thread, same frames.

Usage::

    python -m worker.detectors.benchmark [--frames 40] [--repeat 5]

Both detectors run on the same vtest.avi frames, interleaved frame by frame so that machine load
hits both alike; reports the median latency of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.detectors.benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from framecontract.assets import asset_path
    from worker.detectors.nanodet import NanoDetDetector
    from worker.detectors.ssd_oid import SsdOidDetector

    capture = cv2.VideoCapture(str(asset_path("vtest")))
    frames = []
    while len(frames) < args.frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    detectors = {"nanodet": NanoDetDetector(asset_path("nanodet")), "ssd_oid": SsdOidDetector(asset_path("ssd_oid"))}
    for detector in detectors.values():  # warm-up
        detector.detect(frames[0])
    times: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(args.repeat):
        for frame in frames:
            for name, detector in detectors.items():
                started = time.perf_counter()
                detector.detect(frame)
                times[name].append((time.perf_counter() - started) * 1000)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{len(frames)} frames of vtest.avi (768x576) x {args.repeat}, one thread, interleaved")
    for name, median in medians.items():
        print(f"{name:8s} median {median:.1f} ms ({1000 / median:.1f} frames/s)")
    print(f"ssd_oid / nanodet latency ratio: {medians['ssd_oid'] / medians['nanodet']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
