"""The front door's request body and the check of its answer (pure; used by the locustfile and tests).

Usage::

    image = load_image("dog")                         # asset name or a path to a JPEG/PNG file
    body = study_body(image)                          # b'{"name": "dog.jpg", "image": "<base64>"}'
    verdict = check_predict_response(200, response_bytes, image)
    verdict.ok, verdict.failure                       # (True, None) or (False, "HTTP 200: ...")

Failure messages always start with ``HTTP <status>`` (``HTTP 0`` for a connection error), so that
Locust's failure table can be grouped by status code (:func:`status_of_failure`).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREDICT_PATH = "/predict"
RESPONSE_KEYS = ("name", "width", "height", "detections", "uri", "model", "latency_ms")
DETECTION_KEYS = ("label", "score", "box")
_FAILURE_STATUS = re.compile(r"^HTTP (\d{1,3})\b")
MAX_REASON_CHARS = 80


@dataclass(frozen=True)
class Image:
    """An image to send: its file name, bytes and size (width/height read from the JPEG/PNG header)."""

    name: str
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Verdict:
    """The outcome of one response: ``ok``, or a ``failure`` message starting with ``HTTP <status>``."""

    ok: bool
    failure: str | None = None
    detections: int = 0


def load_image(spec: str) -> Image:
    """``spec`` is an asset name of ``deploy.assets`` (``dog``) or a path to an image file.

    Raises ``FileNotFoundError`` / ``ValueError`` with what was wrong.
    """
    path = Path(spec)
    if not path.exists() and "/" not in spec and "." not in spec:
        from framecontract.assets import asset_path

        path = asset_path(spec)
    data = path.read_bytes()
    width, height = image_size(data)
    return Image(path.name, data, width, height)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image, decoded with OpenCV; ValueError if it is not an image."""
    import cv2
    import numpy as np

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise ValueError("not an image OpenCV can decode")
    return int(decoded.shape[1]), int(decoded.shape[0])


def study_body(image: Image) -> bytes:
    """The study's request body: ``{"name": <file name>, "image": <base64 of the file>}`` as JSON bytes."""
    return json.dumps({"name": image.name, "image": base64.b64encode(image.data).decode("ascii")}).encode()


def check_predict_response(status: int, body: bytes | None, image: Image | None = None,
                           error: str | None = None) -> Verdict:
    """Judge one ``POST /predict`` answer; ``image`` (what was sent) lets width/height be checked.

    ``status`` 0 with ``error`` is a connection-level failure (refused, reset, timed out).
    """
    if status == 0:
        return Verdict(False, f"HTTP 0 connection error: {_short(error or 'no response')}")
    payload = _json(body)
    if status != 200:
        reason = payload.get("error") if isinstance(payload, dict) else None
        return Verdict(False, f"HTTP {status}" + (f": {_short(str(reason))}" if reason else ""))
    if not isinstance(payload, dict):
        return Verdict(False, "HTTP 200: response is not a JSON object")
    problem = _response_problem(payload, image)
    if problem:
        return Verdict(False, f"HTTP 200: {problem}")
    return Verdict(True, None, len(payload["detections"]))


def _response_problem(payload: dict[str, Any], image: Image | None) -> str | None:
    missing = [key for key in RESPONSE_KEYS if key not in payload]
    if missing:
        return f"response lacks {', '.join(missing)}"
    detections = payload["detections"]
    if not isinstance(detections, list):
        return "'detections' is not a list"
    for det in detections:
        if not isinstance(det, dict) or any(key not in det for key in DETECTION_KEYS):
            return f"a detection lacks one of {', '.join(DETECTION_KEYS)}"
    if not str(payload["uri"]).startswith("gs://"):
        return "'uri' is not a gs:// URI"
    if image is not None and (payload["width"], payload["height"]) != (image.width, image.height):
        return (f"size {payload['width']}x{payload['height']} does not match the "
                f"{image.width}x{image.height} image sent")
    return None


def status_of_failure(message: str) -> str:
    """The status code a failure message starts with (``"429"``, ``"0"``), or ``"other"``.

    Locust's failures CSV stores the message as ``<ExceptionClass>('HTTP 429: ...')`` or bare; both work.
    """
    text = re.sub(r"^\w+\((['\"])(.*)\1\)$", r"\2", message.strip())
    match = _FAILURE_STATUS.match(text)
    return match.group(1) if match else "other"


def _json(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"
