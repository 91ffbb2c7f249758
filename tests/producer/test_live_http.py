"""HTTP(S) MJPEG cameras without the emulators: a per-frame deadline against trickling servers (issue 16).

Each test talks to a real camera on 127.0.0.1 (``mjpeg_server.py``). Deadlines are short and configured;
nothing asserts how fast anything was: a trickled part takes far longer to complete than the deadline
(``TRICKLED_PART_S``), so the deadline is the only way the client can get out.
"""

from __future__ import annotations

import base64
import itertools

import cv2
import numpy as np
import pytest

from producer.live import StreamLost, connect_http, open_live_source
from tests.producer.mjpeg_server import MjpegServer

FRAME_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 1.0
TRICKLE_INTERVAL_S = 0.01


def tiny_jpegs(count: int) -> list[bytes]:
    """Small JPEGs (about 1 KB) told apart by their grey level."""
    rng = np.random.default_rng(5)
    images = [np.clip(rng.normal(40 + 20 * i, 30, (24, 32, 3)), 0, 255).astype(np.uint8) for i in range(count)]
    return [cv2.imencode(".jpg", image)[1].tobytes() for image in images]


JPEGS = tiny_jpegs(6)
TRICKLED_PART_S = min(len(j) for j in JPEGS) * TRICKLE_INTERVAL_S
"""A trickled part needs at least this long to arrive whole: many times the deadline."""


HEADERS_TRICKLE_INTERVAL_S = 0.05
TRICKLED_HEADERS_S = 100 * HEADERS_TRICKLE_INTERVAL_S
"""The camera's response headers are over 100 bytes: trickled, they need at least this long."""


def test_the_trickle_outlasts_the_deadline() -> None:
    assert TRICKLED_PART_S > 10 * FRAME_TIMEOUT_S
    assert TRICKLED_HEADERS_S > 3 * (CONNECT_TIMEOUT_S + FRAME_TIMEOUT_S)


def test_a_camera_trickling_a_frame_is_a_lost_connection() -> None:
    with MjpegServer(JPEGS, fps=50, trickle_first_after=2, trickle_interval=TRICKLE_INTERVAL_S) as camera:
        connection = connect_http(camera.url(), "camera", CONNECT_TIMEOUT_S, FRAME_TIMEOUT_S)
        images = connection.images()
        assert next(images) is connection.first_image
        next(images)
        with pytest.raises(StreamLost) as lost:
            next(images)
        connection.close()
    assert str(lost.value) == "no whole frame within 0.5 s (a stalled or trickling server)"


def test_a_camera_trickling_its_response_headers_fails_to_connect() -> None:
    with MjpegServer(JPEGS, fps=50, trickle_headers=True, trickle_interval=HEADERS_TRICKLE_INTERVAL_S) as camera:
        with pytest.raises(StreamLost) as lost:
            connect_http(camera.url(), "camera", CONNECT_TIMEOUT_S, FRAME_TIMEOUT_S)
        assert camera.connections == 1
    assert str(lost.value) == "no frame within 1.5 s of connecting (a stalled or trickling server)"


def test_a_camera_trickling_its_first_frame_fails_to_connect() -> None:
    with (MjpegServer(JPEGS, fps=50, trickle_first_after=0, trickle_interval=TRICKLE_INTERVAL_S) as camera,
          pytest.raises(StreamLost) as lost):
        connect_http(camera.url(), "camera", CONNECT_TIMEOUT_S, FRAME_TIMEOUT_S)
    assert str(lost.value) in ("no whole frame within 0.5 s (a stalled or trickling server)",
                               "no frame within 1.5 s of connecting (a stalled or trickling server)")


