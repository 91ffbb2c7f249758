"""Object downloads over Cloud Storage's JSON API media endpoint: urllib3 + google-auth, checksummed.

Usage::

    media = MediaDownloader.from_settings(settings)
    data = media.download("frames-bucket", "jobs/demo/frames/3/00000000000000700000-000000007.jpg")

Why not ``Blob.download_as_bytes()``: reassembly makes two GETs per frame from many threads,
and the per-request Python work holds the GIL. google-cloud-storage spends ≈ 2.2 ms of CPU per
GET here (requests scans the environment for proxies on every request, then its media, retry and
tracing layers); one urllib3 request spends ≈ 0.65 ms (``python -m collector.bench`` has the
effect on reassembly; docs/collector.md). What the client library gives is kept:

- the same endpoint and credentials: ``STORAGE_EMULATOR_HOST`` (no credentials) or
  ``https://storage.googleapis.com`` with Application Default Credentials (google-auth adds and
  refreshes the token, read-only scope);
- retries with exponential backoff on connection errors, 408, 429 and 5xx (``Retry-After`` honoured);
- the ``x-goog-hash`` CRC32C of every download is verified (:class:`ChecksumMismatchError`);
- ``HTTPS_PROXY``/``NO_PROXY`` and ``REQUESTS_CA_BUNDLE``, resolved once rather than per request.

Errors name the object and the status: :class:`ObjectNotFoundError` (404), :class:`MediaDownloadError`.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import google_crc32c
import urllib3

from framecontract.layout import gs_uri
from framecontract.settings import Settings

GCS_ENDPOINT = "https://storage.googleapis.com"
ENDPOINT_OVERRIDE_VARIABLE = "API_ENDPOINT_OVERRIDE"
"""Another Cloud Storage endpoint (with scheme), read as google-cloud-storage reads it."""
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_RETRIES = 6
"""Attempts after the first: with backoff 0.5 s doubling (capped at 32 s), about a minute in all."""
TIMEOUT_S = urllib3.Timeout(connect=20.0, read=60.0)


class MediaDownloadError(RuntimeError):
    """A download that failed for good (after retries), with the object and the reason."""


class ObjectNotFoundError(MediaDownloadError):
    """The object does not exist (404)."""


class ChecksumMismatchError(MediaDownloadError):
    """The bytes received do not match the CRC32C the server sent."""


def media_url(endpoint: str, bucket: str, name: str) -> str:
    """The JSON API media-download URL of an object (every character of the name that needs it is escaped).

    >>> media_url("https://storage.googleapis.com", "b", "jobs/a b/x.jpg")
    'https://storage.googleapis.com/download/storage/v1/b/b/o/jobs%2Fa%20b%2Fx.jpg?alt=media'
    """
    return f"{endpoint.rstrip('/')}/download/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}?alt=media"


def crc32c_from_header(x_goog_hash: str | None) -> str | None:
    """The base64 CRC32C in an ``x-goog-hash`` header (``crc32c=...,md5=...``), or ``None``.

    >>> crc32c_from_header("crc32c=n03x6A==,md5=XrY7u+Ae7tCTyyK7j1rNww==")
    'n03x6A=='
    """
    for part in (x_goog_hash or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "crc32c" and value:
            return value
    return None


def crc32c_b64(data: bytes) -> str:
    """CRC32C of ``data``, big-endian and base64 as Cloud Storage writes it."""
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


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


@dataclass
class MediaDownloader:
    """Downloads whole objects; thread-safe (one connection pool shared by the download threads)."""

    endpoint: str
    credentials: Any = None
    """google-auth credentials, or ``None`` for the emulator."""
    connections: int = 128
    """Connections kept open for reuse; more threads than this still work (extra connections are closed)."""
    retries: int = DEFAULT_RETRIES
    backoff_s: float = 0.5
    """First wait between attempts; it doubles each time, up to 32 s."""
    _pool: urllib3.PoolManager = field(init=False, repr=False)
    _auth_lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _auth_request: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        retry = urllib3.Retry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=self.backoff_s,
            backoff_max=32,
            respect_retry_after_header=True,
            raise_on_status=False,
            allowed_methods={"GET"},
        )
        options: dict[str, Any] = {"maxsize": max(self.connections, 1), "retries": retry, "timeout": TIMEOUT_S}
        if self.endpoint.startswith("https:"):
            options["ca_certs"] = ca_bundle()
        proxy = proxy_for(self.endpoint)
        self._pool = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
        if self.credentials is not None:
            from google.auth.transport.requests import Request

            self._auth_request = Request()  # used only to refresh the token

    @classmethod
    def from_settings(cls, settings: Settings, connections: int = 128) -> MediaDownloader:
        """The storage emulator when ``settings`` name one, else Cloud Storage (``API_ENDPOINT_OVERRIDE`` if set)
        with Application Default Credentials.

        Raises ``google.auth.exceptions.DefaultCredentialsError`` when there are no credentials.
        """
        if settings.storage_emulator_host:
            return cls(settings.storage_emulator_host, None, connections)
        import google.auth

        credentials, _ = google.auth.default(scopes=[READ_ONLY_SCOPE])
        return cls(os.environ.get(ENDPOINT_OVERRIDE_VARIABLE) or GCS_ENDPOINT, credentials, connections)

    def _headers(self, url: str) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.credentials is not None:
            with self._auth_lock:  # one token refresh at a time; adds 'authorization'
                self.credentials.before_request(self._auth_request, "GET", url, headers)
        return headers

    def download(self, bucket: str, name: str) -> bytes:
        """The object's bytes; :class:`ObjectNotFoundError`, :class:`MediaDownloadError` or
        :class:`ChecksumMismatchError` with ``gs://bucket/name`` in the message."""
        url = media_url(self.endpoint, bucket, name)
        try:
            response = self._pool.request("GET", url, headers=self._headers(url), preload_content=True)
        except urllib3.exceptions.HTTPError as exc:  # retries exhausted on connection errors
            raise MediaDownloadError(f"cannot download {gs_uri(bucket, name)}: {_reason(exc)}") from None
        if response.status == 404:
            raise ObjectNotFoundError(f"{gs_uri(bucket, name)} does not exist")
        if response.status != 200:
            raise MediaDownloadError(
                f"cannot download {gs_uri(bucket, name)}: HTTP {response.status} "
                f"{_error_message(response.data)}".rstrip()
            )
        data: bytes = response.data
        expected = crc32c_from_header(response.headers.get("x-goog-hash"))
        transcoded = response.headers.get("x-goog-stored-content-encoding", "identity") != "identity"
        if expected is not None and not transcoded and crc32c_b64(data) != expected:
            raise ChecksumMismatchError(
                f"{gs_uri(bucket, name)}: CRC32C of the {len(data)} bytes received "
                f"is {crc32c_b64(data)}, the server says {expected}"
            )
        return data


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return f"{type(inner or exc).__name__}: {inner or exc}"


def _error_message(body: bytes) -> str:
    """The ``error.message`` of a JSON API error body, or its first line (both cut to 200 characters)."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode("utf-8", "replace").strip().splitlines()[0] if body.strip() else ""
    return str(message)[:200]
