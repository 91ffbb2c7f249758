"""Object downloads over Cloud Storage's JSON API media endpoint: urllib3 + google-auth, checksummed.

Usage::

    media = MediaDownloader.from_settings(settings)      # on framecontract.gcshttp.GcsTransport
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
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import urllib3

from framecontract.gcshttp import (
    GCS_ENDPOINT,
    READ_ONLY_SCOPE,
    GcsTransport,
    ca_bundle,
    describe_failure,
    error_message,
    media_url,
    proxy_for,
)
from framecontract.layout import gs_uri
from framecontract.settings import Settings

__all__ = [
    "GCS_ENDPOINT", "ChecksumMismatchError", "MediaDownloadError", "MediaDownloader", "ObjectNotFoundError",
    "ca_bundle", "crc32c_b64", "crc32c_from_header", "media_url", "proxy_for",
]


class MediaDownloadError(RuntimeError):
    """A download that failed for good (after retries), with the object and the reason."""


class ObjectNotFoundError(MediaDownloadError):
    """The object does not exist (404)."""


class ChecksumMismatchError(MediaDownloadError):
    """The bytes received do not match the CRC32C the server sent."""


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


@dataclass
class MediaDownloader:
    """Downloads whole objects; thread-safe (one connection pool shared by the download threads)."""

    endpoint: str
    credentials: Any = None
    """google-auth credentials, or ``None`` for the emulator."""
    connections: int = 128
    """Connections kept open for reuse; more threads than this still work (extra connections are closed)."""
    retries: int = 6
    backoff_s: float = 0.5
    """First wait between attempts; it doubles each time, up to 32 s."""
    transport: GcsTransport = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.transport = GcsTransport(self.endpoint, self.credentials, self.connections, self.retries, self.backoff_s)

    @classmethod
    def from_settings(cls, settings: Settings, connections: int = 128) -> MediaDownloader:
        """The storage emulator when ``settings`` name one, else Cloud Storage (``API_ENDPOINT_OVERRIDE`` if set)
        with Application Default Credentials (read-only scope).

        Raises ``google.auth.exceptions.DefaultCredentialsError`` when there are no credentials.
        """
        transport = GcsTransport.from_settings(settings, READ_ONLY_SCOPE, connections=connections)
        return cls(transport.endpoint, transport.credentials, connections)

    def download(self, bucket: str, name: str) -> bytes:
        """The object's bytes; :class:`ObjectNotFoundError`, :class:`MediaDownloadError` or
        :class:`ChecksumMismatchError` with ``gs://bucket/name`` in the message."""
        url = media_url(self.endpoint, bucket, name)
        try:
            response = self.transport.request("GET", url)
        except urllib3.exceptions.HTTPError as exc:  # retries exhausted on connection errors
            raise MediaDownloadError(f"cannot download {gs_uri(bucket, name)}: {describe_failure(exc)}") from None
        if response.status == 404:
            raise ObjectNotFoundError(f"{gs_uri(bucket, name)} does not exist")
        if response.status != 200:
            raise MediaDownloadError(
                f"cannot download {gs_uri(bucket, name)}: HTTP {response.status} "
                f"{error_message(response.data)}".rstrip()
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
