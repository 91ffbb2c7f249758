import pytest

from framecontract import SCHEMA_VERSION
from framecontract.message import FrameAttributes, InvalidFrameAttributesError

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
    attrs = FrameAttributes("demo", 1, 2, 3, 4, payload_uri="gs://frames/jobs/demo/payloads/0/x.jpg")
    wire = attrs.to_pubsub() | {"CloudPubSubDeadLetterSourceDeliveryCount": "5"}
    assert FrameAttributes.from_pubsub(wire) == attrs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_id": None}, "missing attribute(s): job_id"),
        ({"frame_index": None, "width": None}, "missing attribute(s): frame_index, width"),
        ({"schema": "9"}, "unknown schema '9'; this worker understands ['1']"),
        ({"job_id": "../x"},
         "invalid job id '../x': it contains './'; only lowercase letters, digits and '-' are allowed"),
        ({"frame_index": "seven"}, "attribute frame_index='seven' is not an integer"),
        ({"frame_index": "-1"}, "attribute frame_index=-1 is below 0"),
        ({"width": "0"}, "attribute width=0 is below 1"),
        ({"content_type": "image/png"}, "content_type 'image/png' is not supported; expected 'image/jpeg'"),
        ({"payload_uri": "http://x/y"}, "payload_uri 'http://x/y' is not a gs:// URI"),
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
