"""URL credential redaction (pure): user-info and secret query values never survive."""

from __future__ import annotations

import pytest

from producer.redact import redact_url, scrub, url_secrets


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsp://admin@10.0.0.5/live", "rtsp://***@10.0.0.5/live"),
        ("http://u:p%40ss@cam.local/video.mjpg?fps=5", "http://***@cam.local/video.mjpg?fps=5"),
        ("http://cam/video.cgi?user=admin&pwd=hunter2&resolution=640x480",
         "http://cam/video.cgi?user=***&pwd=***&resolution=640x480"),
        ("https://cam/s?access_token=abc.def&Password=x&apiKey=k&channel=1",
         "https://cam/s?access_token=***&Password=***&apiKey=***&channel=1"),
        ("rtsp://a:b@[fe80::1]:554/x?camPassword=z", "rtsp://***@[fe80::1]:554/x?camPassword=***"),
        ("rtsp://cam.local:554/stream1", "rtsp://cam.local:554/stream1"),
        ("rtsp://u:p@cam/a@b", "rtsp://***@cam/a@b"),
        ("videos/vtest.avi", "videos/vtest.avi"),
        ("0", "0"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_a_password_with_an_at_sign_is_redacted_whole() -> None:
    assert redact_url("rtsp://user:p@ss@cam/x") == "rtsp://***@cam/x"
    assert "p@ss" in url_secrets("rtsp://user:p@ss@cam/x")


def test_secrets_are_scrubbed_from_library_messages() -> None:
    url = "http://admin:s3cr%21t@127.0.0.1:8080/video?token=tok123"
    secrets = url_secrets(url)
    assert {"admin", "s3cr%21t", "s3cr!t", "tok123", "admin:s3cr%21t@"} <= set(secrets)
    message = ("HTTPConnectionPool(host='127.0.0.1', port=8080): Max retries exceeded with url: /video?token=tok123 "
               "(auth admin:s3cr!t) http://admin:s3cr%21t@127.0.0.1:8080/video")
    scrubbed = scrub(message, secrets)
    assert "tok123" not in scrubbed and "s3cr" not in scrubbed and "admin" not in scrubbed
    assert scrubbed.endswith("url: /video?token=*** (auth ***:***) http://***@127.0.0.1:8080/video")


def test_a_short_user_name_is_not_scrubbed_from_every_word() -> None:
    secrets = url_secrets("rtsp://me:pw123@cam/x")
    assert "me" not in secrets and "pw123" in secrets
    assert scrub("unsupported scheme rtsp://me:pw123@cam/x", secrets) == "unsupported scheme rtsp://***@cam/x"


def test_nothing_to_scrub_without_credentials() -> None:
    assert url_secrets("rtsp://cam/stream?channel=2") == ()
    assert scrub("unchanged", ()) == "unchanged"
