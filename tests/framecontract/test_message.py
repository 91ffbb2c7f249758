import pytest

from framecontract import SCHEMA_VERSION
from framecontract.layout import frame_objects
from framecontract.message import (
    FrameAttributes,
    FrameIdentity,
    InvalidFrameAttributesError,
    parse_frame_attributes,
)

PAYLOAD_NAME = frame_objects("demo", 7, 700_000).payload

GOOD = {
    "job_id": "demo",
    "frame_index": "7",
    "timestamp_us": "700000",
    "width": "768",
    "height": "576",
    "content_type": "image/jpeg",
    "schema": SCHEMA_VERSION,
}


def test_round_trip_through_pubsub_attributes() -> None:
    attrs = FrameAttributes("demo", 7, 700_000, 768, 576)
    wire = attrs.to_pubsub()
    assert wire == GOOD
    assert all(isinstance(v, str) for v in wire.values())
    assert FrameAttributes.from_pubsub(wire) == attrs


def test_payload_uri_round_trips_and_extra_attributes_are_ignored() -> None:
    attrs = FrameAttributes("demo", 7, 700_000, 3, 4, payload_uri=f"gs://frames/{PAYLOAD_NAME}")
    wire = attrs.to_pubsub() | {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    assert FrameAttributes.from_pubsub(wire) == attrs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_id": None}, "missing attribute(s): job_id"),
        ({"frame_index": None, "width": None}, "missing attribute(s): frame_index"),
        ({"width": None, "height": None}, "missing attribute(s): width, height"),
        ({"schema": "9"}, "unknown schema '9'; this worker understands ['1']"),
        ({"job_id": "../x"},
         "invalid job id '../x': it contains './'; only lowercase letters, digits and '-' are allowed"),
        ({"frame_index": "seven"}, "attribute frame_index='seven' is not a canonical decimal integer"),
        ({"frame_index": "-1"}, "attribute frame_index=-1 is below 0"),
        ({"frame_index": "1_000"}, "attribute frame_index='1_000' is not a canonical decimal integer"),
        ({"frame_index": " +5 "}, "attribute frame_index=' +5 ' is not a canonical decimal integer"),
        ({"frame_index": "007"}, "attribute frame_index='007' is not a canonical decimal integer"),
        ({"frame_index": "\u0663"}, "attribute frame_index='\u0663' is not a canonical decimal integer"),
        ({"frame_index": "1000000000"}, "attribute frame_index has 10 digits; at most 9"),
        ({"frame_index": "9" * 4000}, "attribute frame_index has 4000 digits; at most 9"),
        ({"timestamp_us": "1" * 21}, "attribute timestamp_us has 21 digits; at most 20"),
        ({"width": "0"}, "attribute width=0 is below 1"),
        ({"height": "70000"}, "attribute height=70000 is above 65535"),
        ({"content_type": "image/png"}, "content_type 'image/png' is not supported; expected 'image/jpeg'"),
        ({"payload_uri": "http://x/y"}, "payload_uri 'http://x/y' is not a gs:// object URI"),
        ({"payload_uri": "gs://Bad_Bucket/x.jpg"}, "payload_uri 'gs://Bad_Bucket/x.jpg' is not a gs:// object URI"),
        ({"payload_uri": "gs://frames/jobs/other/payloads/0/x.jpg"},
         f"payload_uri 'gs://frames/jobs/other/payloads/0/x.jpg' is not this frame's payload; "
         f"expected gs://frames/{PAYLOAD_NAME}"),
    ],
)
def test_bad_attributes_are_rejected_with_the_reason(change: dict, message: str) -> None:
    wire = {k: v for k, v in (GOOD | change).items() if v is not None}
    with pytest.raises(InvalidFrameAttributesError) as err:
        FrameAttributes.from_pubsub(wire)
    assert str(err.value) == message


def test_no_attributes_at_all() -> None:
    with pytest.raises(InvalidFrameAttributesError, match="message has no attributes"):
        FrameAttributes.from_pubsub(None)


def test_the_parser_separates_a_named_but_invalid_frame_from_an_unidentifiable_one() -> None:
    named = parse_frame_attributes(GOOD | {"content_type": "image/png"})
    assert named.identity == FrameIdentity("demo", 7, 700_000) and named.attributes is None
    assert named.problem == "content_type 'image/png' is not supported; expected 'image/jpeg'"
    nameless = parse_frame_attributes(GOOD | {"frame_index": "1_000"})
    assert nameless.identity is None and nameless.attributes is None
    assert nameless.problem == "attribute frame_index='1_000' is not a canonical decimal integer"
    good = parse_frame_attributes(GOOD)
    assert good.problem is None and good.attributes is not None and good.attributes.identity == good.identity


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({}, "missing attribute(s): job_id, frame_index, timestamp_us"),
        ({"job_id": "a", "frame_index": "1"}, "missing attribute(s): timestamp_us"),
        ({"job_id": "A", "frame_index": "1", "timestamp_us": "0"},
         "invalid job id 'A': upper-case letters are not allowed"),
        ({"job_id": "a", "frame_index": "x", "timestamp_us": "0"},
         "attribute frame_index='x' is not a canonical decimal integer"),
        ({"job_id": "a", "frame_index": "1", "timestamp_us": "-5"}, "attribute timestamp_us=-5 is below 0"),
    ],
)
def test_unidentifiable_frames_say_why(attributes: dict, reason: str) -> None:
    parsed = parse_frame_attributes(attributes)
    assert (parsed.identity, parsed.problem) == (None, reason)


def test_with_a_bucket_the_payload_must_be_in_that_bucket() -> None:
    wire = GOOD | {"payload_uri": f"gs://elsewhere/{PAYLOAD_NAME}"}
    assert parse_frame_attributes(wire).attributes is not None  # no bucket given: the name is checked only
    parsed = parse_frame_attributes(wire, bucket="frames")
    assert parsed.problem == (f"payload_uri 'gs://elsewhere/{PAYLOAD_NAME}' is not this frame's payload; "
                              f"expected gs://frames/{PAYLOAD_NAME}")
    assert parse_frame_attributes(GOOD | {"payload_uri": f"gs://frames/{PAYLOAD_NAME}"}, "frames").attributes
