"""The job manifest, ``jobs/<job>/manifest.json``: what the producer published.

Usage::

    m = Manifest(job_id="demo", source="vtest.avi", source_kind="file", clock="stream",
                 source_fps=10.0, sample_fps=None, width=768, height=576)
    blob.upload_from_string(m.to_json(), content_type="application/json")
    m = m.finish(state="complete", frames_published=795, first_timestamp_us=0, last_timestamp_us=79_400_000)
    Manifest.from_json(blob.download_as_bytes())
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from framecontract import SCHEMA_VERSION
from framecontract.jobid import validate_job_id

ManifestState = Literal["running", "complete", "stopped", "failed"]
STATES: tuple[str, ...] = ("running", "complete", "stopped", "failed")
FINAL_STATES = frozenset({"complete", "stopped", "failed"})
Clock = Literal["stream", "wallclock"]


class InvalidManifestError(ValueError):
    """A manifest that cannot be parsed."""


def utc_now_iso() -> str:
    """The current UTC time, ISO 8601 with microseconds and a ``Z``."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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

    def __post_init__(self) -> None:
        validate_job_id(self.job_id)
        if self.state not in STATES:
            raise InvalidManifestError(f"unknown manifest state {self.state!r}")

    @property
    def is_final(self) -> bool:
        """True once the producer has finished (complete, stopped or failed)."""
        return self.state in FINAL_STATES

    def finish(self, state: ManifestState, **changes: Any) -> Manifest:
        """A copy in a final ``state`` with ``ended_at`` set and the given counters."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        return dataclasses.replace(self, state=state, ended_at=utc_now_iso(), **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["gaps"] = list(self.gaps)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            kwargs = {k: v for k, v in data.items() if k in known}
            kwargs["gaps"] = tuple(kwargs.get("gaps", ()))
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
