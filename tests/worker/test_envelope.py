import base64
import json

import pytest

from worker.envelope import parse_push_body, parse_push_envelope
from worker.errors import BadRequestError
from worker.handler import InboundMessage


def envelope(**message) -> dict:
    base = {"data": base64.b64encode(b"jpeg").decode(), "attributes": {"job_id": "a"}, "messageId": "1"}
    return {"message": base | message, "subscription": "projects/p/subscriptions/s"}


def test_production_spelling() -> None:
    msg = parse_push_envelope(envelope(publishTime="2026-11-28T00:00:00Z") | {"deliveryAttempt": 3})
    assert (msg.message_id, msg.data, msg.attributes) == ("1", b"jpeg", {"job_id": "a"})
    assert msg.publish_time == "2026-11-28T00:00:00Z" and msg.delivery_attempt == 3
    assert msg.subscription == "projects/p/subscriptions/s"


def test_emulator_spelling() -> None:
    env = envelope()
    env["message"].pop("messageId")
    env["message"] |= {"message_id": "2", "publish_time": "t"}
    msg = parse_push_envelope(env)
    assert (msg.message_id, msg.publish_time, msg.delivery_attempt) == ("2", "t", None)


def test_claim_checked_message_has_empty_data() -> None:
    env = envelope()
    env["message"].pop("data")
    assert parse_push_envelope(env).data == b""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "request body is not JSON; expected a Pub/Sub push envelope"),
        ([1, 2], "push envelope is not a JSON object"),
        ({"msg": {}}, "push envelope has no 'message' object"),
        ({"message": "x"}, "push envelope has no 'message' object"),
        ({"message": {"data": ""}}, "message has no messageId"),
        (envelope(data="!!not base64!!"), "message.data is not valid base64"),
        (envelope(data=12), "message.data is not a base64 string"),
        (envelope(attributes={"a": 1}), "message.attributes is not a map of strings"),
        (envelope(attributes=["a"]), "message.attributes is not a map of strings"),
    ],
)
def test_malformed_envelopes_are_400_with_a_reason(body, reason: str) -> None:
    with pytest.raises(BadRequestError) as err:
        parse_push_envelope(body)
    assert err.value.reason == reason and err.value.status == 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "request body is empty; expected a Pub/Sub push envelope"),
        (b"{", "request body is not JSON (Expecting property name enclosed in double quotes at byte 1); "
               "expected a Pub/Sub push envelope"),
        (b'{"message": "\xff"}', "request body is not UTF-8 JSON; expected a Pub/Sub push envelope"),
        (b"[" * 100_000 + b"]" * 100_000, "request body is JSON nested too deeply; expected a Pub/Sub push envelope"),
        (b"null", "request body is not JSON; expected a Pub/Sub push envelope"),
    ],
)
def test_push_bodies_that_are_not_json_envelopes_are_400_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError) as err:
        parse_push_body(body)
    assert err.value.reason == reason


def test_a_push_body_parses_to_the_inbound_message() -> None:
    message = parse_push_body(json.dumps(envelope()).encode())
    assert isinstance(message, InboundMessage)
    assert (message.message_id, message.data, message.attributes) == ("1", b"jpeg", {"job_id": "a"})
