"""Frame messages: the Pub/Sub attributes every frame carries.

Usage::

    attrs = FrameAttributes(job_id="demo", frame_index=0, timestamp_us=0, width=768, height=576)
    publisher.publish(topic, jpeg_bytes, **attrs.to_pubsub())
    same = FrameAttributes.from_pubsub(message.attributes)

The message ``data`` is the JPEG itself, unless the frame is too large for a message: then
``data`` is empty and ``payload_uri`` names a ``gs://`` object holding the JPEG (claim check).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from framecontract import SCHEMA_VERSION
from framecontract.jobid import InvalidJobIdError, validate_job_id

JPEG = "image/jpeg"

MAX_MESSAGE_BYTES = 10_000_000
"""Pub/Sub's limit for one message (data + attributes) and for one publish request."""

MAX_INLINE_PAYLOAD_BYTES = 7_000_000
"""Largest frame sent inline: a push request base64-encodes data (+33 %), which must stay
under the 10 MB limit together with the envelope, so larger frames go through the claim check."""

REQUIRED_ATTRIBUTES = ("job_id", "frame_index", "timestamp_us", "width", "height", "content_type", "schema")
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION})


class InvalidFrameAttributesError(ValueError):
    """Frame attributes that are missing, malformed, or of an unknown schema."""


@dataclass(frozen=True, slots=True)
class FrameAttributes:
    """The attributes of one frame message, typed."""

    job_id: str
    frame_index: int
    timestamp_us: int
    width: int
    height: int
    content_type: str = JPEG
    schema: str = SCHEMA_VERSION
    payload_uri: str | None = None

    def to_pubsub(self) -> dict[str, str]:
        """The attributes as Pub/Sub wants them: a flat ``str -> str`` mapping."""
        attrs = {
            "job_id": self.job_id,
            "frame_index": str(self.frame_index),
            "timestamp_us": str(self.timestamp_us),
            "width": str(self.width),
            "height": str(self.height),
            "content_type": self.content_type,
            "schema": self.schema,
        }
        if self.payload_uri:
            attrs["payload_uri"] = self.payload_uri
        return attrs

    @classmethod
    def from_pubsub(cls, attributes: Mapping[str, str] | None) -> FrameAttributes:
        """Parse and validate message attributes; raise :class:`InvalidFrameAttributesError`.

        Extra attributes (for example those Pub/Sub adds on dead-letter forwarding) are ignored.
        """
        if not isinstance(attributes, Mapping):
            raise InvalidFrameAttributesError("message has no attributes")
        missing = [k for k in REQUIRED_ATTRIBUTES if k not in attributes]
        if missing:
            raise InvalidFrameAttributesError(f"missing attribute(s): {', '.join(missing)}")
        schema = str(attributes["schema"])
        if schema not in SUPPORTED_SCHEMAS:
            raise InvalidFrameAttributesError(
                f"unknown schema {schema!r}; this worker understands {sorted(SUPPORTED_SCHEMAS)}"
            )
        try:
            job_id = validate_job_id(str(attributes["job_id"]))
        except InvalidJobIdError as exc:
            raise InvalidFrameAttributesError(str(exc)) from None
        frame_index = _parse_int(attributes, "frame_index", minimum=0)
        timestamp_us = _parse_int(attributes, "timestamp_us", minimum=0)
        width = _parse_int(attributes, "width", minimum=1)
        height = _parse_int(attributes, "height", minimum=1)
        content_type = str(attributes["content_type"])
        if content_type != JPEG:
            raise InvalidFrameAttributesError(f"content_type {content_type!r} is not supported; expected {JPEG!r}")
        payload_uri = attributes.get("payload_uri") or None
        if payload_uri is not None and not str(payload_uri).startswith("gs://"):
            raise InvalidFrameAttributesError(f"payload_uri {payload_uri!r} is not a gs:// URI")
        return cls(job_id, frame_index, timestamp_us, width, height, content_type, schema, payload_uri)


def _parse_int(attributes: Mapping[str, str], key: str, minimum: int) -> int:
    raw = attributes[key]
    try:
        value = int(str(raw), 10)
    except ValueError:
        raise InvalidFrameAttributesError(f"attribute {key}={raw!r} is not an integer") from None
    if value < minimum:
        raise InvalidFrameAttributesError(f"attribute {key}={value} is below {minimum}")
    return value
