"""The push endpoint with Flask's test client, the real pipeline and the storage emulator."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from framecontract.clients import make_storage_client
from framecontract.layout import frame_objects
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
    record = json.loads(bucket.blob(names.detections).download_as_bytes())
    assert (record["job_id"], record["frame_index"], record["timestamp_us"]) == ("job-a", 0, 0)
    assert (record["width"], record["height"], record["image"]) == (768, 576, names.image)
    people = [d for d in record["detections"] if d["label"] == "person"]
    assert len(people) >= 3
    for det in people:
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576 and 0 < det["score"] <= 1
    assert {"decode", "model", "draw", "encode"} <= set(record["latency_ms"])
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
    assert record["error_class"] == "permanent"
    assert record["reason"] == "frame data is not a decodable image"
    assert (record["job_id"], record["frame_index"], record["message_id"]) == ("job-c", 5, "m-5")
    # redelivery of the same bad frame is acknowledged, nothing new is written
    assert client.post("/pubsub/push", json=envelope).status_code == 204
    assert names_in(bucket) == [names.error]


def test_unknown_schema_is_a_recorded_permanent_error(client_and_bucket) -> None:
    client, bucket = client_and_bucket
    attributes = frame_attributes("job-d", 1) | {"schema": "99"}
    assert client.post("/pubsub/push", json=push_envelope(blank_jpeg(), attributes)).status_code == 204
    record = json.loads(bucket.blob(frame_objects("job-d", 1, 100_000).error).download_as_bytes())
    assert record["reason"] == "unknown schema '99'; this worker understands ['1']"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "request body is not JSON; expected a Pub/Sub push envelope"),
        ({"message": {"data": "", "attributes": {}}}, "message has no messageId"),
        ({"message": {"data": "%%%", "messageId": "1", "attributes": {}}}, "message.data is not valid base64"),
        (push_envelope(b"x", {"job_id": "job-e"}), "missing attribute(s): frame_index, timestamp_us"),
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
    # A storage client pointed at a closed port: every call fails to connect.
    dead = storage.Client(project="test-project", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": "http://127.0.0.1:9"})
    app = create_app(WorkerConfig(settings=gcs_settings, json_logs=False), pipeline=pipeline, storage_client=dead)
    response = app.test_client().post("/pubsub/push", json=push_envelope(vtest_jpeg, frame_attributes("job-f", 0)))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.get_json()["error"].startswith("storage unavailable while writing jobs/job-f/frames/")


def test_health_and_readiness(client_and_bucket) -> None:
    client, _ = client_and_bucket
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/pubsub/push").status_code == 405


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
