"""Object layout in the bucket: deterministic, hash-sharded names for a job's results.

Usage::

    names = frame_objects("demo", frame_index=7, timestamp_us=700_000)
    names.image       # 'jobs/demo/frames/4/00000000000000700000-000000007.jpg'
    parse_result_name(names.detections)  # ResultName(kind='detections', job_id='demo', ...)

Layout under ``jobs/<job>/``::

    manifest.json                       written by the producer (start and end)
    frames/<shard>/<stem>.jpg           annotated JPEG
    detections/<shard>/<stem>.json      detections of that frame
    errors/<shard>/<stem>.json          error record of a frame that can never succeed
    payloads/<shard>/<stem>.jpg         claim-checked input frames too large for a message

``<stem>`` is ``<timestamp_us:020>-<frame_index:09>`` so names sort by time inside a shard,
and ``<shard>`` is one hex digit of a hash of (job, index): sequential frames spread over 16
key ranges instead of hot-spotting one. Names depend only on (job, index, timestamp), so a
redelivered message maps to the same objects and a create-only write makes it a no-op.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from framecontract.jobid import validate_job_id

JOBS_PREFIX = "jobs/"
SHARD_HEX_DIGITS = 1
FRAME_INDEX_DIGITS = 9
TIMESTAMP_DIGITS = 20
MAX_FRAME_INDEX = 10**FRAME_INDEX_DIGITS - 1
"""Largest frame index a name can hold (999,999,999: 11 years of 25 fps video)."""
MAX_TIMESTAMP_US = 10**TIMESTAMP_DIGITS - 1
"""Largest timestamp a name can hold (far beyond any wall clock in µs since the epoch)."""
SHARDS = tuple(f"{i:x}" for i in range(16 ** SHARD_HEX_DIGITS))

ResultKind = Literal["frames", "detections", "errors", "payloads"]
_SUFFIX: dict[str, str] = {"frames": ".jpg", "detections": ".json", "errors": ".json", "payloads": ".jpg"}

_RESULT_NAME = re.compile(
    r"jobs/(?P<job>[a-z0-9][a-z0-9-]{0,62})/(?P<kind>frames|detections|errors|payloads)/"
    rf"(?P<shard>[0-9a-f]{{{SHARD_HEX_DIGITS}}})/(?P<ts>[0-9]{{{TIMESTAMP_DIGITS}}})-(?P<idx>[0-9]{{{FRAME_INDEX_DIGITS}}})"
    r"\.(?P<ext>jpg|json)"
)


def job_prefix(job_id: str) -> str:
    """``jobs/<job>/`` — every object of a job lives under it."""
    return f"{JOBS_PREFIX}{validate_job_id(job_id)}/"


def manifest_name(job_id: str) -> str:
    """Name of the job's manifest object."""
    return f"{job_prefix(job_id)}manifest.json"


def shard_of(job_id: str, frame_index: int) -> str:
    """The hash shard (one hex digit) of a frame."""
    digest = hashlib.blake2b(f"{job_id}/{frame_index}".encode(), digest_size=4).hexdigest()
    return digest[:SHARD_HEX_DIGITS]


def frame_stem(timestamp_us: int, frame_index: int) -> str:
    """``<timestamp_us:020>-<frame_index:09>``; sorts by time, then index."""
    if not (0 <= timestamp_us <= MAX_TIMESTAMP_US and 0 <= frame_index <= MAX_FRAME_INDEX):
        raise ValueError(f"timestamp_us must be in 0..{MAX_TIMESTAMP_US} and frame_index in 0..{MAX_FRAME_INDEX}")
    return f"{timestamp_us:0{TIMESTAMP_DIGITS}d}-{frame_index:0{FRAME_INDEX_DIGITS}d}"


def result_name(kind: ResultKind, job_id: str, frame_index: int, timestamp_us: int) -> str:
    """Deterministic object name of one result of one frame."""
    shard = shard_of(job_id, frame_index)
    return f"{job_prefix(job_id)}{kind}/{shard}/{frame_stem(timestamp_us, frame_index)}{_SUFFIX[kind]}"


@dataclass(frozen=True, slots=True)
class FrameObjects:
    """The object names belonging to one frame."""

    image: str
    detections: str
    error: str
    payload: str


def frame_objects(job_id: str, frame_index: int, timestamp_us: int) -> FrameObjects:
    """All object names of one frame."""
    return FrameObjects(
        image=result_name("frames", job_id, frame_index, timestamp_us),
        detections=result_name("detections", job_id, frame_index, timestamp_us),
        error=result_name("errors", job_id, frame_index, timestamp_us),
        payload=result_name("payloads", job_id, frame_index, timestamp_us),
    )


@dataclass(frozen=True, slots=True, order=True)
class ResultName:
    """A parsed result object name. Orders by (timestamp, index) first."""

    timestamp_us: int
    frame_index: int
    kind: str
    job_id: str
    shard: str
    name: str


def parse_result_name(name: str) -> ResultName | None:
    """Parse a result object name; ``None`` for names that are not results (e.g. the manifest)."""
    match = _RESULT_NAME.fullmatch(name)
    if match is None or _SUFFIX[match["kind"]] != "." + match["ext"]:
        return None
    job_id, index = match["job"], int(match["idx"])
    if match["shard"] != shard_of(job_id, index):
        return None
    return ResultName(int(match["ts"]), index, match["kind"], job_id, match["shard"], name)


PREDICT_PREFIX = "predict/"


def predict_name(received_at_us: int, request_id: str) -> str:
    """Name of a front-door (``POST /predict``) result: ``predict/<shard>/<time µs:020>-<id>.jpg``.

    Unique per request (``request_id`` is random), spread over 16 shards, sortable by time within one.
    """
    if not re.fullmatch(r"[0-9a-f]{8,32}", request_id):
        raise ValueError("request_id must be 8-32 lowercase hex digits")
    shard = hashlib.blake2b(request_id.encode(), digest_size=4).hexdigest()[:SHARD_HEX_DIGITS]
    return f"{PREDICT_PREFIX}{shard}/{received_at_us:020d}-{request_id}.jpg"


def gs_uri(bucket: str, name: str) -> str:
    """``gs://bucket/name``."""
    return f"gs://{bucket}/{name}"


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/name`` into (bucket, name); ValueError otherwise."""
    match = re.fullmatch(r"gs://([a-z0-9][a-z0-9._-]{1,221}[a-z0-9])/(.+)", uri)
    if match is None:
        raise ValueError(f"not a gs:// object URI: {uri!r}")
    return match[1], match[2]


def time_window_listings(
    job_id: str, kinds: tuple[ResultKind, ...], start_us: int | None, end_us: int | None
) -> list[tuple[str, str | None, str | None]]:
    """``(prefix, start_offset, end_offset)`` listings that together return exactly the result objects of
    ``kinds`` with ``start_us <= timestamp < end_us`` (``None``: unbounded): one per kind and shard, since
    names sort by time inside a ``<kind>/<shard>/`` folder. For GCS's ``startOffset``/``endOffset``.

    >>> time_window_listings("demo", ("frames",), 1_000_000, None)[0]
    ('jobs/demo/frames/0/', 'jobs/demo/frames/0/00000000000001000000-000000000', None)
    """
    listings = []
    for kind in kinds:
        for shard in SHARDS:
            prefix = f"{job_prefix(job_id)}{kind}/{shard}/"
            start = prefix + frame_stem(max(start_us, 0), 0) if start_us is not None else None
            end = prefix + frame_stem(max(end_us, 0), 0) if end_us is not None else None
            listings.append((prefix, start, end))
    return listings
