"""Cloud Storage's JSON API over one urllib3 pool: the hot paths of the worker (uploads) and collector (downloads).

Usage::

    transport = GcsTransport.from_settings(settings, scope=READ_WRITE_SCOPE)
    response = transport.request("POST", upload_url(transport.endpoint, "frames", name), body=data,
                                 headers={"Content-Type": "image/jpeg"}, methods_to_retry={"POST"})

Why not google-cloud-storage on these paths: its per-request Python work (requests scanning the
environment for proxies on every call, then its media, retry and tracing layers) costs several times
what one urllib3 request does, and it runs on the same cores as the model (worker) or the encoder
(collector). What the client library gives is kept:

- the same endpoint and credentials: the storage emulator from the settings (no credentials), else
  ``https://storage.googleapis.com`` (or ``API_ENDPOINT_OVERRIDE``) with Application Default
  Credentials, which google-auth adds and refreshes (one refresh at a time);
- retries with exponential backoff on connection errors, 408, 429 and 5xx (``Retry-After`` honoured);
- ``HTTPS_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE``, resolved once rather than per request.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3

from framecontract.settings import Settings

GCS_ENDPOINT = "https://storage.googleapis.com"
ENDPOINT_OVERRIDE_VARIABLE = "API_ENDPOINT_OVERRIDE"
"""Another Cloud Storage endpoint (with scheme), read as google-cloud-storage reads it."""
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
READ_WRITE_SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_RETRIES = 6
"""Attempts after the first: with backoff 0.5 s doubling (capped at 32 s), about a minute in all."""
TIMEOUT_S = urllib3.Timeout(connect=20.0, read=60.0)


def media_url(endpoint: str, bucket: str, name: str) -> str:
    """The JSON API media-download URL of an object (every character of the name that needs it is escaped).

    >>> media_url("https://storage.googleapis.com", "b", "jobs/a b/x.jpg")
    'https://storage.googleapis.com/download/storage/v1/b/b/o/jobs%2Fa%20b%2Fx.jpg?alt=media'
    """
    return f"{endpoint.rstrip('/')}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}?alt=media"


def create_only_upload_url(endpoint: str, bucket: str, name: str) -> str:
    """The JSON API simple-upload URL that creates ``name`` only if it does not exist (``ifGenerationMatch=0``).

    >>> create_only_upload_url("http://127.0.0.1:9023", "b", "jobs/x y.json")
    'http://127.0.0.1:9023/upload/storage/v1/b/b/o?uploadType=media&ifGenerationMatch=0&name=jobs%2Fx%20y.json'
    """
    return (f"{endpoint.rstrip('/')}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
            f"?uploadType=media&ifGenerationMatch=0&name={quote(name, safe='')}")


def proxy_for(endpoint: str) -> str | None:
    """The proxy the environment sets for ``endpoint`` (``HTTPS_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` names
    its host), read the way requests reads it — once, not on every request."""
    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(endpoint)
    if urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")


def ca_bundle(environ: Mapping[str, str] | None = None) -> str:
    """The CA bundle requests would use: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, else certifi's."""
    env = os.environ if environ is None else environ
    found = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if found:
        return found
    import certifi

    return certifi.where()


def error_message(body: bytes) -> str:
    """The ``error.message`` of a JSON API error body, or its first line (both cut to 200 characters)."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    return str(message)[:200]


def describe_failure(exc: BaseException) -> str:
    """``ExceptionType: reason`` of a urllib3 error (its inner reason when it has one)."""
    inner = getattr(exc, "reason", None)
    return f"{type(inner or exc).__name__}: {inner or exc}"


@dataclass
class GcsTransport:
    """One connection pool to Cloud Storage (or the emulator), with auth; thread-safe."""

    endpoint: str
    credentials: Any = None
    """google-auth credentials, or ``None`` for the emulator."""
    connections: int = 128
    """Connections kept open for reuse; more threads than this still work (extra connections are closed)."""
    retries: int = DEFAULT_RETRIES
    backoff_s: float = 0.5
    """Waits between attempts: none before the first retry, then 2x, 4x, 8x ... this, up to 32 s (urllib3's)."""
    timeout: urllib3.Timeout = TIMEOUT_S
    read_retries: int | None = None
    """Attempts after a request was sent and its answer did not come (read timeout, connection lost mid-request);
    ``None``: ``retries``. Each costs up to a whole read timeout, so a hung server is given fewer of them."""
    _pool: urllib3.PoolManager = field(init=False, repr=False)
    _auth_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _auth_request: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        options: dict[str, Any] = {"maxsize": max(self.connections, 1), "timeout": self.timeout}
        if self.endpoint.startswith("https:"):
            options["ca_certs"] = ca_bundle()
        proxy = proxy_for(self.endpoint)
        self._pool = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        if self.credentials is not None:
            from google.auth.transport.requests import Request

            self._auth_request = Request()  # used only to refresh the token

    @classmethod
    def from_settings(cls, settings: Settings, scope: str = READ_ONLY_SCOPE, **kwargs: Any) -> GcsTransport:
        """The storage emulator when ``settings`` name one, else Cloud Storage (``API_ENDPOINT_OVERRIDE`` if
        set) with Application Default Credentials for ``scope``.

        Raises ``google.auth.exceptions.DefaultCredentialsError`` when there are no credentials.
        """
        if settings.storage_emulator_host:
            return cls(settings.storage_emulator_host, None, **kwargs)
        import google.auth

        credentials, _ = google.auth.default(scopes=[scope])
        return cls(os.environ.get(ENDPOINT_OVERRIDE_VARIABLE) or GCS_ENDPOINT, credentials, **kwargs)

    def retry_policy(self, methods: Collection[str]) -> urllib3.Retry:
        """Backoff on connection errors and :data:`RETRY_STATUSES`, for ``methods`` only."""
        read = self.retries if self.read_retries is None else self.read_retries
        return urllib3.Retry(
            total=self.retries, connect=self.retries, read=read, status=self.retries,
            status_forcelist=RETRY_STATUSES, backoff_factor=self.backoff_s, backoff_max=32,
            respect_retry_after_header=True, raise_on_status=False, allowed_methods=frozenset(methods),
        )

    def headers(self, method: str, url: str) -> dict[str, str]:
        """The auth header (refreshed when needed) for one request."""
        headers: dict[str, str] = {}
        if self.credentials is not None:
            with self._auth_lock:  # one token refresh at a time; adds 'authorization'
                self.credentials.before_request(self._auth_request, method, url, headers)
        return headers

    def request(self, method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
                methods_to_retry: Collection[str] = ("GET",)) -> urllib3.BaseHTTPResponse:
        """One request with auth and retries; ``urllib3.exceptions.HTTPError`` when connecting keeps failing."""
        all_headers = self.headers(method, url) | dict(headers or {})
        return self._pool.request(method, url, body=body, headers=all_headers, preload_content=True,
                                  retries=self.retry_policy(methods_to_retry))
