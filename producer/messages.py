"""The Pub/Sub message of one frame: JPEG inline, or a claim check for a large JPEG (pure).

Usage::

    message = frame_message("demo", 7, 700_000, jpeg, bucket="frames")
    if message.payload_name:                 # too large for a message: store it first
        upload(message.payload_name, jpeg.data)
    publisher.publish(message.data, message.attributes)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from framecontract.layout import gs_uri, result_name
from framecontract.message import MAX_INLINE_PAYLOAD_BYTES, FrameAttributes
from producer.encode import EncodedFrame


@dataclass(frozen=True, slots=True)
class FrameMessage:
    """What to publish for one frame, and the object to write first when claim-checked."""

    data: bytes
    attributes: dict[str, str]
    payload_name: str | None = None
    """Object name (in the job's bucket) that must hold the JPEG before publishing; ``None`` if inline."""


def frame_message(
    job_id: str,
    frame_index: int,
    timestamp_us: int,
    jpeg: EncodedFrame,
    bucket: str,
    inline_limit_bytes: int = MAX_INLINE_PAYLOAD_BYTES,
) -> FrameMessage:
    """Build the message for a frame; JPEGs over ``inline_limit_bytes`` go through the claim check."""
    attributes = FrameAttributes(job_id, frame_index, timestamp_us, jpeg.width, jpeg.height)
    if len(jpeg.data) <= inline_limit_bytes:
        return FrameMessage(jpeg.data, attributes.to_pubsub())
    payload_name = result_name("payloads", job_id, frame_index, timestamp_us)
    claim_check = dataclasses.replace(attributes, payload_uri=gs_uri(bucket, payload_name))
    return FrameMessage(b"", claim_check.to_pubsub(), payload_name)
