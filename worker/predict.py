"""The HTTP front door: ``POST /predict`` with a base64 image (the study's body) or a raw image.

Usage::

    curl -X POST localhost:8080/predict -H 'Content-Type: application/json' \\
         -d '{"name": "dog.jpg", "image": "'"$(base64 -w0 dog.jpg)"'"}'
    curl -X POST localhost:8080/predict -H 'Content-Type: image/jpeg' --data-binary @dog.jpg

Answers JSON ``{"name", "width", "height", "detections": [{"label", "score", "box"}], "uri",
"model", "latency_ms"}``; the annotated JPEG is stored create-only under ``predict/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from framecontract.layout import gs_uri, predict_name
from worker.errors import BadRequestError, PermanentFrameError
from worker.runner import PipelineRunner
from worker.storage import ResultStore

RAW_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/bmp"})


class UnsupportedMediaTypeError(BadRequestError):
    """A body that is neither JSON nor an image type. Maps to 415."""

    status = 415


@dataclass(frozen=True)
class PredictRequest:
    """The image of one front-door request."""

    name: str | None
    image: bytes


def parse_predict_request(content_type: str | None, body: bytes) -> PredictRequest:
    """Validate a front-door body; :class:`BadRequestError` (400) or 415 with a reason."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type in RAW_IMAGE_TYPES:
        if not body:
            raise BadRequestError("request body is empty; send the image bytes")
        return PredictRequest(None, body)
    if media_type != "application/json":
        raise UnsupportedMediaTypeError(
            f"unsupported content type {media_type or '(none)'!r}; send application/json "
            f"{{\"image\": <base64>}} or one of {', '.join(sorted(RAW_IMAGE_TYPES))}"
        )
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequestError("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequestError('request body must be a JSON object like {"name": ..., "image": "<base64>"}')
    raw = payload.get("image")
    if not isinstance(raw, str) or not raw:
        raise BadRequestError("field 'image' is missing or not a string; it must hold the base64-encoded image")
    name = payload.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRequestError("field 'name' must be a string")
    if raw.startswith("data:") and "," in raw:  # tolerate data URLs
        raw = raw.split(",", 1)[1]
    try:
        image = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequestError("field 'image' is not valid base64") from None
    return PredictRequest(name, image)


class PredictHandler:
    """Runs the pipeline on a front-door image and stores the annotated JPEG."""

    def __init__(self, runner: PipelineRunner, store: ResultStore, bucket_name: str, budget_s: float = 30.0) -> None:
        self.runner = runner
        self.store = store
        self.bucket_name = bucket_name
        self.budget_s = budget_s

    def handle(self, request: PredictRequest) -> dict[str, Any]:
        try:
            result = self.runner.process(request.image, budget_s=self.budget_s)
        except PermanentFrameError as exc:
            raise BadRequestError(f"'image' is not an image: {exc.reason}") from None
        name = predict_name(time.time_ns() // 1000, secrets.token_hex(8))
        started = time.perf_counter()
        self.store.create(name, result.annotated_jpeg, "image/jpeg")
        result.latency_ms["store"] = round((time.perf_counter() - started) * 1000, 2)
        return {
            "name": request.name,
            "width": result.width,
            "height": result.height,
            "detections": result.detections,
            "uri": gs_uri(self.bucket_name, name),
            "model": self.runner.model_name,
            "latency_ms": result.latency_ms,
        }
