"""What one poll of ``collector follow`` costs, against listing the whole job each poll (the alternative).

Usage::

    .venv/bin/python -m collector.pollcost                 # jobs of 1,000 and 10,000 frames, 5 polls each
    .venv/bin/python -m collector.pollcost --frames 2000 --repeat 3

Starts the storage emulator as a child process (as ``collector.bench`` does), seeds detections records
of a 10 fps job through :class:`framecontract.records.DetectionsRecord` (no JPEGs: listings do not read
them), then times, for each job length:

- ``whole``: one listing of ``jobs/<job>/`` (what ``status``/``wait`` do per poll): pages of 1,000;
- ``follow idle``: :meth:`collector.feed.ResultFeed.poll` from max-delay (2 s) behind the job's last frame,
  nothing new — the steady state of following a live job between two frames;
- ``follow +10``: the same after 10 new frames were written.

Prints a table on stderr and JSON on stdout: milliseconds per poll (median), list requests, names
transferred. Cloud Storage bills a list request as a class A operation whatever it returns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from collector.bench import start_emulator
from collector.feed import ResultFeed
from collector.store import JobStore
from collector.synthetic import detections_record, synthetic_manifest, timestamp_of
from framecontract.clients import make_storage_client
from framecontract.layout import manifest_name, result_name
from framecontract.settings import Settings

BUCKET = "pollcost"
FPS = 10.0
LOOKBACK_US = 2_000_000


def seed(bucket: Any, job_id: str, indices: range) -> None:
    """Detections records only, written by 4 threads (the emulator answers one request at a time)."""
    def put(index: int) -> None:
        ts = timestamp_of(index, FPS)
        record = detections_record(job_id, index, ts, 320, 240)
        bucket.blob(result_name("detections", job_id, index, ts)).upload_from_string(
            record.to_json(), content_type="application/json")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, indices))


def timed(fn: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2), result


def measure(store: JobStore, bucket: Any, frames: int, repeat: int) -> dict[str, Any]:
    job = f"poll-{frames}"
    manifest = synthetic_manifest(job, None, FPS, 320, 240, state="running")
    bucket.blob(manifest_name(job)).upload_from_string(manifest.to_json(), content_type="application/json")
    seed(bucket, job, range(frames))
    whole_ms, listed = timed(lambda: store.list_job(job), repeat)
    feed = ResultFeed(store, job)
    while feed.poll(None if not feed.seen else max(feed.seen.values()) - LOOKBACK_US):
        pass  # catch up
    since = timestamp_of(frames - 1, FPS) - LOOKBACK_US
    before = feed.objects_listed
    idle_ms, new = timed(lambda: feed.poll(since), repeat)
    idle_names = (feed.objects_listed - before) / repeat
    seed(bucket, job, range(frames, frames + 10))
    before = feed.objects_listed
    started = time.perf_counter()
    fresh = feed.poll(since)
    plus_ms = round((time.perf_counter() - started) * 1000, 2)
    feed.close()
    return {
        "frames": frames,
        "whole": {"ms": whole_ms, "requests": -(-len(listed) // 1000), "names": len(listed)},
        "follow_idle": {"ms": idle_ms, "requests": len(feed.folders), "names": idle_names, "new": len(new)},
        "follow_plus_10": {"ms": plus_ms, "requests": len(feed.folders), "names": feed.objects_listed - before,
                           "new": len(fresh)},
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m collector.pollcost``: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m collector.pollcost", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="1000,10000", help="job lengths, comma-separated (1000,10000)")
    parser.add_argument("--repeat", type=int, default=5, help="polls timed per figure (median) (5)")
    args = parser.parse_args(argv)
    proc, url = start_emulator(BUCKET)
    try:
        settings = Settings(project="pollcost", bucket=BUCKET, storage_emulator_host=url)
        store = JobStore.from_settings(settings)
        bucket = make_storage_client(settings).bucket(BUCKET)
        rows = [measure(store, bucket, int(n), max(args.repeat, 1)) for n in args.frames.split(",") if n.strip()]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for row in rows:
        print(f"{row['frames']:>6} frames: whole listing {row['whole']['ms']} ms ({row['whole']['requests']} requests, "
              f"{row['whole']['names']} names); follow idle {row['follow_idle']['ms']} ms (32 requests, "
              f"{row['follow_idle']['names']:.0f} names); follow +10 frames {row['follow_plus_10']['ms']} ms "
              f"({row['follow_plus_10']['names']} names, {row['follow_plus_10']['new']} new)", file=sys.stderr)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
