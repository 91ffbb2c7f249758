"""The job manifest, ``jobs/<job>/manifest.json``: what the producer published.

Usage::

    m = Manifest(job_id="demo", source="vtest.avi", source_kind="file", clock="stream",
                 source_fps=10.0, sample_fps=None, width=768, height=576)
    blob.upload_from_string(m.to_json(), content_type="application/json")
    m = m.beat(frames_confirmed=120, first_timestamp_us=0, confirmed_timestamp_us=11_900_000)  # every few s
    m = m.finish(state="complete", frames_published=795, first_timestamp_us=0, last_timestamp_us=79_400_000)
    Manifest.from_json(blob.download_as_bytes())
    m.producer_silence_s(now=datetime.now(UTC))      # seconds without a heartbeat if the producer is stale

Heartbeat: while a job is ``running`` its producer rewrites the manifest every ``heartbeat_interval_s``
with ``heartbeat_at`` and its progress, counted only over frames Pub/Sub has confirmed, as the longest
run from the start (``frames_confirmed``: frames ``0..frames_confirmed-1`` are all published). A
``running`` manifest whose heartbeat is older than :meth:`Manifest.stale_after_s` belongs to a producer
that is gone (killed, host lost): the collector says so, and ``python -m producer SOURCE --resume JOB``
continues the job from ``frames_confirmed``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from framecontract import SCHEMA_VERSION
from framecontract.jobid import InvalidJobIdError, validate_job_id
from framecontract.layout import FRAME_INDEX_DIGITS, TIMESTAMP_DIGITS

ManifestState = Literal["running", "complete", "stopped", "failed"]
STATES: tuple[str, ...] = ("running", "complete", "stopped", "failed")
FINAL_STATES = frozenset({"complete", "stopped", "failed"})
Clock = Literal["stream", "wallclock"]
CLOCKS: tuple[str, ...] = ("stream", "wallclock")

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
"""How often a running producer rewrites its manifest (``--heartbeat``)."""
STALE_AFTER_HEARTBEATS = 3
"""A producer silent for this many heartbeat intervals is stale ..."""
STALE_AFTER_MIN_S = 30.0
"""... and for at least this long: a storage hiccup or clocks a few seconds apart do not make it stale."""


MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest a reader accepts (one with the 1,000 gaps a live job keeps is about 200 KB)."""
MAX_FRAMES = 10**FRAME_INDEX_DIGITS
"""``frames_published`` and ``frames_confirmed`` are at most this: frame indices have 9 digits."""
MAX_COUNT = 10**15
"""Other counters (dropped frames, gaps, skipped images)."""
MAX_FPS = 1_000_000
MAX_TEXT = 4096
"""Longest string field (a source URL, an error message)."""
MAX_ENTRIES = 10_000
"""Most ``gaps`` or ``resumes`` entries."""


class InvalidManifestError(ValueError):
    """A manifest that cannot be read: the message says which field and what is wrong with it."""


