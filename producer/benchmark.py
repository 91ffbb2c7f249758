"""Producer throughput against the decode+encode bound, measured in the same run.

Usage::

    python -m producer.benchmark ~/.cache/frame-fanout/media/vtest.avi [--repeat 3] [--jpeg-quality 90]

Settings (topic, bucket, emulators) come from the environment or the local stack, as for the
producer. The *bound* is what one process can do without publishing: OpenCV decode + JPEG
encode of every frame. The *producer* number is a full job (manifest, publish, flush) into the
configured topic. Prints one JSON object per measurement and a summary line with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from framecontract.settings import load_settings
from producer.encode import encode_jpeg
from producer.job import run_job
from producer.options import DEFAULT_JPEG_QUALITY, ProducerOptions
from producer.sources import open_video_file, quiet_decoder_logs


@dataclass(frozen=True)
class Measurement:
    """One timed pass over the video."""

    what: str
    frames: int
    seconds: float
    cpu_seconds: float
    """CPU time of this process (all threads) during the pass: robust when other work shares the cores."""

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds


def measure_decode_encode(video: str, jpeg_quality: int) -> Measurement:
    """Decode every frame and JPEG-encode it, publishing nothing."""
    started, cpu_started = time.perf_counter(), time.process_time()
    frames = 0
    with open_video_file(video) as source:
        for frame in source.frames():
            encode_jpeg(frame.image, jpeg_quality)
            frames += 1
    return Measurement("decode+encode", frames, time.perf_counter() - started, time.process_time() - cpu_started)


def measure_producer(video: str, jpeg_quality: int) -> Measurement:
    """A full producer job into the configured topic (wall time including manifest writes)."""
    settings = load_settings()
    settings.apply_emulator_env()
    started, cpu_started = time.perf_counter(), time.process_time()
    report = run_job(video, ProducerOptions(jpeg_quality=jpeg_quality), settings)
    return Measurement("producer", report.frames_published, time.perf_counter() - started,
                       time.process_time() - cpu_started)


def main(argv: Sequence[str] | None = None) -> int:
    """Alternate bound and producer runs ``--repeat`` times; print the medians and their ratio."""
    parser = argparse.ArgumentParser(prog="python -m producer.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("video")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY)
    args = parser.parse_args(argv)
    quiet_decoder_logs()
    load_before = os.getloadavg()[0]
    bound: list[float] = []
    producer: list[float] = []
    for _ in range(args.repeat):
        for measure, results in ((measure_decode_encode, bound), (measure_producer, producer)):
            m = measure(args.video, args.jpeg_quality)
            results.append(m.frames_per_second)
            print(json.dumps({**asdict(m), "frames_per_second": round(m.frames_per_second, 1),
                              "cpu_ms_per_frame": round(1000 * m.cpu_seconds / m.frames, 2)}))
    bound_fps, producer_fps = statistics.median(bound), statistics.median(producer)
    print(f"decode+encode bound {bound_fps:.1f} frames/s, producer {producer_fps:.1f} frames/s, "
          f"ratio {producer_fps / bound_fps:.2f} (median of {args.repeat}); load average before/after "
          f"{load_before:.1f}/{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
