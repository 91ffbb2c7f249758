"""Parse Pub/Sub push envelopes (the wrapped JSON format).

Usage::

    message = parse_push_body(request.get_data())      # InboundMessage, or BadRequestError with the reason
    message.data, message.attributes, message.message_id

Production and the emulator differ in spelling (``messageId`` / ``message_id``,
``publishTime`` / ``publish_time``); both are accepted. Production adds a top-level
``deliveryAttempt`` when a dead-letter policy is set; the emulator does not.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from worker.errors import BadRequestError
from worker.handler import InboundMessage


def parse_json_body(body: bytes, what: str) -> Any:
    """Decode a JSON request body; :class:`BadRequestError` for anything else (deep nesting included)."""
    if not body:
        raise BadRequestError(f"request body is empty; expected {what}")
    try:
        return json.loads(body.decode("utf-8"))  # JSON on the wire is UTF-8 (RFC 8259), never guessed
    except UnicodeDecodeError:
        raise BadRequestError(f"request body is not UTF-8 JSON; expected {what}") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not JSON ({exc.msg} at byte {exc.pos}); expected {what}") from None
    except RecursionError:
        raise BadRequestError(f"request body is JSON nested too deeply; expected {what}") from None


def parse_push_body(body: bytes) -> InboundMessage:
    """The message of a push request's body (wrapped JSON envelope); :class:`BadRequestError` with a reason."""
    return parse_push_envelope(parse_json_body(body, "a Pub/Sub push envelope"))


def parse_push_envelope(envelope: Any) -> InboundMessage:
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
    return InboundMessage(
        message_id=message_id,
        data=data,
        attributes=dict(attributes),
        publish_time=message.get("publishTime", message.get("publish_time")),
        subscription=envelope.get("subscription") if isinstance(envelope.get("subscription"), str) else None,
        delivery_attempt=attempt if isinstance(attempt, int) else None,
    )
