"""Push authentication with real tokens: a key generated here, certificates served here over HTTP.

Usage::

    .venv/bin/pytest tests/worker/test_push_auth.py -q

Tokens are signed with ``google.auth.crypt.RSASigner`` + ``google.auth.jwt.encode``; the matching
X.509 certificate is served as ``{kid: pem}`` (Google's v1 certs format) by a real HTTP server on
127.0.0.1 in a thread. Nothing in the verification is mocked; only the cache's clock is driven in
the cache tests. The app-level tests at the end run once ``worker/app.py`` wires push auth in
(``WorkerConfig.push_auth``); until then they are skipped with that reason.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from worker import auth
from worker.auth import AuthError, CertCache, PushAuthConfig, PushAuthVerifier, cache_ttl_s

AUDIENCE = "https://worker-test.a.run.app/pubsub/push"
PUSHER = "pusher@test-project.iam.gserviceaccount.com"
KID = "test-kid-1"


# --- keys, certificates, tokens ---------------------------------------------------------------


@dataclasses.dataclass
class Key:
    private_pem: bytes
    cert_pem: str

    @functools.cached_property
    def signer(self) -> crypt.RSASigner:
        """Loading a private key is slow (cryptography checks it): once per key."""
        return crypt.RSASigner.from_string(self.private_pem)


def make_key(common_name: str = "test-signer") -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=14))
        .sign(private, hashes.SHA256())
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Key(private_pem, cert.public_bytes(serialization.Encoding.PEM).decode())


@pytest.fixture(scope="session")
def google_key() -> Key:
    return make_key("google-stand-in")


@pytest.fixture(scope="session")
def other_key() -> Key:
    return make_key("attacker")


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a Pub/Sub push token (as Google mints them), with overrides; None removes one."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "https://accounts.google.com", "aud": AUDIENCE, "azp": "1234567890",
        "email": PUSHER, "email_verified": True, "sub": "1234567890", "iat": now, "exp": now + 3600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: Key, payload: dict[str, Any], kid: str | None = KID) -> str:
    return jwt.encode(key.signer, payload, key_id=kid).decode()  # key_id=None: no kid header


def b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- the certificate server ---------------------------------------------------------------------


class CertServer:
    """Serves ``certs`` as JSON on 127.0.0.1 with ``Cache-Control: max-age``; counts GETs."""

    def __init__(self, certs: dict[str, str], max_age_s: int = 3600) -> None:
        self.certs = certs
        self.max_age_s = max_age_s
        self.status = 200
        self.body: bytes | None = None  # overrides the JSON when set
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests += 1
                body = server.body if server.body is not None else json.dumps(server.certs).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={server.max_age_s}, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/oauth2/v1/certs"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="cert-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def cert_server(google_key: Key) -> Iterator[CertServer]:
    server = CertServer({KID: google_key.cert_pem})
    try:
        yield server
    finally:
        server.stop()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/oauth2/v1/certs"


def config_for(certs_url: str, **overrides: Any) -> PushAuthConfig:
    values: dict[str, Any] = {"audience": AUDIENCE, "allowed_emails": frozenset({PUSHER}), "certs_url": certs_url}
    values.update(overrides)
    return PushAuthConfig(**values)


@pytest.fixture
def verifier(cert_server: CertServer) -> PushAuthVerifier:
    return PushAuthVerifier(config_for(cert_server.url))


def refusal(verifier: PushAuthVerifier, header: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(header)
    return caught.value


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- accepted -----------------------------------------------------------------------------------


def test_valid_token_is_accepted_and_returns_its_claims(verifier, google_key) -> None:
    got = verifier.verify(bearer(sign(google_key, claims())))
    assert got["email"] == PUSHER and got["aud"] == AUDIENCE and got["email_verified"] is True


@pytest.mark.parametrize("issuer", ["accounts.google.com", "https://accounts.google.com"])
def test_both_google_issuer_spellings_are_accepted(verifier, google_key, issuer) -> None:
    assert verifier.verify(bearer(sign(google_key, claims(iss=issuer))))["iss"] == issuer


def test_scheme_is_case_insensitive(verifier, google_key) -> None:
    assert verifier.verify("bearer " + sign(google_key, claims()))["email"] == PUSHER


def test_expiry_within_the_clock_skew_is_accepted(verifier, google_key) -> None:
    now = int(time.time())
    token = sign(google_key, claims(iat=now - 3600, exp=now - 5))  # skew is 10 s
    assert verifier.verify(bearer(token))["email"] == PUSHER


def test_any_of_several_allowed_service_accounts(cert_server, google_key) -> None:
    other = "second@test-project.iam.gserviceaccount.com"
    verifier = PushAuthVerifier(config_for(cert_server.url, allowed_emails=frozenset({PUSHER, other})))
    assert verifier.verify(bearer(sign(google_key, claims(email=other))))["email"] == other


# --- refused: header and token shape ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, auth.MISSING_HEADER),
        ("", auth.MISSING_HEADER),
        ("   ", auth.MISSING_HEADER),
        ("Basic dXNlcjpwYXNz", auth.NOT_BEARER),
        ("Token abc.def.ghi", auth.NOT_BEARER),
        ("Bearer", auth.MALFORMED_BEARER),
        ("Bearer ", auth.MALFORMED_BEARER),
        ("Bearer abc def", auth.MALFORMED_BEARER),
        ("Bearer a\"b", auth.MALFORMED_BEARER),
        ("Bearer garbage", auth.NOT_A_JWT),
        ("Bearer a.b.c", auth.NOT_A_JWT),
        ("Bearer eyJhbGciOiJSUzI1NiJ9.e30", auth.NOT_A_JWT),
        ("Bearer bm90IGpzb24.e30.c2ln", auth.NOT_A_JWT),
    ],
)
def test_malformed_credentials_are_401(verifier, cert_server, header, reason) -> None:
    error = refusal(verifier, header)
    assert (error.status, error.reason) == (401, reason)
    assert cert_server.requests == 0  # refused before any certificate is needed


def test_missing_token_challenge_has_no_error_code(verifier) -> None:
    """RFC 6750 section 3.1: a request without credentials gets a bare challenge."""
    assert refusal(verifier, None).headers() == {"WWW-Authenticate": 'Bearer realm="pubsub-push"'}


def test_unsupported_algorithms_are_401(verifier, google_key) -> None:
    header_none = b64url(b'{"alg":"none","kid":"test-kid-1"}').decode()
    body = b64url(json.dumps(claims()).encode()).decode()
    error = refusal(verifier, bearer(f"{header_none}.{body}."))
    assert (error.status, error.reason) == (401, auth.UNSUPPORTED_ALG)
    header_hs = b64url(b'{"alg":"HS256","kid":"test-kid-1"}').decode()
    error = refusal(verifier, bearer(f"{header_hs}.{body}.c2ln"))
    assert (error.status, error.reason) == (401, auth.UNSUPPORTED_ALG)


def test_token_without_kid_is_401(verifier, google_key) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(), kid=None)))
    assert (error.status, error.reason) == (401, auth.NO_KID)


# --- refused: signature, key, time --------------------------------------------------------------


def test_token_signed_by_another_key_under_a_known_kid_is_401(verifier, other_key) -> None:
    error = refusal(verifier, bearer(sign(other_key, claims())))
    assert (error.status, error.reason) == (401, auth.BAD_SIGNATURE)
    assert error.headers()["WWW-Authenticate"] == (
        f'Bearer realm="pubsub-push", error="invalid_token", error_description="{auth.BAD_SIGNATURE}"'
    )


def test_tampered_payload_is_401(verifier, google_key) -> None:
    head, _, signature = sign(google_key, claims()).split(".")
    forged = b64url(json.dumps(claims(email="evil@x.com")).encode()).decode()
    error = refusal(verifier, bearer(f"{head}.{forged}.{signature}"))
    assert (error.status, error.reason) == (401, auth.BAD_SIGNATURE)


def test_unknown_kid_is_401(verifier, google_key) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(), kid="no-such-kid")))
    assert (error.status, error.reason) == (401, auth.UNKNOWN_KID)


def test_expired_token_is_401(verifier, google_key) -> None:
    now = int(time.time())
    error = refusal(verifier, bearer(sign(google_key, claims(iat=now - 7200, exp=now - 3600))))
    assert (error.status, error.reason) == (401, auth.EXPIRED)
    assert 'error="invalid_token"' in error.headers()["WWW-Authenticate"]


def test_token_issued_in_the_future_is_401(verifier, google_key) -> None:
    now = int(time.time())
    error = refusal(verifier, bearer(sign(google_key, claims(iat=now + 600, exp=now + 4200))))
    assert (error.status, error.reason) == (401, auth.NOT_YET_VALID)


@pytest.mark.parametrize("missing", ["iat", "exp"])
def test_token_without_iat_or_exp_is_401(verifier, google_key, missing) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(**{missing: None}))))
    assert (error.status, error.reason) == (401, auth.MISSING_TIMES)


# --- refused: claims ----------------------------------------------------------------------------


@pytest.mark.parametrize("issuer", ["https://evil.example.com", "accounts.google.com.evil", None])
def test_wrong_issuer_is_401(verifier, google_key, issuer) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(iss=issuer))))
    assert (error.status, error.reason) == (401, auth.WRONG_ISSUER)


@pytest.mark.parametrize("audience", ["https://other-service.a.run.app/pubsub/push", AUDIENCE + "/", [AUDIENCE], None])
def test_wrong_audience_is_401(verifier, google_key, audience) -> None:
    """A token minted for another recipient is not a credential here at all (RFC 7519 4.1.3)."""
    error = refusal(verifier, bearer(sign(google_key, claims(aud=audience))))
    assert (error.status, error.reason) == (401, auth.WRONG_AUDIENCE)
    assert 'error="invalid_token"' in error.headers()["WWW-Authenticate"]


@pytest.mark.parametrize("email", ["someone-else@test-project.iam.gserviceaccount.com", PUSHER.upper(), None])
def test_email_not_allowed_is_403(verifier, google_key, email) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(email=email))))
    assert (error.status, error.reason) == (403, auth.EMAIL_NOT_ALLOWED)
    assert error.headers()["WWW-Authenticate"] == (
        f'Bearer realm="pubsub-push", error="insufficient_scope", error_description="{auth.EMAIL_NOT_ALLOWED}"'
    )


@pytest.mark.parametrize("verified", [False, "true", None])
def test_unverified_email_is_403(verifier, google_key, verified) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(email_verified=verified))))
    assert (error.status, error.reason) == (403, auth.EMAIL_NOT_VERIFIED)


def test_refusal_detail_is_for_logs_not_the_body(verifier, google_key) -> None:
    error = refusal(verifier, bearer(sign(google_key, claims(email="intruder@x.com"))))
    assert "intruder@x.com" in (error.detail or "") and "intruder" not in error.reason


# --- certificate cache and transient failures ---------------------------------------------------


def test_certificates_are_fetched_once_for_many_verifications(verifier, cert_server, google_key, other_key) -> None:
    for index in range(50):
        assert verifier.verify(bearer(sign(google_key, claims(sub=str(index)))))["sub"] == str(index)
    refusal(verifier, bearer(sign(other_key, claims())))
    refusal(verifier, bearer(sign(google_key, claims(aud="https://elsewhere"))))
    assert cert_server.requests == 1


def test_unknown_kids_do_not_make_every_request_fetch(verifier, cert_server, google_key) -> None:
    verifier.verify(bearer(sign(google_key, claims())))
    for index in range(20):
        assert refusal(verifier, bearer(sign(google_key, claims(), kid=f"forged-{index}"))).status == 401
    assert cert_server.requests == 1  # the refetch-on-unknown-kid is rate limited (60 s)


def test_cert_server_down_is_transient_503(google_key) -> None:
    verifier = PushAuthVerifier(config_for(closed_port_url()))
    error = refusal(verifier, bearer(sign(google_key, claims())))
    assert (error.status, error.reason) == (503, auth.CERTS_UNAVAILABLE)
    assert error.headers() == {"Retry-After": "5"}
    started = time.perf_counter()
    assert refusal(verifier, bearer(sign(google_key, claims()))).status == 503  # fails fast in the backoff
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, None), (404, None), (200, b"<html>not json</html>"), (200, b'{"keys": []}'), (200, b"{}")],
)
def test_cert_server_errors_and_garbage_are_transient_503(cert_server, google_key, status, body) -> None:
    cert_server.status, cert_server.body = status, body
    error = refusal(PushAuthVerifier(config_for(cert_server.url)), bearer(sign(google_key, claims())))
    assert (error.status, error.reason) == (503, auth.CERTS_UNAVAILABLE)


def test_cache_control_max_age_is_honoured(cert_server, google_key) -> None:
    cert_server.max_age_s = 120
    clock = FakeClock()
    verifier = PushAuthVerifier(
        config_for(cert_server.url), certs=CertCache(cert_server.url, clock=clock)
    )
    token = bearer(sign(google_key, claims()))
    verifier.verify(token)
    clock.now += 119
    verifier.verify(token)
    assert cert_server.requests == 1
    clock.now += 2
    verifier.verify(token)
    assert cert_server.requests == 2


def test_rotated_key_is_picked_up_by_a_refetch(cert_server, google_key, other_key) -> None:
    clock = FakeClock()
    verifier = PushAuthVerifier(config_for(cert_server.url), certs=CertCache(cert_server.url, clock=clock))
    verifier.verify(bearer(sign(google_key, claims())))
    cert_server.certs = {KID: google_key.cert_pem, "test-kid-2": other_key.cert_pem}  # Google rotates
    rotated = bearer(sign(other_key, claims(), kid="test-kid-2"))
    assert refusal(verifier, rotated).reason == auth.UNKNOWN_KID  # within 60 s of the last fetch
    clock.now += 61
    assert verifier.verify(rotated)["email"] == PUSHER
    assert cert_server.requests == 2


def test_stale_certificates_bridge_a_cert_server_outage(cert_server, google_key) -> None:
    cert_server.max_age_s = 300
    clock = FakeClock()
    verifier = PushAuthVerifier(config_for(cert_server.url), certs=CertCache(cert_server.url, clock=clock))
    token = bearer(sign(google_key, claims()))
    verifier.verify(token)
    cert_server.status = 503
    clock.now += 301
    assert verifier.verify(token)["email"] == PUSHER  # refresh failed, cached copy still used
    assert cert_server.requests == 2
    clock.now += 3600
    assert refusal(verifier, token).status == 503  # too stale to trust
    cert_server.status = 200
    clock.now += 6  # past the retry backoff
    assert verifier.verify(token)["email"] == PUSHER


@pytest.mark.parametrize(
    ("headers", "ttl"),
    [
        ({"Cache-Control": "public, max-age=19204, must-revalidate, no-transform"}, 19204),
        ({"cache-control": "max-age=600", "Age": "100"}, 500),
        ({"Cache-Control": "no-cache"}, 300),
        ({"Cache-Control": "max-age=0"}, 60),
        ({"Cache-Control": "max-age=999999"}, 86400),
        ({"Cache-Control": "max-age=600", "Age": "bogus"}, 600),
        ({}, 300),
    ],
)
def test_cache_ttl_from_headers(headers, ttl) -> None:
    assert cache_ttl_s(headers, default_s=300, min_s=60, max_s=86400) == ttl


# --- configuration ------------------------------------------------------------------------------


def test_from_env_refuses_to_guess_when_nothing_is_configured() -> None:
    with pytest.raises(ValueError) as err:
        PushAuthConfig.from_env({})
    assert str(err.value) == auth.NOT_CONFIGURED
    assert str(err.value).startswith("push authentication is not configured: set WORKER_PUSH_AUDIENCE and ")


def test_running_without_push_auth_is_an_explicit_choice() -> None:
    config = PushAuthConfig.from_env({"WORKER_PUSH_AUTH": "off"})
    assert not config.enabled and config.audience is None and config.allowed_emails == frozenset()
    assert not PushAuthVerifier(config).enabled
    with pytest.raises(ValueError, match="choose one"):
        PushAuthConfig.from_env({"WORKER_PUSH_AUTH": "off", "WORKER_PUSH_AUDIENCE": AUDIENCE})
    with pytest.raises(ValueError, match="must be 'on' or 'off'"):
        PushAuthConfig.from_env({"WORKER_PUSH_AUTH": "maybe"})


def test_an_app_started_from_the_environment_without_the_choice_does_not_start(gcs_settings, pipeline) -> None:
    from worker.app import WorkerConfig

    env = gcs_settings.to_env()
    with pytest.raises(ValueError, match="push authentication is not configured"):
        WorkerConfig.from_env(env)
    assert not WorkerConfig.from_env(env | {"WORKER_PUSH_AUTH": "off"}).push_auth.enabled


def test_from_env_reads_audience_and_comma_separated_service_accounts() -> None:
    config = PushAuthConfig.from_env({
        "WORKER_PUSH_AUDIENCE": f" {AUDIENCE} ",
        "WORKER_PUSH_SERVICE_ACCOUNTS": f"{PUSHER.upper()}, second@p.iam.gserviceaccount.com,,",
        "WORKER_PUSH_CLOCK_SKEW_S": "30",
    })
    assert config == PushAuthConfig(
        AUDIENCE, frozenset({PUSHER, "second@p.iam.gserviceaccount.com"}), auth.GOOGLE_CERTS_URL, 30
    )
    assert config.enabled


@pytest.mark.parametrize(
    "env",
    [
        {"WORKER_PUSH_AUDIENCE": AUDIENCE},  # audience alone authenticates nobody
        {"WORKER_PUSH_SERVICE_ACCOUNTS": PUSHER},  # would look on but be off
        {"WORKER_PUSH_AUDIENCE": AUDIENCE, "WORKER_PUSH_SERVICE_ACCOUNTS": PUSHER, "WORKER_PUSH_CLOCK_SKEW_S": "x"},
        {"WORKER_PUSH_AUDIENCE": AUDIENCE, "WORKER_PUSH_SERVICE_ACCOUNTS": PUSHER, "WORKER_PUSH_CLOCK_SKEW_S": "-1"},
    ],
)
def test_from_env_refuses_half_configurations(env) -> None:
    with pytest.raises(ValueError):
        PushAuthConfig.from_env(env)


def test_verify_on_a_disabled_verifier_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        PushAuthVerifier(PushAuthConfig()).verify(None)


# --- app level ----------------------------------------------------------------------------------


def blank_attributes(index: int) -> dict[str, str]:
    """Attributes of frame ``index`` of job-auth, sized as ``blank_jpeg()`` (64x48)."""
    from tests.worker.conftest import frame_attributes

    return frame_attributes("job-auth", index, width=64, height=48)


class StubPipeline:
    """Stands in for the model: no detections, the image passed through."""

    model_name = "stub"

    def __init__(self) -> None:
        self.calls = 0

    def run(self, image: np.ndarray, timings: dict[str, float] | None = None) -> dict[str, Any]:
        self.calls += 1
        return {"img": image, "bboxes": np.zeros((0, 4)), "bbox_labels": [], "bbox_scores": []}


def _app(gcs_settings, push_auth: PushAuthConfig) -> tuple[Any, StubPipeline]:
    from worker.app import WorkerConfig, create_app

    stub = StubPipeline()
    config = WorkerConfig(settings=gcs_settings, json_logs=False, warmup=False, push_auth=push_auth)
    return create_app(config, pipeline=stub).test_client(), stub


def _objects(gcs_settings) -> list[str]:
    from framecontract.clients import make_storage_client

    client = make_storage_client(gcs_settings)
    return sorted(b.name for b in client.list_blobs(gcs_settings.bucket))


def test_app_accepts_a_valid_token_and_processes_the_frame(gcs_settings, cert_server, google_key) -> None:
    from tests.worker.conftest import blank_jpeg, push_envelope

    client, stub = _app(gcs_settings, config_for(cert_server.url))
    response = client.post(
        "/pubsub/push", json=push_envelope(blank_jpeg(), blank_attributes(0)),
        headers={"Authorization": bearer(sign(google_key, claims()))},
    )
    assert response.status_code == 204, response.get_data(as_text=True)
    assert stub.calls == 1 and len(_objects(gcs_settings)) == 2


@pytest.mark.parametrize(
    ("make_header", "status", "reason", "challenge"),
    [
        (lambda key: None, 401, auth.MISSING_HEADER, 'Bearer realm="pubsub-push"'),
        (lambda key: "Bearer garbage", 401, auth.NOT_A_JWT, "invalid_token"),
        (lambda key: bearer(sign(key, claims(aud="https://elsewhere"))), 401, auth.WRONG_AUDIENCE, "invalid_token"),
        (lambda key: bearer(sign(key, claims(email="x@y.z"))), 403, auth.EMAIL_NOT_ALLOWED, "insufficient_scope"),
    ],
)
def test_app_refuses_before_touching_the_frame(
    gcs_settings, cert_server, google_key, make_header, status, reason, challenge
) -> None:
    from tests.worker.conftest import blank_jpeg, push_envelope

    client, stub = _app(gcs_settings, config_for(cert_server.url))
    header = make_header(google_key)
    response = client.post(
        "/pubsub/push", json=push_envelope(blank_jpeg(), blank_attributes(1)),
        headers={"Authorization": header} if header is not None else {},
    )
    assert response.status_code == status
    assert response.get_json() == {"error": reason}
    assert challenge in response.headers["WWW-Authenticate"]
    assert stub.calls == 0 and _objects(gcs_settings) == []


def test_app_answers_503_with_retry_after_when_certs_are_unreachable(gcs_settings, google_key) -> None:
    from tests.worker.conftest import blank_jpeg, push_envelope

    client, stub = _app(gcs_settings, config_for(closed_port_url()))
    response = client.post(
        "/pubsub/push", json=push_envelope(blank_jpeg(), blank_attributes(2)),
        headers={"Authorization": bearer(sign(google_key, claims()))},
    )
    assert response.status_code == 503
    assert response.get_json() == {"error": auth.CERTS_UNAVAILABLE}
    assert response.headers["Retry-After"] == "5"
    assert stub.calls == 0


def test_app_with_auth_on_leaves_the_health_probe_open(gcs_settings, cert_server) -> None:
    client, _ = _app(gcs_settings, config_for(cert_server.url))
    assert client.get("/healthz").status_code == 200
    assert cert_server.requests == 0


def test_app_with_auth_off_accepts_tokenless_pushes_like_the_emulator_sends(gcs_settings) -> None:
    from tests.worker.conftest import blank_jpeg, push_envelope

    client, stub = _app(gcs_settings, PushAuthConfig())
    response = client.post("/pubsub/push", json=push_envelope(blank_jpeg(), blank_attributes(3)))
    assert response.status_code == 204, response.get_data(as_text=True)
    assert stub.calls == 1
