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
from dataclasses import dataclass, field
from typing import Any, Literal

from framecontract import SCHEMA_VERSION
from framecontract.jobid import validate_job_id

ManifestState = Literal["running", "complete", "stopped", "failed"]
STATES: tuple[str, ...] = ("running", "complete", "stopped", "failed")
FINAL_STATES = frozenset({"complete", "stopped", "failed"})
Clock = Literal["stream", "wallclock"]

DEFAULT_HEARTBEAT_INTERVAL_S = 5.0
"""How often a running producer rewrites its manifest (``--heartbeat``)."""
STALE_AFTER_HEARTBEATS = 3
"""A producer silent for this many heartbeat intervals is stale ..."""
STALE_AFTER_MIN_S = 30.0
"""... and for at least this long: a storage hiccup or clocks a few seconds apart do not make it stale."""


class InvalidManifestError(ValueError):
    """A manifest that cannot be parsed."""


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
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            kwargs = {k: v for k, v in data.items() if k in known}
            kwargs["gaps"] = tuple(kwargs.get("gaps", ()))
            kwargs["resumes"] = tuple(kwargs.get("resumes", ()))
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidManifestError(f"invalid manifest: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidManifestError(f"manifest is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidManifestError("manifest is not a JSON object")
        return cls.from_dict(data)
