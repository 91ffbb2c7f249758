"""The HTTP front door, POST /predict, with the real pipeline and the storage emulator."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from framecontract.clients import make_storage_client
from framecontract.layout import parse_gs_uri
from worker.app import WorkerConfig, create_app


@pytest.fixture(scope="module")
def dog_jpeg() -> bytes:
    from framecontract.assets import asset_path

    return asset_path("dog").read_bytes()


@pytest.fixture
def app_and_bucket(gcs_settings, pipeline):
    config = WorkerConfig(settings=gcs_settings, json_logs=False, max_image_bytes=2_000_000)
    app = create_app(config, pipeline=pipeline)
    return app.test_client(), make_storage_client(gcs_settings).bucket(gcs_settings.bucket)


def labels(body: dict) -> set[str]:
    return {d["label"] for d in body["detections"]}


def test_study_body_gets_detections_and_a_stored_result(app_and_bucket, dog_jpeg) -> None:
    client, bucket = app_and_bucket
    response = client.post("/predict", json={"name": "dog.jpg", "image": base64.b64encode(dog_jpeg).decode()})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["name"] == "dog.jpg" and "dog" in labels(body) and "bicycle" in labels(body)
    assert (body["width"], body["height"]) == (768, 576)
    for det in body["detections"]:
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 < x2 <= 768 and 0 <= y1 < y2 <= 576
    bucket_name, name = parse_gs_uri(body["uri"])
    assert bucket_name == bucket.name and name.startswith("predict/")
    stored = cv2.imdecode(np.frombuffer(bucket.blob(name).download_as_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert stored.shape == (576, 768, 3)
    assert {"decode", "model", "draw", "encode", "store", "total"} <= set(body["latency_ms"])


def test_raw_image_body_and_png(app_and_bucket, dog_jpeg) -> None:
    client, _ = app_and_bucket
    response = client.post("/predict", data=dog_jpeg, content_type="image/jpeg")
    assert response.status_code == 200 and "dog" in labels(response.get_json())
    png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(dog_jpeg, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    response = client.post("/predict", json={"image": base64.b64encode(png).decode()})
    assert response.status_code == 200 and response.get_json()["name"] is None


def test_two_requests_store_two_objects(app_and_bucket, dog_jpeg) -> None:
    client, bucket = app_and_bucket
    uris = {client.post("/predict", data=dog_jpeg, content_type="image/jpeg").get_json()["uri"] for _ in range(2)}
    assert len(uris) == 2
    assert len(list(bucket.client.list_blobs(bucket.name, prefix="predict/"))) == 2


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        ({"json": {"image": "!!!"}}, 400, "field 'image' is not valid base64"),
        ({"json": {"name": "x"}}, 400,
         "field 'image' is missing or not a string; it must hold the base64-encoded image"),
        ({"json": {"image": base64.b64encode(b"hello").decode()}}, 400,
         "image data is not a JPEG, PNG, WebP or BMP image (unknown signature)"),
        ({"json": [1]}, 400, 'request body must be a JSON object like {"name": ..., "image": "<base64>"}'),
        ({"json": {"image": "aGVsbG8=", "name": 5}}, 400, "field 'name' must be a string"),
        ({"data": "{nope", "content_type": "application/json"}, 400,
         'request body is not JSON (Expecting property name enclosed in double quotes at byte 1); expected a JSON '
         'object like {"name": ..., "image": "<base64>"}'),
        ({"data": b"", "content_type": "image/jpeg"}, 400, "request body is empty; send the image bytes"),
        ({"data": b"GIF89a", "content_type": "image/gif"}, 415,
         "unsupported content type 'image/gif'; send application/json {\"image\": <base64>} or one of "
         "image/bmp, image/jpeg, image/png, image/webp"),
        ({"data": b"x", "content_type": "text/plain"}, 415,
         "unsupported content type 'text/plain'; send application/json {\"image\": <base64>} or one of "
         "image/bmp, image/jpeg, image/png, image/webp"),
        ({"data": b"\0" * 2_000_001, "content_type": "image/jpeg"}, 413,
         "request body is larger than the 2000000 byte limit"),
    ],
)
def test_bad_requests_say_what_was_wrong(app_and_bucket, kwargs, status: int, error: str) -> None:
    client, bucket = app_and_bucket
    response = client.post("/predict", **kwargs)
    assert response.status_code == status
    assert response.get_json() == {"error": error}
    assert list(bucket.client.list_blobs(bucket.name)) == []


def test_metrics_count_predictions(app_and_bucket, dog_jpeg) -> None:
    client, _ = app_and_bucket
    client.post("/predict", data=b"x", content_type="text/plain")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'predict_requests_total{status="415"}' in text
    assert "frame_stage_seconds_bucket" in text or "requests_in_flight" in text


def test_worker_config_from_env() -> None:
    config = WorkerConfig.from_env({
        "WORKER_MAX_IN_FLIGHT": "4", "WORKER_FRAME_BUDGET_S": "12.5", "WORKER_PREDICT_BUDGET_S": "3",
        "WORKER_STARTUP_DELAY_S": "10", "WORKER_MAX_IMAGE_BYTES": "1000", "WORKER_WARMUP": "0",
        "WORKER_MAX_IMAGE_PIXELS": "1000000", "WORKER_MAX_IMAGE_SIDE": "2000", "WORKER_PUSH_AUTH": "off",
        "FRAMES_BUCKET": "b", "FRAME_FANOUT_SETTINGS": "/nonexistent/settings.json"})
    assert (config.max_in_flight, config.frame_budget_s, config.predict_budget_s) == (4, 12.5, 3.0)
    assert (config.max_image_bytes, config.warmup, config.startup_delay_s) == (1000, False, 10.0)
    assert (config.max_image_pixels, config.max_image_side, config.settings.bucket) == (1_000_000, 2000, "b")


def test_startup_delay_delays_the_app(gcs_settings, pipeline) -> None:
    import time

    started = time.monotonic()
    create_app(WorkerConfig(settings=gcs_settings, json_logs=False, startup_delay_s=0.3), pipeline=pipeline)
    assert time.monotonic() - started >= 0.3
