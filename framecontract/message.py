"""Frame messages: the Pub/Sub attributes every frame carries, and the one parser for them.

Usage::

    attrs = FrameAttributes(job_id="demo", frame_index=0, timestamp_us=0, width=768, height=576)
    publisher.publish(topic, jpeg_bytes, **attrs.to_pubsub())

    parsed = parse_frame_attributes(message.attributes, bucket="frames")
    parsed.identity      # FrameIdentity, or None: the frame cannot even be named
    parsed.attributes    # FrameAttributes, or None: named, but something is wrong (parsed.problem says what)

The message ``data`` is the JPEG itself, unless the frame is too large for a message: then
``data`` is empty and ``payload_uri`` names the job's own payload object for that frame
(``gs://<bucket>/jobs/<job>/payloads/<shard>/<stem>.jpg``, the claim check).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from framecontract import SCHEMA_VERSION
from framecontract.jobid import InvalidJobIdError, validate_job_id
from framecontract.layout import (
    FRAME_INDEX_DIGITS,
    TIMESTAMP_DIGITS,
    FrameObjects,
    frame_objects,
    gs_uri,
    parse_gs_uri,
)

JPEG = "image/jpeg"

MAX_MESSAGE_BYTES = 10_000_000
"""Pub/Sub's limit for one message (data + attributes) and for one publish request."""

MAX_INLINE_PAYLOAD_BYTES = 7_000_000
"""Largest frame sent inline: a push request base64-encodes data (+33 %), which must stay
under the 10 MB limit together with the envelope, so larger frames go through the claim check."""

MAX_SIDE = 65_535
"""Largest width or height a JPEG can declare."""

IDENTITY_ATTRIBUTES = ("job_id", "frame_index", "timestamp_us")
REQUIRED_ATTRIBUTES = (*IDENTITY_ATTRIBUTES, "width", "height", "content_type", "schema")
SUPPORTED_SCHEMAS = frozenset({SCHEMA_VERSION})

_CANONICAL_INTEGER = re.compile(r"0|[1-9][0-9]*")


class InvalidFrameAttributesError(ValueError):
    """Frame attributes that are missing, malformed, or of an unknown schema."""


@dataclass(frozen=True, slots=True)
class FrameIdentity:
    """What names a frame's objects: (job, index, timestamp)."""

    job_id: str
    frame_index: int
    timestamp_us: int

    @property
    def objects(self) -> FrameObjects:
        """The frame's object names (:func:`framecontract.layout.frame_objects`)."""
        return frame_objects(self.job_id, self.frame_index, self.timestamp_us)


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

    @property
    def identity(self) -> FrameIdentity:
        return FrameIdentity(self.job_id, self.frame_index, self.timestamp_us)

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
    def from_pubsub(cls, attributes: Mapping[str, str] | None, bucket: str | None = None) -> FrameAttributes:
        """Parse and validate message attributes; raise :class:`InvalidFrameAttributesError` with the reason.

        Extra attributes (for example those Pub/Sub adds on dead-letter forwarding) are ignored.
        """
        parsed = parse_frame_attributes(attributes, bucket)
        if parsed.attributes is None:
            raise InvalidFrameAttributesError(parsed.problem or "invalid attributes")
        return parsed.attributes


@dataclass(frozen=True, slots=True)
class ParsedAttributes:
    """What :func:`parse_frame_attributes` made of a message's attributes.

    - ``attributes`` set: a valid frame message.
    - only ``identity`` set: the frame can be named (its error record can be written) but ``problem``
      says why it can never be processed.
    - neither: the message cannot even be named; ``problem`` says why.
    """

    identity: FrameIdentity | None
    attributes: FrameAttributes | None
    problem: str | None


