"""The result records: round trips, exact errors, tolerance of newer writers, and docs/contract.md's examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from framecontract.layout import frame_objects
from framecontract.records import (
    MAX_RECORD_BYTES,
    Detection,
    DetectionsRecord,
    ErrorRecord,
    InvalidRecordError,
)

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract.md"


def detections_record(**changes: object) -> DetectionsRecord:
    base = DetectionsRecord(
        job_id="demo", frame_index=7, timestamp_us=700_000, width=768, height=576,
        image=frame_objects("demo", 7, 700_000).image,
        detections=(Detection("person", 0.87, (412.3, 96.0, 468.1, 262.4)), Detection("car", None, (0, 0, 1, 1))),
        model="model.nanodet", latency_ms={"decode": 2.1, "model": 46.2}, message_id="123",
    )
    return DetectionsRecord(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def doc_example(heading: str) -> str:
    """The JSON block under ``### <heading>`` in docs/contract.md."""
    text = CONTRACT.read_text(encoding="utf-8")
    match = re.search(rf"### {re.escape(heading)}[^\n]*\n```json\n(.*?)\n```", text, re.S)
    assert match, f"docs/contract.md has no JSON example under '### {heading}'"
    return match.group(1)


@pytest.mark.parametrize(("heading", "record_type"), [("Detections record", DetectionsRecord),
                                                       ("Error record", ErrorRecord)])
def test_the_documented_examples_are_exactly_what_the_code_writes(heading: str, record_type: type) -> None:
    documented = json.loads(doc_example(heading))
    record = record_type.from_json(doc_example(heading))
    written = json.loads(record.to_json())
    assert written == documented
    assert list(written) == list(documented), "the documented key order is the written one"


def test_records_round_trip() -> None:
    record = detections_record()
    assert DetectionsRecord.from_json(record.to_json()) == record
    assert DetectionsRecord.from_json(record.to_json().encode()) == record
    error = ErrorRecord(job_id="demo", frame_index=3, timestamp_us=300, reason="not a JPEG", message_id=None)
    assert ErrorRecord.from_json(error.to_json()) == error


def test_readers_ignore_fields_a_newer_writer_adds() -> None:
    record = detections_record()
    data = json.loads(record.to_json()) | {"tracker": {"ids": [1]}, "new_field": 1}
    assert DetectionsRecord.from_json(json.dumps(data)) == record


def test_the_record_knows_which_frame_it_belongs_to() -> None:
    record = detections_record()
    assert record.belongs_to("demo", 7, 700_000)
    assert not record.belongs_to("demo", 8, 700_000) and not record.belongs_to("other", 7, 700_000)


def _broken(change: dict, drop: str | None = None) -> str:
    data = json.loads(detections_record().to_json()) | change
    if drop:
        del data[drop]
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "detections record is not JSON: Expecting value at line 1 column 1"),
        (b"\xff\xfe\xfd", "detections record is not UTF-8 text"),
        (b"[" * 50_000 + b"]" * 50_000, "detections record is nested too deeply to be one"),
        (b"[]", "detections record is not a JSON object"),
        (_broken({"schema": "2"}), "detections record has schema \"2\"; this reader understands ['1']"),
        (_broken({}, drop="frame_index"), "detections record: field 'frame_index' is missing"),
        (_broken({"frame_index": "7"}), "detections record: field 'frame_index' must be an integer >= 0, got \"7\""),
        (_broken({"frame_index": True}), "detections record: field 'frame_index' must be an integer >= 0, got true"),
        (_broken({"width": 0}), "detections record: field 'width' must be an integer >= 1, got 0"),
        (_broken({"job_id": "../x"}), "detections record: invalid job id '../x': it contains './'; only lowercase "
                                      "letters, digits and '-' are allowed"),
        (_broken({"detections": {}}), "detections record: field 'detections' must be a list, got {}"),
        (_broken({"detections": [{"label": "a", "score": 2, "box": [0, 0, 1, 1]}]}),
         "detections[0].score must be a number in 0..1 or null, got 2"),
        (_broken({"detections": [{"label": "a", "score": 0.5, "box": [0, 0, 1]}]}),
         "detections[0].box must be 4 numbers [x1, y1, x2, y2], got [0, 0, 1]"),
        (_broken({"detections": [{"label": "a", "score": 0.5, "box": [5, 0, 1, 1]}]}),
         "detections[0].box [5, 0, 1, 1] has x1 > x2 or y1 > y2"),
        (_broken({"detections": [{"label": 1, "score": 0.5, "box": [0, 0, 1, 1]}]}),
         "detections[0].label is not a string"),
        (_broken({"latency_ms": {"model": "fast"}}),
         "detections record: field 'latency_ms' must map stage names to numbers"),
    ],
)
def test_bad_records_are_refused_with_the_reason(text: str | bytes, message: str) -> None:
    with pytest.raises(InvalidRecordError) as err:
        DetectionsRecord.from_json(text)
    assert str(err.value) == message


def test_a_record_too_large_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidRecordError, match=f"at most {MAX_RECORD_BYTES}"):
        ErrorRecord.from_json(b" " * (MAX_RECORD_BYTES + 1))


def test_an_error_record_needs_its_reason() -> None:
    data = json.loads(ErrorRecord(job_id="demo", frame_index=1, timestamp_us=1, reason="x").to_json())
    del data["reason"]
    with pytest.raises(InvalidRecordError) as err:
        ErrorRecord.from_json(json.dumps(data))
    assert str(err.value) == "error record: field 'reason' is missing"
