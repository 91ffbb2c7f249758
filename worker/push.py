"""The push path: one Pub/Sub message in, one frame's results stored (idempotently).

Usage::

    handler = FrameHandler(PipelineRunner(pipeline), store, budget_s=30)
    outcome = handler.handle(parse_push_envelope(envelope))   # .status: processed | duplicate | error-recorded

Raises :class:`~worker.errors.BadRequestError` for a frame it cannot even identify and
:class:`~worker.errors.TransientError` for trouble that may pass; everything else is acknowledged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from framecontract import SCHEMA_VERSION
from framecontract.jobid import InvalidJobIdError, validate_job_id
from framecontract.layout import FrameObjects, frame_objects, parse_gs_uri
from framecontract.manifest import utc_now_iso
from framecontract.message import FrameAttributes, InvalidFrameAttributesError
from worker.envelope import PushMessage
from worker.errors import BadRequestError, PermanentFrameError
from worker.runner import PipelineRunner
from worker.storage import ResultStore


@dataclass(frozen=True)
class FrameIdentity:
    """Enough of a frame to name its objects."""

    job_id: str
    frame_index: int
    timestamp_us: int


def identify_frame(attributes: dict[str, str]) -> FrameIdentity:
    """Job, index and timestamp from the attributes; :class:`BadRequestError` if any is unusable."""
    missing = [k for k in ("job_id", "frame_index", "timestamp_us") if k not in attributes]
    if missing:
        raise BadRequestError(f"missing attribute(s): {', '.join(missing)}")
    try:
        job_id = validate_job_id(attributes["job_id"])
    except InvalidJobIdError as exc:
        raise BadRequestError(str(exc)) from None
    values = {}
    for key in ("frame_index", "timestamp_us"):
        try:
            values[key] = int(attributes[key], 10)
        except ValueError:
            raise BadRequestError(f"attribute {key}={attributes[key]!r} is not an integer") from None
        if values[key] < 0:
            raise BadRequestError(f"attribute {key}={values[key]} is below 0")
    return FrameIdentity(job_id, values["frame_index"], values["timestamp_us"])


@dataclass
class Outcome:
    """What happened to one message, for the response and the log line."""

    status: str
    identity: FrameIdentity
    latency_ms: dict[str, float]
    detections: int = 0
    reason: str | None = None


class FrameHandler:
    """Processes push messages with one pipeline, storing results create-only."""

    def __init__(self, runner: PipelineRunner, store: ResultStore, budget_s: float = 30.0) -> None:
        self.runner = runner
        self.store = store
        self.budget_s = budget_s

    def handle(self, message: PushMessage) -> Outcome:
        """Process one message; its whole work is bounded by ``budget_s`` (see :class:`PipelineRunner`).

        There is no existence check before the work: the create-only writes are the deduplication
        (a redelivery finds the objects there and is acknowledged as ``duplicate``). A check would
        cost two storage round trips on every frame to save inference on the rare redelivery.
        """
        received = time.perf_counter()
        try:
            attrs: FrameAttributes | None = FrameAttributes.from_pubsub(message.attributes)
            identity = FrameIdentity(attrs.job_id, attrs.frame_index, attrs.timestamp_us)
            invalid_reason = None
        except InvalidFrameAttributesError as exc:
            identity = identify_frame(message.attributes)  # raises BadRequestError if unidentifiable
            attrs, invalid_reason = None, str(exc)
        names = frame_objects(identity.job_id, identity.frame_index, identity.timestamp_us)
        latency: dict[str, float] = {}

        try:
            if attrs is None:
                raise PermanentFrameError(invalid_reason or "invalid attributes")
            data = self._frame_bytes(message, attrs)
            result = self.runner.process(data, budget_s=self.budget_s - (time.perf_counter() - received))
        except PermanentFrameError as exc:
            created = self._record_error(names, identity, message, exc.reason)
            return Outcome("error-recorded" if created else "duplicate", identity, latency, reason=exc.reason)
        latency.update(result.latency_ms)

        started = time.perf_counter()
        self.store.create(names.image, result.annotated_jpeg, "image/jpeg")
        record = {
            "schema": SCHEMA_VERSION,
            "job_id": identity.job_id,
            "frame_index": identity.frame_index,
            "timestamp_us": identity.timestamp_us,
            "width": result.width,
            "height": result.height,
            "image": names.image,
            "detections": result.detections,
            "model": self.runner.model_name,
            "message_id": message.message_id,
            "processed_at": utc_now_iso(),
            "latency_ms": result.latency_ms,
        }
        created = self.store.create_json(names.detections, record)  # last: its existence means "processed"
        latency["store"] = _ms(started)
        return Outcome("processed" if created else "duplicate", identity, latency, detections=len(result.detections))

    def _frame_bytes(self, message: PushMessage, attrs: FrameAttributes) -> bytes:
        if not attrs.payload_uri:
            if not message.data:
                raise PermanentFrameError("frame data is empty and there is no payload_uri")
            return message.data
        bucket_name, name = parse_gs_uri(attrs.payload_uri)
        try:
            return self.store.download(bucket_name, name)
        except FileNotFoundError:
            raise PermanentFrameError(f"claim-checked payload {attrs.payload_uri} does not exist") from None

    def _record_error(self, names: FrameObjects, identity: FrameIdentity, message: PushMessage, reason: str) -> bool:
        return self.store.create_json(
            names.error,
            {
                "schema": SCHEMA_VERSION,
                "job_id": identity.job_id,
                "frame_index": identity.frame_index,
                "timestamp_us": identity.timestamp_us,
                "error_class": "permanent",
                "reason": reason,
                "message_id": message.message_id,
                "recorded_at": utc_now_iso(),
            },
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