def utc_now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds and a ``Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc_iso(text: object) -> dt.datetime | None:
    """An ISO 8601 time as written by :func:`utc_now_iso` (any zone accepted), ``None`` if unreadable.

    >>> parse_utc_iso("2026-11-28T12:00:00.000000Z").isoformat()
    '2026-11-28T12:00:00+00:00'
    """
    if not isinstance(text, str):
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Manifest:
    """State of one job, as written by the producer."""

    job_id: str
    source: str
    """The source with any credentials removed."""
    source_kind: str
    """``file``, ``images``, ``stream`` or ``webcam``."""
    clock: str
    """``stream``: timestamps are presentation times from the start; ``wallclock``: µs since the epoch."""
    source_fps: float | None
    sample_fps: float | None
    width: int
    height: int
    state: str = "running"
    started_at: str = field(default_factory=utc_now_iso)
    ended_at: str | None = None
    frames_published: int = 0
    frames_dropped: int = 0
    first_timestamp_us: int | None = None
    last_timestamp_us: int | None = None
    last_frame_index: int | None = None
    error: str | None = None
    gaps: tuple[dict[str, Any], ...] = ()
    """Live-source outages: ``{after_timestamp_us, resumed_timestamp_us, seconds, reason,
    reconnect_attempts}``; the first ones only (bounded), all counted in ``gaps_total``."""
    gaps_total: int = 0
    images_skipped: int = 0
    """Image-folder sources: files that could not be decoded (skipped with a warning)."""
    schema: str = SCHEMA_VERSION
    options: dict[str, Any] = field(default_factory=dict)
    heartbeat_at: str | None = None
    """When the producer last wrote the manifest (UTC, ISO 8601); ``None`` in manifests of older producers."""
    heartbeat_interval_s: float | None = None
    """How often the producer promised to write it while running."""
    frames_confirmed: int = 0
    """Frames ``0..frames_confirmed-1`` are all confirmed by Pub/Sub (the longest such run, at ``heartbeat_at``
    or at the end): where a resumed job continues."""
    confirmed_timestamp_us: int | None = None
    """``timestamp_us`` of frame ``frames_confirmed - 1`` (``None`` when no frame is confirmed)."""
    source_fingerprint: dict[str, Any] | None = None
    """Files and image folders: what identifies the source (size and a hash), checked by ``--resume``."""
    resumes: tuple[dict[str, Any], ...] = ()
    """One entry per ``--resume``: ``{at, from_frame_index, previous_state, previous_heartbeat_at}``."""
    chunks: tuple[dict[str, Any], ...] = ()
    """A job published in chunks (``--parallel``, a Cloud Run job): one entry per chunk, ``{chunk, first_position,
    first_frame_index, frames, state, confirmed, confirmed_timestamp_us, published, ...}``, where ``confirmed`` is
    the chunk's own run of confirmed frames (``producer.chunkprogress``). Empty for a sequential job."""

    def __post_init__(self) -> None:
        validate_job_id(self.job_id)
        if self.state not in STATES:
            raise InvalidManifestError(f"unknown manifest state {self.state!r}")

    @property
    def is_final(self) -> bool:
        """True once the producer has finished (complete, stopped or failed)."""
        return self.state in FINAL_STATES

    def finish(self, state: ManifestState, **changes: Any) -> Manifest:
        """A copy in a final ``state`` with ``ended_at`` (and ``heartbeat_at``) set and the given counters."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        now = utc_now_iso()
        return dataclasses.replace(self, state=state, ended_at=now, heartbeat_at=now, **changes)

    def beat(self, frames_confirmed: int, first_timestamp_us: int | None, confirmed_timestamp_us: int | None,
             at: str | None = None) -> Manifest:
        """The running manifest at a heartbeat: ``heartbeat_at`` and the confirmed progress.

        While running, ``frames_published``/``last_frame_index``/``last_timestamp_us`` say the same as
        ``frames_confirmed``/``confirmed_timestamp_us`` (a lower bound: later frames may be in flight).
        """
        return dataclasses.replace(
            self, heartbeat_at=at or utc_now_iso(), frames_confirmed=frames_confirmed,
            confirmed_timestamp_us=confirmed_timestamp_us, frames_published=frames_confirmed,
            first_timestamp_us=first_timestamp_us if frames_confirmed else None,
            last_timestamp_us=confirmed_timestamp_us,
            last_frame_index=frames_confirmed - 1 if frames_confirmed else None,
        )

    def heartbeat_age_s(self, now: dt.datetime) -> float | None:
        """Seconds from ``heartbeat_at`` to ``now`` (never negative); ``None`` without a readable heartbeat."""
        last = parse_utc_iso(self.heartbeat_at)
        return None if last is None else max((now - last).total_seconds(), 0.0)

    def stale_after_s(self, override: float | None = None) -> float | None:
        """After how many seconds without a heartbeat the producer counts as gone.

        ``override`` if given, else :data:`STALE_AFTER_HEARTBEATS` intervals but at least
        :data:`STALE_AFTER_MIN_S`; ``None`` for manifests without a heartbeat (older producers), which
        are never called stale.
        """
        interval = self.heartbeat_interval_s
        if not isinstance(interval, int | float) or isinstance(interval, bool) or not math.isfinite(interval):
            return None
        if override is not None:
            return override
        return max(STALE_AFTER_HEARTBEATS * interval, STALE_AFTER_MIN_S)

    def producer_silence_s(self, now: dt.datetime, stale_after_s: float | None = None) -> float | None:
        """Seconds without a heartbeat if the job is ``running`` and its producer is stale, else ``None``."""
        threshold, age = self.stale_after_s(stale_after_s), self.heartbeat_age_s(now)
        if self.state != "running" or threshold is None or age is None or age < threshold:
            return None
        return age

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["gaps"] = list(self.gaps)
        data["resumes"] = list(self.resumes)
        data["chunks"] = list(self.chunks)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """A manifest from decoded JSON; :class:`InvalidManifestError` naming the first field that is wrong.

        Fields this reader does not know are ignored (a newer producer may add some).
        """
        check_manifest_fields(data)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            kwargs = {k: v for k, v in data.items() if k in known}
            kwargs["gaps"] = tuple(kwargs.get("gaps", ()))
            kwargs["resumes"] = tuple(kwargs.get("resumes", ()))
            kwargs["chunks"] = tuple(kwargs.get("chunks", ()))
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidManifestError(f"invalid manifest: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest's bytes (UTF-8 JSON, at most :data:`MAX_MANIFEST_BYTES`); :class:`InvalidManifestError`."""
        if len(text) > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            data = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
        except UnicodeDecodeError:
            raise InvalidManifestError("manifest is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise InvalidManifestError(f"manifest is not JSON: {exc.msg} at line {exc.lineno} "
                                       f"column {exc.colno}") from None
        except RecursionError:
            raise InvalidManifestError("manifest is JSON nested too deeply to be one") from None
        if not isinstance(data, dict):
            raise InvalidManifestError("manifest is not a JSON object")
        return cls.from_dict(data)


