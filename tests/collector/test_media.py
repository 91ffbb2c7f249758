"""Downloads over the JSON API media endpoint: against the storage emulator, and a loopback HTTP server
for what the emulator cannot be made to do (fail, lie about the checksum, demand a token)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from google.oauth2.credentials import Credentials

from collector.media import (
    ChecksumMismatchError,
    MediaDownloader,
    MediaDownloadError,
    ObjectNotFoundError,
    ca_bundle,
    crc32c_b64,
    crc32c_from_header,
    media_url,
    proxy_for,
)
from collector.store import JobStore
from framecontract.clients import make_storage_client
from framecontract.settings import Settings

# ---- pure parts ------------------------------------------------------------------------------------


def test_media_url_escapes_the_whole_name() -> None:
    assert media_url("http://127.0.0.1:9023/", "frames", "jobs/a b/ü?#%.jpg") == (
        "http://127.0.0.1:9023/download/storage/v1/b/frames/o/jobs%2Fa%20b%2F%C3%BC%3F%23%25.jpg?alt=media"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("crc32c=n03x6A==,md5=XrY7u+Ae7tCTyyK7j1rNww==", "n03x6A=="),
        ("md5=XrY7u+Ae7tCTyyK7j1rNww==, crc32c=AAAAAA==", "AAAAAA=="),
        ("md5=XrY7u+Ae7tCTyyK7j1rNww==", None),
        ("crc32c=", None),
        ("", None),
        (None, None),
    ],
)
def test_crc32c_from_header(header: str | None, expected: str | None) -> None:
    assert crc32c_from_header(header) == expected


def test_crc32c_b64_matches_cloud_storage() -> None:
    assert crc32c_b64(b"hello world") == "yZRlqg=="  # gsutil hash of 'hello world'


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://lower:3128"}, "http://lower:3128"),
        ({"HTTP_PROXY": "http://plain:3128"}, None),  # the endpoint is https
        ({"ALL_PROXY": "http://all:3128"}, "http://all:3128"),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "googleapis.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "no_proxy": ".googleapis.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example.com,apis.com"}, "http://proxy:3128"),
    ],
)
def test_proxy_for_follows_the_environment(
    environ: dict[str, str], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert proxy_for("https://storage.googleapis.com") == expected


def test_ca_bundle_prefers_the_requests_variables() -> None:
    assert ca_bundle({"REQUESTS_CA_BUNDLE": "/a.pem", "CURL_CA_BUNDLE": "/b.pem"}) == "/a.pem"
    assert ca_bundle({"CURL_CA_BUNDLE": "/b.pem"}) == "/b.pem"
    assert ca_bundle({}).endswith(".pem")


# ---- against the storage emulator ------------------------------------------------------------------


def test_download_matches_the_client_library(gcs_settings: Settings) -> None:
    bucket = make_storage_client(gcs_settings).bucket(gcs_settings.bucket)
    name = "jobs/x/frames/7/a b ü+%.jpg"
    payload = bytes(range(256)) * 400
    bucket.blob(name).upload_from_string(payload, content_type="image/jpeg")

    media = MediaDownloader.from_settings(gcs_settings)
    assert media.download(gcs_settings.bucket, name) == payload == bucket.blob(name).download_as_bytes()


def test_missing_object_is_named(gcs_settings: Settings) -> None:
    store = JobStore.from_settings(gcs_settings)
    with pytest.raises(ObjectNotFoundError) as raised:
        store.download("jobs/x/frames/0/nothing.jpg")
    assert str(raised.value) == f"gs://{gcs_settings.bucket}/jobs/x/frames/0/nothing.jpg does not exist"


# ---- against a loopback server ---------------------------------------------------------------------


@dataclass
class Script:
    """What the loopback server answers, one entry per request (the last one repeats)."""

    replies: list[tuple[int, dict[str, str], bytes]]
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script([(200, {}, b"")])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - an OAuth token endpoint
            form = self.rfile.read(int(self.headers["Content-Length"])).decode()
            script.seen.append({"path": self.path, "form": form})
            body = json.dumps({"access_token": "fresh-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            script.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            gets = sum(1 for seen in script.seen if "form" not in seen)
            status, headers, body = script.replies[min(gets, len(script.replies)) - 1]
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def fast(endpoint: str, credentials: object = None, retries: int = 3) -> MediaDownloader:
    return MediaDownloader(endpoint, credentials, retries=retries, backoff_s=0)  # no sleeping between attempts


def test_transient_failures_are_retried(server: tuple[str, Script]) -> None:
    endpoint, script = server
    body = b"\xff\xd8 a jpeg"
    good = (200, {"x-goog-hash": f"crc32c={crc32c_b64(body)}"}, body)
    script.replies = [(503, {}, b"busy"), (429, {}, b"slow down"), good]
    assert fast(endpoint).download("b", "jobs/x/f.jpg") == body
    assert len(script.seen) == 3
    assert script.seen[0]["path"] == "/download/storage/v1/b/b/o/jobs%2Fx%2Ff.jpg?alt=media"


def test_persistent_failure_gives_the_status_and_the_servers_message(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.replies = [(503, {}, json.dumps({"error": {"code": 503, "message": "Backend Error"}}).encode())]
    with pytest.raises(MediaDownloadError) as raised:
        fast(endpoint, retries=2).download("b", "jobs/x/f.jpg")
    assert str(raised.value) == "cannot download gs://b/jobs/x/f.jpg: HTTP 503 Backend Error"
    assert len(script.seen) == 3  # the first try and two retries


def test_permission_denied_is_not_retried(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.replies = [(403, {}, b"Access denied.\nmore")]
    with pytest.raises(MediaDownloadError) as raised:
        fast(endpoint).download("b", "o")
    assert str(raised.value) == "cannot download gs://b/o: HTTP 403 Access denied."
    assert len(script.seen) == 1


def test_corrupted_bytes_are_caught(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.replies = [(200, {"x-goog-hash": f"crc32c={crc32c_b64(b'the original')},md5=x"}, b"the 0riginal")]
    with pytest.raises(ChecksumMismatchError) as raised:
        fast(endpoint).download("b", "o")
    assert str(raised.value) == (
        f"gs://b/o: CRC32C of the 12 bytes received is {crc32c_b64(b'the 0riginal')}, "
        f"the server says {crc32c_b64(b'the original')}"
    )


def test_transcoded_objects_are_not_checked_against_the_stored_hash(server: tuple[str, Script]) -> None:
    endpoint, script = server
    headers = {"x-goog-hash": "crc32c=AAAAAA==", "x-goog-stored-content-encoding": "gzip"}
    script.replies = [(200, headers, b"decompressed by the server")]
    assert fast(endpoint).download("b", "o") == b"decompressed by the server"


def test_credentials_put_a_bearer_token_on_each_request(server: tuple[str, Script]) -> None:
    endpoint, script = server
    script.replies = [(200, {}, b"ok")]
    media = fast(endpoint, Credentials(token="token-123"))  # google-auth's own class, a static token
    media.download("b", "o")
    media.download("b", "o")
    assert [seen["authorization"] for seen in script.seen] == ["Bearer token-123"] * 2


def test_unreachable_endpoint_is_named() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MediaDownloadError) as raised:
        fast(f"http://127.0.0.1:{port}", retries=1).download("b", "o")
    assert str(raised.value).startswith("cannot download gs://b/o: NewConnectionError: ")
    assert "Connection refused" in str(raised.value)


def test_application_default_credentials_against_another_endpoint(
    server: tuple[str, Script], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production path, offline: ADC from a service-account key whose token endpoint is the loopback server,
    and ``API_ENDPOINT_OVERRIDE`` (as google-cloud-storage reads it) sending the downloads there too."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    endpoint, script = server
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": key.decode(),
        "client_email": "collector@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": f"{endpoint}/token",
    }))  # fmt: skip
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.setenv("API_ENDPOINT_OVERRIDE", endpoint)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    script.replies = [(200, {"x-goog-hash": f"crc32c={crc32c_b64(b'frame')}"}, b"frame")]

    media = MediaDownloader.from_settings(Settings(project="p", bucket="b"))
    assert media.endpoint == endpoint
    assert media.download("b", "o") == b"frame"
    assert media.download("b", "o") == b"frame"
    token_requests = [seen for seen in script.seen if "form" in seen]
    assert len(token_requests) == 1, "one refresh, then the token is reused"
    form = urllib.parse.parse_qs(token_requests[0]["form"])
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = json.loads(base64.urlsafe_b64decode(form["assertion"][0].split(".")[1] + "=="))
    assert claims["scope"] == "https://www.googleapis.com/auth/devstorage.read_only"
    assert [seen["authorization"] for seen in script.seen if "form" not in seen] == ["Bearer fresh-token"] * 2
