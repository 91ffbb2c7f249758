"""The push endpoint with Flask's test client, the real pipeline and the storage emulator."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from framecontract.clients import make_storage_client
from framecontract.layout import frame_objects
from framecontract.records import DetectionsRecord, ErrorRecord
from tests.worker.conftest import blank_jpeg, frame_attributes, push_envelope
from worker.app import WorkerConfig, create_app


@pytest.fixture
def client_and_bucket(gcs_settings, pipeline):
    app = create_app(WorkerConfig(settings=gcs_settings, json_logs=False), pipeline=pipeline)
    bucket = make_storage_client(gcs_settings).bucket(gcs_settings.bucket)
    return app.test_client(), bucket


def names_in(bucket) -> list[str]:
    return sorted(b.name for b in bucket.client.list_blobs(bucket.name))


def test_good_frame_stores_annotated_jpeg_and_detections(client_and_bucket, vtest_jpeg) -> None:
    client, bucket = client_and_bucket
    response = client.post("/pubsub/push", json=push_envelope(vtest_jpeg, frame_attributes("job-a", 0)))
    assert response.status_code == 204, response.get_data(as_text=True)
    names = frame_objects("job-a", 0, 0)
    assert names_in(bucket) == sorted([names.image, names.detections])
    record = DetectionsRecord.from_json(bucket.blob(names.detections).download_as_bytes())
    assert record.belongs_to("job-a", 0, 0)
    assert (record.width, record.height, record.image, record.model) == (768, 576, names.image, "model.nanodet")
    people = [d for d in record.detections if d.label == "person"]
    assert len(people) >= 3
    for det in people:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576 and det.score is not None and 0 < det.score <= 1
    assert {"decode", "queue", "model", "draw", "encode", "store_image"} == set(record.latency_ms)
    annotated = cv2.imdecode(np.frombuffer(bucket.blob(names.image).download_as_bytes(), np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(vtest_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert annotated.shape == original.shape
    assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100  # boxes were drawn


def test_same_message_twice_gives_one_result_and_two_204s(client_and_bucket, vtest_jpeg) -> None:
    client, bucket = client_and_bucket
    envelope = push_envelope(vtest_jpeg, frame_attributes("job-b", 3))
    assert client.post("/pubsub/push", json=envelope).status_code == 204
    names = frame_objects("job-b", 3, 300_000)
    first = {n: bucket.get_blob(n).generation for n in (names.image, names.detections)}
    assert client.post("/pubsub/push", json=envelope).status_code == 204
    assert names_in(bucket) == sorted(first)
    assert {n: bucket.get_blob(n).generation for n in first} == first


def test_corrupt_jpeg_gets_an_error_record_and_204(client_and_bucket) -> None:
    client, bucket = client_and_bucket
    envelope = push_envelope(b"\xff\xd8 this is not a jpeg", frame_attributes("job-c", 5), message_id="m-5")
    assert client.post("/pubsub/push", json=envelope).status_code == 204
    names = frame_objects("job-c", 5, 500_000)
    assert names_in(bucket) == [names.error]
    record = json.loads(bucket.blob(names.error).download_as_bytes())
    assert ErrorRecord.from_json(bucket.blob(names.error).download_as_bytes()).error_class == "permanent"
    assert record["error_class"] == "permanent"
    assert record["reason"] == "image data is not a JPEG image (JPEG marker expected at byte 2)"
    assert (record["job_id"], record["frame_index"], record["message_id"]) == ("job-c", 5, "m-5")
    # redelivery of the same bad frame is acknowledged, nothing new is written
    assert client.post("/pubsub/push", json=envelope).status_code == 204
    assert names_in(bucket) == [names.error]


def test_unknown_schema_is_a_recorded_permanent_error(client_and_bucket) -> None:
    client, bucket = client_and_bucket
    attributes = frame_attributes("job-d", 1, width=64, height=48) | {"schema": "99"}
    assert client.post("/pubsub/push", json=push_envelope(blank_jpeg(), attributes)).status_code == 204
    record = json.loads(bucket.blob(frame_objects("job-d", 1, 100_000).error).download_as_bytes())
    assert record["reason"] == "unknown schema '99'; this worker understands ['1']"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "request body is not JSON (Expecting value at byte 0); expected a Pub/Sub push envelope"),
        ("[" * 100_000, "request body is JSON nested too deeply; expected a Pub/Sub push envelope"),
        ({"message": {"data": "", "attributes": {}}}, "message has no messageId"),
        ({"message": {"data": "%%%", "messageId": "1", "attributes": {}}}, "message.data is not valid base64"),
        (push_envelope(b"x", {"job_id": "job-e"}), "missing attribute(s): frame_index, timestamp_us"),
        (push_envelope(b"x", frame_attributes("job-e", 0) | {"frame_index": "1_000"}),
         "attribute frame_index='1_000' is not a canonical decimal integer"),
        (push_envelope(b"x", frame_attributes("job-e", 0) | {"frame_index": "9" * 4000}),
         "attribute frame_index has 4000 digits; at most 9"),
        (push_envelope(b"x", {"job_id": "../etc", "frame_index": "1", "timestamp_us": "1"}),
         "invalid job id '../etc': it contains './'; only lowercase letters, digits and '-' are allowed"),
    ],
)
def test_malformed_requests_are_400_with_the_reason(client_and_bucket, body, reason: str) -> None:
    client, bucket = client_and_bucket
    if isinstance(body, str):
        response = client.post("/pubsub/push", data=body, content_type="application/json")
    else:
        response = client.post("/pubsub/push", json=body)
    assert response.status_code == 400
    assert response.get_json() == {"error": reason}
    assert names_in(bucket) == []


def test_storage_unavailable_is_503_with_retry_after(gcs_settings, pipeline, vtest_jpeg) -> None:
    # Storage at a closed port: every call fails to connect.
    import dataclasses

    dead = dataclasses.replace(gcs_settings, storage_emulator_host="http://127.0.0.1:9")
    app = create_app(WorkerConfig(settings=dead, json_logs=False), pipeline=pipeline)
    response = app.test_client().post("/pubsub/push", json=push_envelope(vtest_jpeg, frame_attributes("job-f", 0)))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"].startswith("storage unavailable while writing jobs/job-f/frames/")


def test_health_and_readiness(client_and_bucket) -> None:
    client, _ = client_and_bucket
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert (ready.status_code, ready.get_json()) == (200, {"ready": True})
    assert client.get("/pubsub/push").status_code == 405


def test_not_ready_while_storage_is_unreachable(gcs_settings, pipeline) -> None:
    import dataclasses

    dead = dataclasses.replace(gcs_settings, storage_emulator_host="http://127.0.0.1:9")
    client = create_app(WorkerConfig(settings=dead, json_logs=False), pipeline=pipeline).test_client()
    assert client.get("/healthz").status_code == 200  # alive, but
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["ready"] is False
    assert response.get_json()["reason"].startswith("storage unreachable: ConnectionError")


def test_not_ready_for_a_missing_bucket(gcs_settings, pipeline) -> None:
    import dataclasses

    settings = dataclasses.replace(gcs_settings, bucket="no-such-bucket-here")
    client = create_app(WorkerConfig(settings=settings, json_logs=False), pipeline=pipeline).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["reason"].startswith("storage unreachable: NotFound")


def error_reason(bucket, names) -> str:
    return ErrorRecord.from_json(bucket.blob(names.error).download_as_bytes()).reason


@pytest.mark.parametrize(
    ("data", "attributes", "reason"),
    [
        (lambda: blank_jpeg(64, 48), {}, "image is 64x48 but its message says 768x576"),
        (lambda: cv2.imencode(".png", np.zeros((576, 768, 3), np.uint8))[1].tobytes(), {},
         "image is PNG; accepted: JPEG"),
        (lambda: jpeg_header_only(30_000, 30_000), {"width": "30000", "height": "30000"},
         "image is 30000x30000; the longest side allowed is 16384 pixels"),
        (lambda: jpeg_header_only(12_000, 12_000), {"width": "12000", "height": "12000"},
         "image is 12000x12000 (144,000,000 pixels); at most 50,000,000"),
        (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", {}, "image data is not a JPEG image (JPEG has no frame header "
                                                              "(truncated or not a JPEG))"),
    ],
)
def test_frames_the_contract_does_not_allow_are_refused_from_the_header(client_and_bucket, data, attributes,
                                                                         reason: str) -> None:
    client, bucket = client_and_bucket
    envelope = push_envelope(data(), frame_attributes("job-j", 1) | attributes)
    assert client.post("/pubsub/push", json=envelope).status_code == 204
    assert error_reason(bucket, frame_objects("job-j", 1, 100_000)) == reason


def jpeg_header_only(width: int, height: int) -> bytes:
    """SOI + a baseline frame header declaring ``width`` x ``height`` (what a hostile file would start with)."""
    import struct

    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return b"\xff\xd8" + sof + b"\xff\xd9"


def test_a_payload_uri_naming_another_object_is_refused_without_reading_it(client_and_bucket, vtest_jpeg) -> None:
    client, bucket = client_and_bucket
    other = frame_objects("someone-else", 0, 0).payload
    bucket.blob(other).upload_from_string(vtest_jpeg, content_type="image/jpeg")
    for uri in (f"gs://{bucket.name}/{other}", f"gs://another-bucket/{frame_objects('job-k', 2, 200_000).payload}"):
        attributes = frame_attributes("job-k", 2) | {"payload_uri": uri}
        assert client.post("/pubsub/push", json=push_envelope(b"", attributes)).status_code == 204
    reason = error_reason(bucket, frame_objects("job-k", 2, 200_000))
    assert reason.startswith(f"payload_uri 'gs://{bucket.name}/{other}' is not this frame's payload; expected gs://")


def test_claim_checked_frame_is_read_from_the_bucket(client_and_bucket, vtest_jpeg) -> None:
    client, bucket = client_and_bucket
    names = frame_objects("job-g", 2, 200_000)
    bucket.blob(names.payload).upload_from_string(vtest_jpeg, content_type="image/jpeg")
    attributes = frame_attributes("job-g", 2) | {"payload_uri": f"gs://{bucket.name}/{names.payload}"}
    assert client.post("/pubsub/push", json=push_envelope(b"", attributes)).status_code == 204
    record = json.loads(bucket.blob(names.detections).download_as_bytes())
    assert record["frame_index"] == 2 and any(d["label"] == "person" for d in record["detections"])


def test_missing_claim_check_payload_is_a_recorded_permanent_error(client_and_bucket) -> None:
    client, bucket = client_and_bucket
    names = frame_objects("job-h", 4, 400_000)
    uri = f"gs://{bucket.name}/{names.payload}"
    attributes = frame_attributes("job-h", 4) | {"payload_uri": uri}
    assert client.post("/pubsub/push", json=push_envelope(b"", attributes)).status_code == 204
    record = json.loads(bucket.blob(names.error).download_as_bytes())
    assert record["reason"] == f"claim-checked payload {uri} does not exist"


def test_empty_data_without_payload_uri_is_a_recorded_permanent_error(client_and_bucket) -> None:
    client, bucket = client_and_bucket
    assert client.post("/pubsub/push", json=push_envelope(b"", frame_attributes("job-i", 0))).status_code == 204
    record = json.loads(bucket.blob(frame_objects("job-i", 0, 0).error).download_as_bytes())
    assert record["reason"] == "frame data is empty and there is no payload_uri"