# ---------------------------------------------------------------- what each field may hold


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _integer(low: int, high: int, nullable: bool = False) -> tuple[str, Callable[[Any], bool]]:
    return (f"an integer in {low}..{high}{' or null' if nullable else ''}",
            lambda v: (nullable and v is None) or _is_int(v, low, high))


def _number(low: float, high: float) -> tuple[str, Callable[[Any], bool]]:
    def ok(v: Any) -> bool:
        return v is None or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                             and low <= v <= high)
    return f"a number in {low}..{high} or null", ok


def _text(nullable: bool = False) -> tuple[str, Callable[[Any], bool]]:
    return f"a string{' or null' if nullable else ''}", lambda v: (nullable and v is None) or isinstance(v, str)


def _one_of(values: tuple[str, ...]) -> tuple[str, Callable[[Any], bool]]:
    return f"one of {', '.join(values)}", lambda v: isinstance(v, str) and v in values


def _entries() -> tuple[str, Callable[[Any], bool]]:
    return (f"a list of at most {MAX_ENTRIES} objects",
            lambda v: isinstance(v, list) and len(v) <= MAX_ENTRIES and all(isinstance(e, dict) for e in v))


MAX_TIMESTAMP_US = 10**TIMESTAMP_DIGITS - 1
_FIELD_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "job_id": _text(),
    "source": _text(),
    "source_kind": _text(),
    "clock": _one_of(CLOCKS),
    "source_fps": _number(0, MAX_FPS),
    "sample_fps": _number(0, MAX_FPS),
    "width": _integer(0, 65_535),
    "height": _integer(0, 65_535),
    "state": _one_of(STATES),
    "started_at": _text(),
    "ended_at": _text(nullable=True),
    "frames_published": _integer(0, MAX_FRAMES),
    "frames_dropped": _integer(0, MAX_COUNT),
    "first_timestamp_us": _integer(0, MAX_TIMESTAMP_US, nullable=True),
    "last_timestamp_us": _integer(0, MAX_TIMESTAMP_US, nullable=True),
    "last_frame_index": _integer(0, MAX_FRAMES - 1, nullable=True),
    "error": _text(nullable=True),
    "gaps": _entries(),
    "gaps_total": _integer(0, MAX_COUNT),
    "images_skipped": _integer(0, MAX_COUNT),
    "schema": _text(),
    "options": ("an object", lambda v: isinstance(v, dict)),
    "heartbeat_at": _text(nullable=True),
    "heartbeat_interval_s": _number(0.001, 86_400),
    "frames_confirmed": _integer(0, MAX_FRAMES),
    "confirmed_timestamp_us": _integer(0, MAX_TIMESTAMP_US, nullable=True),
    "source_fingerprint": ("an object or null", lambda v: v is None or isinstance(v, dict)),
    "resumes": _entries(),
    "chunks": _entries(),
}
REQUIRED_FIELDS = ("job_id", "source", "source_kind", "clock", "source_fps", "sample_fps", "width", "height")


def check_manifest_fields(data: dict[str, Any]) -> None:
    """:class:`InvalidManifestError` ``field 'x' must be ..., got ...`` for the first field that is wrong.

    >>> check_manifest_fields({"job_id": "demo", "frames_published": "12"})
    Traceback (most recent call last):
    ...
    framecontract.manifest.InvalidManifestError: field 'source' is missing
    """
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise InvalidManifestError(f"field {name!r} is missing")
    for name, (what, ok) in _FIELD_RULES.items():
        if name not in data:
            continue
        value = data[name]
        if not ok(value):
            raise InvalidManifestError(f"field {name!r} must be {what}, got {_show(value)}")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise InvalidManifestError(f"field {name!r} must be a string of at most {MAX_TEXT} characters, "
                                       f"got {_show(value)}")
    try:
        validate_job_id(data["job_id"])
    except InvalidJobIdError as exc:
        raise InvalidManifestError(f"field 'job_id': {exc}") from None
