"""The result records a worker writes next to each frame, and the collector reads back.

Usage::

    record = DetectionsRecord(job_id="demo", frame_index=7, timestamp_us=700_000, width=768, height=576,
                              image=names.image, detections=(Detection("person", 0.87, (1.0, 2.0, 30.0, 80.0)),),
                              model="model.nanodet", latency_ms={"model": 34.0})
    blob.upload_from_string(record.to_json(), content_type="application/json")
    same = DetectionsRecord.from_json(blob.download_as_bytes())    # InvalidRecordError with the reason
    ErrorRecord.from_json(data).reason

Writers produce every field; readers are strict about the fields they use and ignore fields they
do not know (a newer writer may add some). Both directions go through these types only: the worker,
the collector and the synthetic test data never build or read these records as bare dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from framecontract import SCHEMA_VERSION
from framecontract.jobid import InvalidJobIdError, validate_job_id
from framecontract.manifest import utc_now_iso

SUPPORTED_RECORD_SCHEMAS = frozenset({SCHEMA_VERSION})
MAX_RECORD_BYTES = 8 * 1024 * 1024
"""Largest record a reader accepts (a frame with thousands of boxes is well under 1 MB)."""


class InvalidRecordError(ValueError):
    """A record that cannot be read; the message names the record kind and what is wrong."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One box: ``label``, ``score`` in 0..1 (``None`` if the model gives none), ``box`` in frame pixels.

    >>> Detection("person", 0.9, (1.0, 2.0, 3.0, 4.0)).to_dict()
    {'label': 'person', 'score': 0.9, 'box': [1.0, 2.0, 3.0, 4.0]}
    """

    label: str
    score: float | None
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "box": list(self.box)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Detection:
        if not isinstance(data, Mapping):
            raise InvalidRecordError(f"{where} is not an object")
        label = data.get("label")
        if not isinstance(label, str):
            raise InvalidRecordError(f"{where}.label is not a string")
        score = data.get("score")
        if score is not None and not (_is_number(score) and 0.0 <= score <= 1.0):
            raise InvalidRecordError(f"{where}.score must be a number in 0..1 or null, got {_show(score)}")
        box = data.get("box")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise InvalidRecordError(f"{where}.box must be 4 numbers [x1, y1, x2, y2], got {_show(box)}")
        x1, y1, x2, y2 = (float(v) for v in box)
        if x1 > x2 or y1 > y2:
            raise InvalidRecordError(f"{where}.box {_show(box)} has x1 > x2 or y1 > y2")
        return cls(label, None if score is None else float(score), (x1, y1, x2, y2))


R = TypeVar("R", bound="_Record")


@dataclass(frozen=True)
class _Record:
    """Fields and (de)serialisation shared by both records: the frame they belong to."""

    kind: ClassVar[str] = "record"
    job_id: str
    frame_index: int
    timestamp_us: int

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        """Compact JSON, keys in the documented order."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def belongs_to(self, job_id: str, frame_index: int, timestamp_us: int) -> bool:
        """Whether the record is about this frame (a record under another frame's name is not trusted)."""
        return (self.job_id, self.frame_index, self.timestamp_us) == (job_id, frame_index, timestamp_us)

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[R], data: bytes | str) -> R:
        """Parse a record; :class:`InvalidRecordError` for anything that is not a valid one."""
        if len(data) > MAX_RECORD_BYTES:
            raise InvalidRecordError(f"{cls.kind} record is {len(data)} bytes; at most {MAX_RECORD_BYTES}")
        try:
            decoded = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
        except UnicodeDecodeError:
            raise InvalidRecordError(f"{cls.kind} record is not UTF-8 text") from None
        except json.JSONDecodeError as exc:
            raise InvalidRecordError(f"{cls.kind} record is not JSON: {exc.msg} at line {exc.lineno} "
                                     f"column {exc.colno}") from None
        except RecursionError:
            raise InvalidRecordError(f"{cls.kind} record is nested too deeply to be one") from None
        return cls.from_dict(decoded)


def _frame_fields(data: Any, kind: str) -> tuple[str, int, int]:
    """(job_id, frame_index, timestamp_us) of a decoded record, checking its schema first."""
    if not isinstance(data, Mapping):
        raise InvalidRecordError(f"{kind} record is not a JSON object")
    schema = data.get("schema")
    if schema not in SUPPORTED_RECORD_SCHEMAS:
        raise InvalidRecordError(
            f"{kind} record has schema {_show(schema)}; this reader understands {sorted(SUPPORTED_RECORD_SCHEMAS)}"
        )
    job_id = _string(data, "job_id", kind)
    try:
        validate_job_id(job_id)
    except InvalidJobIdError as exc:
        raise InvalidRecordError(f"{kind} record: {exc}") from None
    return job_id, _integer(data, "frame_index", kind), _integer(data, "timestamp_us", kind)


