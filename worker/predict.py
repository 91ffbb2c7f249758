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
import secrets
import time
from dataclasses import dataclass
from typing import Any

from framecontract.layout import gs_uri, predict_name
from worker.envelope import parse_json_body
from worker.errors import BadRequestError, ImageTooLargeError, PermanentFrameError
from worker.frames import ImageLimits
from worker.imageinfo import MEDIA_TYPES
from worker.runner import PipelineRunner
from worker.storage import ResultStore

RAW_IMAGE_TYPES = frozenset(MEDIA_TYPES)
PREDICT_BODY = '{"name": ..., "image": "<base64>"}'


class UnsupportedMediaTypeError(BadRequestError):
    """A body that is neither JSON nor an image type. Maps to 415."""

    status = 415


class PayloadTooLargeError(BadRequestError):
    """An image larger than the limits (bytes, pixels or side). Maps to 413."""

    status = 413


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
    payload = parse_json_body(body, f"a JSON object like {PREDICT_BODY}")
    if not isinstance(payload, dict):
        raise BadRequestError(f"request body must be a JSON object like {PREDICT_BODY}")
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

    def __init__(
        self,
        runner: PipelineRunner,
        store: ResultStore,
        bucket_name: str,
        budget_s: float = 30.0,
        limits: ImageLimits | None = None,
    ) -> None:
        self.runner = runner
        self.store = store
        self.bucket_name = bucket_name
        self.budget_s = budget_s
        self.limits = limits or ImageLimits.for_predict()

    def handle(self, request: PredictRequest) -> dict[str, Any]:
        try:
            result = self.runner.process(request.image, self.budget_s, self.limits)
        except ImageTooLargeError as exc:
            raise PayloadTooLargeError(exc.reason) from None
        except PermanentFrameError as exc:
            raise BadRequestError(exc.reason) from None
        name = predict_name(time.time_ns() // 1000, secrets.token_hex(8))
        started = time.perf_counter()
        self.store.create(name, result.annotated_jpeg, "image/jpeg")
        result.latency_ms["store"] = round((time.perf_counter() - started) * 1000, 2)
        return {
            "name": request.name,
            "width": result.width,
            "height": result.height,
            "detections": [d.to_dict() for d in result.detections],
            "uri": gs_uri(self.bucket_name, name),
            "model": self.runner.model_name,
            "latency_ms": result.latency_ms,
        }
