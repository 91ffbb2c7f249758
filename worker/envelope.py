"""Parse Pub/Sub push envelopes (the wrapped JSON format).

Usage::

    message = parse_push_envelope(request.get_json(silent=True))
    message.data, message.attributes, message.message_id

Production and the emulator differ in spelling (``messageId`` / ``message_id``,
``publishTime`` / ``publish_time``); both are accepted. Production adds a top-level
``deliveryAttempt`` when a dead-letter policy is set; the emulator does not.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from worker.errors import BadRequestError


@dataclass(frozen=True)
class PushMessage:
    """One message taken out of a push envelope."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    publish_time: str | None = None
    subscription: str | None = None
    delivery_attempt: int | None = None


def parse_push_envelope(envelope: Any) -> PushMessage:
    """Validate a decoded JSON push envelope; raise :class:`BadRequestError` with a reason."""
    if envelope is None:
        raise BadRequestError("request body is not JSON; expected a Pub/Sub push envelope")
    if not isinstance(envelope, dict):
        raise BadRequestError("push envelope is not a JSON object")
    message = envelope.get("message")
    if not isinstance(message, dict):
        raise BadRequestError("push envelope has no 'message' object")
    message_id = message.get("messageId", message.get("message_id"))
    if not isinstance(message_id, str) or not message_id:
        raise BadRequestError("message has no messageId")
    raw = message.get("data", "")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise BadRequestError("message.data is not a base64 string")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("message.data is not valid base64") from None
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise BadRequestError("message.attributes is not a map of strings")
    attempt = envelope.get("deliveryAttempt")
    return PushMessage(
        message_id=message_id,
        data=data,
        attributes=dict(attributes),
        publish_time=message.get("publishTime", message.get("publish_time")),
        subscription=envelope.get("subscription") if isinstance(envelope.get("subscription"), str) else None,
        delivery_attempt=attempt if isinstance(attempt, int) else None,
    )