@dataclass(frozen=True)
class DetectionsRecord(_Record):
    """``jobs/<job>/detections/<shard>/<stem>.json``: what the pipeline found in one frame.

    Its existence is what makes a frame *processed* (docs/contract.md): it is written last.
    """

    kind: ClassVar[str] = "detections"
    width: int = 0
    height: int = 0
    image: str = ""
    """Object name of the annotated JPEG."""
    detections: tuple[Detection, ...] = ()
    model: str = ""
    """The pipeline's model node (``model.nanodet``, ``model.ssd_oid``, ...)."""
    processed_at: str = field(default_factory=utc_now_iso)
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    """Milliseconds per stage measured before this record was written: ``decode``, ``queue`` (waiting
    for the pipeline), one key per pipeline node type (``model``, ``draw``, ...), ``encode``,
    ``store_image`` (writing the annotated JPEG)."""
    message_id: str | None = None
    """The Pub/Sub message that carried the frame (``None`` when it came another way)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "job_id": self.job_id,
            "frame_index": self.frame_index,
            "timestamp_us": self.timestamp_us,
            "width": self.width,
            "height": self.height,
            "image": self.image,
            "detections": [d.to_dict() for d in self.detections],
            "model": self.model,
            "message_id": self.message_id,
            "processed_at": self.processed_at,
            "latency_ms": dict(self.latency_ms),
        }

    @classmethod
    def from_dict(cls, data: Any) -> DetectionsRecord:
        job_id, frame_index, timestamp_us = _frame_fields(data, cls.kind)
        raw = data.get("detections")
        if not isinstance(raw, list):
            raise InvalidRecordError(f"detections record: field 'detections' must be a list, got {_show(raw)}")
        latency = data.get("latency_ms", {})
        if not (isinstance(latency, Mapping) and all(_is_number(v) for v in latency.values())):
            raise InvalidRecordError("detections record: field 'latency_ms' must map stage names to numbers")
        message_id = data.get("message_id")
        return cls(
            job_id=job_id,
            frame_index=frame_index,
            timestamp_us=timestamp_us,
            width=_integer(data, "width", cls.kind, minimum=1),
            height=_integer(data, "height", cls.kind, minimum=1),
            image=_string(data, "image", cls.kind),
            detections=tuple(Detection.from_dict(d, f"detections[{i}]") for i, d in enumerate(raw)),
            model=_string(data, "model", cls.kind),
            processed_at=_string(data, "processed_at", cls.kind),
            latency_ms={str(k): float(v) for k, v in latency.items()},
            message_id=message_id if isinstance(message_id, str) else None,
        )


@dataclass(frozen=True)
class ErrorRecord(_Record):
    """``jobs/<job>/errors/<shard>/<stem>.json``: a frame that can never succeed, and why."""

    kind: ClassVar[str] = "error"
    reason: str = ""
    error_class: str = "permanent"
    message_id: str | None = None
    recorded_at: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "job_id": self.job_id,
            "frame_index": self.frame_index,
            "timestamp_us": self.timestamp_us,
            "error_class": self.error_class,
            "reason": self.reason,
            "message_id": self.message_id,
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ErrorRecord:
        job_id, frame_index, timestamp_us = _frame_fields(data, cls.kind)
        message_id = data.get("message_id")
        return cls(
            job_id=job_id,
            frame_index=frame_index,
            timestamp_us=timestamp_us,
            reason=_string(data, "reason", cls.kind),
            error_class=_string(data, "error_class", cls.kind),
            message_id=message_id if isinstance(message_id, str) else None,
            recorded_at=_string(data, "recorded_at", cls.kind),
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(data: Mapping[str, Any], key: str, kind: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        what = "is missing" if key not in data else f"must be a string, got {_show(value)}"
        raise InvalidRecordError(f"{kind} record: field {key!r} {what}")
    return value


def _integer(data: Mapping[str, Any], key: str, kind: str, minimum: int = 0) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        what = "is missing" if key not in data else f"must be an integer >= {minimum}, got {_show(value)}"
        raise InvalidRecordError(f"{kind} record: field {key!r} {what}")
    return value
