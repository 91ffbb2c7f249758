"""The front door's request body and the check of its answer (pure; used by the locustfile and tests).

Usage::

    image = load_image("dog")                         # asset name or a path to a JPEG/PNG file
    body = study_body(image)                          # b'{"name": "dog.jpg", "image": "<base64>"}'
    verdict = check_predict_response(200, response_bytes, image)
    verdict.ok, verdict.failure, verdict.kind         # (True, None, "ok") or (False, "HTTP 200: ...", "200 bad body")
    failure_kind("HTTP 0 conn closed: HTTPConnectionClosed('connection closed.')")     # "conn closed"

Failure messages always start with ``HTTP <status>`` (``HTTP 0`` for a connection error, followed by
its kind: ``timeout``, ``conn closed``, ``conn reset``, ``conn refused`` or ``conn error``), so that
Locust's failure table can be grouped by status code (:func:`status_of_failure`) and by kind
(:func:`failure_kind`). A 200 counts as good only with a valid body; our worker's answer must name
the stored object (``uri`` gs://), the baseline's (``stored=False``) stores nothing (``uri`` null).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVERS = ("worker", "baseline")
"""What answers a load test: our worker's /predict (stores the annotated JPEG) or the baseline (stores nothing)."""
RESPONSE_KEYS = ("name", "width", "height", "detections", "uri", "model", "latency_ms")
DETECTION_KEYS = ("label", "score", "box")
_FAILURE_STATUS = re.compile(r"^HTTP (\d{1,3})\b")
MAX_REASON_CHARS = 80
BAD_BODY = "200 bad body"
"""The kind of a 200 whose body is not the /predict answer."""
CONNECTION_KINDS = ("timeout", "conn closed", "conn reset", "conn refused", "conn error")
"""Kinds of a request that got no HTTP answer, most specific first (see :func:`connection_kind`)."""
_CONNECTION_PATTERNS = (
    ("timeout", re.compile(r"timeout|timed out|ETIMEDOUT", re.IGNORECASE)),
    ("conn refused", re.compile(r"ConnectionRefused|refused|ECONNREFUSED|errno 111\b|\(111,", re.IGNORECASE)),
    ("conn reset", re.compile(r"ConnectionReset|reset by peer|ECONNRESET|errno 104\b|\(104,", re.IGNORECASE)),
    ("conn closed", re.compile(r"HTTPConnectionClosed|connection closed|RemoteDisconnected|EmptyResponse|"
                               r"Empty response|BrokenPipe|broken pipe|EPIPE|\(32,|ConnectionAborted|IncompleteRead",
                               re.IGNORECASE)),
)


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
    kind: str = "ok"
    """``ok``, the status code (``"429"``), ``200 bad body`` or a connection kind (``timeout``, ...)."""
    status: int = 200


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
                           error: str | None = None, stored: bool = True) -> Verdict:
    """Judge one ``POST /predict`` answer; ``image`` (what was sent) lets width/height be checked.

    ``status`` 0 with ``error`` is a connection-level failure (timed out, closed, reset, refused).
    ``stored``: the answer must name the stored annotated JPEG (``uri`` gs://, our worker); ``False``
    for the baseline server, which stores nothing and answers ``"uri": null``.
    """
    if status == 0:
        kind = connection_kind(error or "")
        return Verdict(False, f"HTTP 0 {kind}: {_short(error or 'no response')}", kind=kind, status=0)
    payload = _json(body)
    if status != 200:
        reason = payload.get("error") if isinstance(payload, dict) else None
        return Verdict(False, f"HTTP {status}" + (f": {_short(str(reason))}" if reason else ""), kind=str(status),
                       status=status)
    if not isinstance(payload, dict):
        return Verdict(False, "HTTP 200: response is not a JSON object", kind=BAD_BODY)
    problem = _response_problem(payload, image, stored)
    if problem:
        return Verdict(False, f"HTTP 200: {problem}", kind=BAD_BODY)
    return Verdict(True, None, len(payload["detections"]))


def connection_kind(error: str) -> str:
    """What kind of connection failure an exception's text describes (pure).

    ``timeout`` (connect or read timed out), ``conn refused`` (nothing listening, or the backlog was
    full), ``conn reset`` (the server reset the connection), ``conn closed`` (closed without an
    answer: geventhttpclient's ``HTTPConnectionClosed``, an empty response, a broken pipe), else
    ``conn error``. Locust's FastHttpUser wraps some of them (``RetriesExceeded(..., original=...)``);
    the text of the wrapped one decides.
    """
    for kind, pattern in _CONNECTION_PATTERNS:
        if pattern.search(error):
            return kind
    return "conn error"


def failure_kind(message: str) -> str:
    """The kind of a failure message (as written by :func:`check_predict_response`, bare or wrapped
    in Locust's ``CatchResponseError('...')``): the status code (``"429"``), ``200 bad body``, a
    connection kind, or ``other``. Older messages (``HTTP 0 connection error: <exception>``) are
    classified by their exception text."""
    text = _unwrap(message)
    status = status_of_failure(text)
    if status == "other":
        return "other"
    if status == "200":
        return BAD_BODY
    if status != "0":
        return status
    rest = text[len("HTTP 0"):].lstrip()
    for kind in CONNECTION_KINDS:
        if rest.startswith(kind + ":") and kind != "conn error":
            return kind
    return connection_kind(rest)


def _response_problem(payload: dict[str, Any], image: Image | None, stored: bool = True) -> str | None:
    missing = [key for key in RESPONSE_KEYS if key not in payload]
    if missing:
        return f"response lacks {', '.join(missing)}"
    detections = payload["detections"]
    if not isinstance(detections, list):
        return "'detections' is not a list"
    for det in detections:
        if not isinstance(det, dict) or any(key not in det for key in DETECTION_KEYS):
            return f"a detection lacks one of {', '.join(DETECTION_KEYS)}"
    if stored and not str(payload["uri"]).startswith("gs://"):
        return "'uri' is not a gs:// URI"
    if not stored and payload["uri"] is not None:
        return "'uri' is not null (this server stores nothing)"
    if image is not None and (payload["width"], payload["height"]) != (image.width, image.height):
        return (f"size {payload['width']}x{payload['height']} does not match the "
                f"{image.width}x{image.height} image sent")
    return None


def status_of_failure(message: str) -> str:
    """The status code a failure message starts with (``"429"``, ``"0"``), or ``"other"``.

    Locust's failures CSV stores the message as ``<ExceptionClass>('HTTP 429: ...')`` or bare; both work.
    """
    match = _FAILURE_STATUS.match(_unwrap(message))
    return match.group(1) if match else "other"


def _unwrap(message: str) -> str:
    """``CatchResponseError('HTTP 429: ...')`` → ``HTTP 429: ...`` (Locust's failures CSV stores the repr)."""
    return re.sub(r"^\w+\((['\"])(.*)\1\)$", r"\2", message.strip(), flags=re.DOTALL)


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
