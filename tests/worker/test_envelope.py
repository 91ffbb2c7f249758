import base64

import pytest

from worker.envelope import parse_push_envelope
from worker.errors import BadRequestError
from worker.push import identify_frame


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
    ("attributes", "reason"),
    [
        ({}, "missing attribute(s): job_id, frame_index, timestamp_us"),
        ({"job_id": "a", "frame_index": "1"}, "missing attribute(s): timestamp_us"),
        ({"job_id": "A", "frame_index": "1", "timestamp_us": "0"},
         "invalid job id 'A': upper-case letters are not allowed"),
        ({"job_id": "a", "frame_index": "x", "timestamp_us": "0"}, "attribute frame_index='x' is not an integer"),
        ({"job_id": "a", "frame_index": "1", "timestamp_us": "-5"}, "attribute timestamp_us=-5 is below 0"),
    ],
)
def test_unidentifiable_frames_are_bad_requests(attributes: dict, reason: str) -> None:
    with pytest.raises(BadRequestError) as err:
        identify_frame(attributes)
    assert err.value.reason == reason


def test_identify_frame() -> None:
    ident = identify_frame({"job_id": "a", "frame_index": "3", "timestamp_us": "300"})
    assert (ident.job_id, ident.frame_index, ident.timestamp_us) == ("a", 3, 300)