def parse_frame_attributes(attributes: Mapping[str, str] | None, bucket: str | None = None) -> ParsedAttributes:
    """The one parser of frame attributes, used by every consumer (push, pull, collector).

    With ``bucket``, a ``payload_uri`` must name exactly this frame's payload object in that bucket;
    without, it must at least be this frame's payload name in some valid bucket.

    >>> parse_frame_attributes({"job_id": "demo", "frame_index": "1_000", "timestamp_us": "0"}).problem
    "attribute frame_index='1_000' is not a canonical decimal integer"
    """
    if not isinstance(attributes, Mapping):
        return ParsedAttributes(None, None, "message has no attributes")
    try:
        identity = _parse_identity(attributes)
    except InvalidFrameAttributesError as exc:
        return ParsedAttributes(None, None, str(exc))
    try:
        return ParsedAttributes(identity, _parse_rest(attributes, identity, bucket), None)
    except InvalidFrameAttributesError as exc:
        return ParsedAttributes(identity, None, str(exc))


def _parse_identity(attributes: Mapping[str, str]) -> FrameIdentity:
    missing = [k for k in IDENTITY_ATTRIBUTES if k not in attributes]
    if missing:
        raise InvalidFrameAttributesError(f"missing attribute(s): {', '.join(missing)}")
    try:
        job_id = validate_job_id(str(attributes["job_id"]))
    except InvalidJobIdError as exc:
        raise InvalidFrameAttributesError(str(exc)) from None
    frame_index = _parse_int(attributes, "frame_index", 0, FRAME_INDEX_DIGITS)
    timestamp_us = _parse_int(attributes, "timestamp_us", 0, TIMESTAMP_DIGITS)
    return FrameIdentity(job_id, frame_index, timestamp_us)


def _parse_rest(attributes: Mapping[str, str], identity: FrameIdentity, bucket: str | None) -> FrameAttributes:
    missing = [k for k in REQUIRED_ATTRIBUTES if k not in attributes]
    if missing:
        raise InvalidFrameAttributesError(f"missing attribute(s): {', '.join(missing)}")
    schema = str(attributes["schema"])
    if schema not in SUPPORTED_SCHEMAS:
        raise InvalidFrameAttributesError(
            f"unknown schema {_short(schema)}; this worker understands {sorted(SUPPORTED_SCHEMAS)}"
        )
    width = _parse_int(attributes, "width", 1, len(str(MAX_SIDE)), maximum=MAX_SIDE)
    height = _parse_int(attributes, "height", 1, len(str(MAX_SIDE)), maximum=MAX_SIDE)
    content_type = str(attributes["content_type"])
    if content_type != JPEG:
        raise InvalidFrameAttributesError(f"content_type {_short(content_type)} is not supported; expected {JPEG!r}")
    payload_uri = attributes.get("payload_uri") or None
    if payload_uri is not None:
        _check_payload_uri(str(payload_uri), identity, bucket)
    return FrameAttributes(identity.job_id, identity.frame_index, identity.timestamp_us, width, height,
                           content_type, schema, payload_uri)


def _check_payload_uri(uri: str, identity: FrameIdentity, bucket: str | None) -> None:
    expected_name = identity.objects.payload
    try:
        uri_bucket, name = parse_gs_uri(uri)
    except ValueError:
        raise InvalidFrameAttributesError(f"payload_uri {_short(uri, 300)} is not a gs:// object URI") from None
    expected = gs_uri(bucket or uri_bucket, expected_name)
    if uri != expected:
        raise InvalidFrameAttributesError(
            f"payload_uri {_short(uri, 300)} is not this frame's payload; expected {expected}"
        )


def _parse_int(attributes: Mapping[str, str], key: str, minimum: int, digits: int, maximum: int | None = None) -> int:
    """A canonical ASCII decimal (no sign, spaces, ``_`` or leading zeros) of at most ``digits`` digits."""
    raw = str(attributes[key])
    if raw.startswith("-") and _CANONICAL_INTEGER.fullmatch(raw[1:]) and len(raw) <= digits + 1:
        raise InvalidFrameAttributesError(f"attribute {key}={raw} is below {minimum}")
    if not _CANONICAL_INTEGER.fullmatch(raw):
        raise InvalidFrameAttributesError(f"attribute {key}={_short(raw)} is not a canonical decimal integer")
    if len(raw) > digits:
        raise InvalidFrameAttributesError(f"attribute {key} has {len(raw)} digits; at most {digits}")
    value = int(raw)
    if value < minimum:
        raise InvalidFrameAttributesError(f"attribute {key}={value} is below {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidFrameAttributesError(f"attribute {key}={value} is above {maximum}")
    return value


def _short(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"
