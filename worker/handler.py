"""The frame handler: one frame message in, that frame's results stored once. Push and pull share it.

Usage::

    handler = FrameHandler(PipelineRunner(pipeline), store, bucket="frames", budget_s=30)
    outcome = handler.handle(message)     # .status: processed | duplicate | error-recorded

    work = handler.prepare(message)       # the pull loop splits it: inference here ...
    outcome = handler.finish(work)        # ... and the storage writes here, overlapping the next frame

Raises :class:`~worker.errors.BadRequestError` for a message that cannot even name its frame (push
answers 400, pull nacks; both end in the dead-letter topic) and :class:`~worker.errors.TransientError`
for trouble that may pass (503/429, nack). Everything else is settled: processed, a duplicate of a
frame already stored, or a permanent problem written down as the frame's error record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from framecontract.layout import FrameObjects
from framecontract.message import FrameAttributes, FrameIdentity, parse_frame_attributes
from framecontract.records import DetectionsRecord, ErrorRecord
from worker.errors import BadRequestError, PermanentFrameError
from worker.frames import ImageLimits, ProcessedFrame
from worker.runner import PipelineRunner
from worker.storage import ResultStore

OutcomeStatus = Literal["processed", "duplicate", "error-recorded"]


@dataclass(frozen=True)
class InboundMessage:
    """One frame message as it arrived, by push (the envelope) or by pull (the client's message)."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: str | None = None
    subscription: str | None = None
    delivery_attempt: int | None = None


@dataclass
class Outcome:
    """What happened to one message, for the response, the ack and the log line."""

    status: OutcomeStatus
    identity: FrameIdentity
    latency_ms: dict[str, float]
    detections: int = 0
    reason: str | None = None

    def log_fields(self, message_id: str) -> dict[str, object]:
        """The fields of the one JSON log line per frame (the same for push and pull)."""
        return {
            "job_id": self.identity.job_id, "frame_index": self.identity.frame_index,
            "timestamp_us": self.identity.timestamp_us, "outcome": self.status, "detections": self.detections,
            "reason": self.reason, "latency_ms": self.latency_ms, "message_id": message_id,
        }


@dataclass
class PreparedFrame:
    """A frame after inference, before its results are stored (or its error record, if ``problem``)."""

    message: InboundMessage
    identity: FrameIdentity
    frame: ProcessedFrame | None = None
    problem: str | None = None


class FrameHandler:
    """Processes frame messages with one pipeline, storing results create-only."""

    def __init__(
        self,
        runner: PipelineRunner,
        store: ResultStore,
        bucket: str,
        budget_s: float = 30.0,
        limits: ImageLimits | None = None,
    ) -> None:
        self.runner = runner
        self.store = store
        self.bucket = bucket
        self.budget_s = budget_s
        self.limits = limits or ImageLimits.for_push()

    def handle(self, message: InboundMessage, received: float | None = None) -> Outcome:
        """:meth:`prepare` then :meth:`finish`; the whole work is bounded by ``budget_s`` from ``received``.

        There is no existence check before the work: the create-only writes are the deduplication
        (a redelivery finds the objects there and is settled as ``duplicate``). A check would cost
        a storage round trip on every frame to save inference on the rare redelivery.
        """
        return self.finish(self.prepare(message, received))

    def prepare(self, message: InboundMessage, received: float | None = None) -> PreparedFrame:
        """Parse the attributes, fetch the frame and run the pipeline; no result is written yet."""
        received = time.perf_counter() if received is None else received
        parsed = parse_frame_attributes(message.attributes, self.bucket)
        if parsed.identity is None:
            raise BadRequestError(parsed.problem or "frame cannot be identified")
        if parsed.attributes is None:
            return PreparedFrame(message, parsed.identity, problem=parsed.problem)
        try:
            data = self._frame_bytes(message, parsed.attributes)
            remaining = self.budget_s - (time.perf_counter() - received)
            frame = self.runner.process(data, remaining, self.limits,
                                        (parsed.attributes.width, parsed.attributes.height))
        except PermanentFrameError as exc:
            return PreparedFrame(message, parsed.identity, problem=exc.reason)
        return PreparedFrame(message, parsed.identity, frame=frame)

    def finish(self, work: PreparedFrame) -> Outcome:
        """Write the frame's results (annotated JPEG, then the detections record), or its error record."""
        names = work.identity.objects
        if work.frame is None:
            created = self._record_error(names, work.identity, work.message, work.problem or "invalid frame")
            return Outcome("error-recorded" if created else "duplicate", work.identity, {}, reason=work.problem)
        frame, latency = work.frame, dict(work.frame.latency_ms)
        started = time.perf_counter()
        self.store.create(names.image, frame.annotated_jpeg, "image/jpeg")
        latency["store_image"] = _ms(started)
        record = DetectionsRecord(
            job_id=work.identity.job_id,
            frame_index=work.identity.frame_index,
            timestamp_us=work.identity.timestamp_us,
            width=frame.width,
            height=frame.height,
            image=names.image,
            detections=frame.detections,
            model=self.runner.model_name,
            latency_ms=latency,
            message_id=work.message.message_id,
        )
        created = self.store.create_record(names.detections, record)  # last: its existence means "processed"
        latency["store"] = _ms(started)
        status: OutcomeStatus = "processed" if created else "duplicate"
        return Outcome(status, work.identity, latency, detections=len(frame.detections))

    def _frame_bytes(self, message: InboundMessage, attrs: FrameAttributes) -> bytes:
        if not attrs.payload_uri:
            if not message.data:
                raise PermanentFrameError("frame data is empty and there is no payload_uri")
            return message.data
        try:  # the parser checked the URI names this frame's own payload object in our bucket
            return self.store.download_payload(attrs.identity.objects.payload)
        except FileNotFoundError:
            raise PermanentFrameError(f"claim-checked payload {attrs.payload_uri} does not exist") from None

    def _record_error(self, names: FrameObjects, identity: FrameIdentity, message: InboundMessage,
                      reason: str) -> bool:
        record = ErrorRecord(job_id=identity.job_id, frame_index=identity.frame_index,
                             timestamp_us=identity.timestamp_us, reason=reason, message_id=message.message_id)
        return self.store.create_record(names.error, record)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