def test_a_trickling_camera_goes_through_the_reconnect_path() -> None:
    with MjpegServer(JPEGS, fps=50, trickle_first_after=3, trickle_interval=TRICKLE_INTERVAL_S) as camera:
        source = open_live_source(camera.url(), reconnect_timeout=30, connect_timeout=CONNECT_TIMEOUT_S,
                                  frame_timeout=FRAME_TIMEOUT_S)
        frames = list(itertools.islice(source.frames(), 6))
        source.close()
        assert camera.connections == 2
    assert len(frames) == 6
    assert source.gaps_total == 1
    gap = source.gaps[0]
    assert gap["reason"] == "no whole frame within 0.5 s (a stalled or trickling server)"
    assert (gap["after_timestamp_us"], gap["resumed_timestamp_us"]) == (frames[2].timestamp_us, frames[3].timestamp_us)
    assert gap["reconnect_attempts"] == 1


# ---- credentials only in answer to a challenge, in the scheme it names (issue 16) ------------------------

PASSWORD = "pa55-w0rd"
BASIC = "Basic " + base64.b64encode(f"viewer:{PASSWORD}".encode()).decode()


def connect_to(camera: MjpegServer, password: str = PASSWORD) -> None:
    """Connect with ``viewer:password`` in the URL, read the first frame, close."""
    connection = connect_http(camera.url("viewer", password), "camera", CONNECT_TIMEOUT_S, 5.0)
    assert connection is not None
    connection.close()


def test_basic_credentials_go_only_to_a_camera_that_asks_for_basic() -> None:
    with MjpegServer(JPEGS, credentials=("viewer", PASSWORD), auth="basic") as camera:
        connect_to(camera)
        assert camera.authorizations == ["", BASIC]


def test_a_camera_that_asks_for_digest_never_sees_basic() -> None:
    with MjpegServer(JPEGS, credentials=("viewer", PASSWORD), auth="digest") as camera:
        connect_to(camera)
        first, answer = camera.authorizations
    assert first == ""
    assert answer.startswith(f'Digest username="viewer", realm="camera", nonce="{camera.nonce}", uri="/stream", '
                             "algorithm=MD5, response=")


def test_digest_is_answered_when_a_camera_offers_basic_too() -> None:
    with MjpegServer(JPEGS, credentials=("viewer", PASSWORD), auth="basic+digest") as camera:
        connect_to(camera)
        assert [header.split(" ", 1)[0] for header in camera.authorizations] == ["", "Digest"]


def test_a_camera_that_asks_for_nothing_gets_no_credentials() -> None:
    with MjpegServer(JPEGS) as camera:
        connect_to(camera)
        assert camera.authorizations == [""]


def test_a_wrong_password_is_tried_once() -> None:
    with MjpegServer(JPEGS, credentials=("viewer", PASSWORD), auth="basic") as camera:
        with pytest.raises(StreamLost) as lost:
            connect_to(camera, "wrong")
        assert camera.authorizations == ["", "Basic " + base64.b64encode(b"viewer:wrong").decode()]
    assert str(lost.value) == "the server refused the credentials (HTTP 401)"


def test_a_camera_that_wants_credentials_the_url_does_not_have() -> None:
    with MjpegServer(JPEGS, credentials=("viewer", PASSWORD), auth="digest") as camera:
        with pytest.raises(StreamLost) as lost:
            connect_http(camera.url(), "camera", CONNECT_TIMEOUT_S, 5.0)
        assert camera.authorizations == [""]
    assert str(lost.value) == ("the server asks for a user name and password (HTTP 401, Digest) and the URL has "
                               "none: write them as http://USER:PASSWORD@host/...")


def test_a_camera_that_asks_for_a_scheme_the_producer_does_not_speak() -> None:
    with MjpegServer(JPEGS, credentials=("viewer", PASSWORD), auth="negotiate") as camera:
        with pytest.raises(StreamLost) as lost:
            connect_to(camera)
        assert camera.authorizations == [""]
    assert str(lost.value) == ("the server asks for Negotiate authentication (HTTP 401); the producer answers only "
                               "Basic and Digest")
