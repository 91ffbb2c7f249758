"""Result storage: create-only writes of a frame's objects, duplicate detection.

Usage::

    store = ResultStore.from_settings(settings)     # or ResultStore(bucket) for the client library alone
    store.create(names.image, jpeg, "image/jpeg")   # False if it already existed (a redelivery)

Every write is create-only (``ifGenerationMatch=0``): a redelivery that races the first delivery
finds the object there and leaves it, so at-least-once delivery gives one result per frame. Storage
trouble other than "already exists" becomes :class:`TransientError` so that the push handler
answers 503 (pull: redelivery later) and Pub/Sub redelivers.

The two writes of every frame are simple (``uploadType=media``) uploads over
:class:`framecontract.gcshttp.GcsTransport`: measured here, google-cloud-storage's multipart
upload cost the worker more CPU per frame than the JPEG decode and encode together, and the storage
emulator parses a multipart body with Python's ``email`` package (``python -m deploy.bench`` shows
both; docs/worker.md). Reads (claim-checked payloads, readiness) stay on the client library.
"""

from __future__ import annotations

from typing import Any

import urllib3
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from framecontract.gcshttp import (
    READ_WRITE_SCOPE,
    GcsTransport,
    create_only_upload_url,
    describe_failure,
    error_message,
)
from framecontract.records import DetectionsRecord, ErrorRecord
from framecontract.settings import Settings
from worker.errors import PermanentFrameError, TransientError

# Bounded retries: the whole push must finish well inside the ack deadline.
STORAGE_RETRY = Retry(
    predicate=lambda exc: isinstance(
        exc, gexc.TooManyRequests | gexc.InternalServerError | gexc.ServiceUnavailable | gexc.GatewayTimeout
    ),
    initial=0.2,
    maximum=2.0,
    multiplier=2.0,
    timeout=15.0,
)
STORAGE_TIMEOUT_S = (5.0, 20.0)
READINESS_PROBE_PREFIX = "jobs/.readiness-probe/"
"""Never written: ``/readyz`` lists it and expects an empty answer."""
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
"""Largest claim-checked frame the worker downloads (its size is checked before the download)."""


UPLOAD_RETRIES = 5
"""Retries of one upload when storage refuses or resets the connection, or answers 408/429/5xx."""
UPLOAD_BACKOFF_S = 0.25
"""urllib3's backoff: no wait before the first retry, then 0.5, 1, 2, 4 s: one upload rides out 7.5 s of
refused connections before the frame fails as transient (and Pub/Sub redelivers it later)."""
UPLOAD_READ_RETRIES = 1
"""Retries after a request went unanswered: each costs a whole read timeout (a hung server)."""
UPLOAD_TIMEOUT = urllib3.Timeout(connect=5.0, read=10.0)
"""A simple upload of a frame's JPEG or record is answered in milliseconds; 10 s means trouble. With one read
retry, a hung storage holds an upload at most 20 s, a frame (two uploads) 40 s: inside the local push ack
deadline (60 s) unless the frame also waited its whole budget for the pipeline, and far inside Cloud Run's
(600 s). Figures and the arithmetic per fault: docs/faults.md."""


class ResultStore:
    """Writes and checks a frame's result objects in one bucket."""

    def __init__(self, bucket: Any, transport: GcsTransport | None = None) -> None:
        self.bucket = bucket
        self.transport = transport
        """Uploads go here when set; else through the client library (``bucket``)."""

    @classmethod
    def from_settings(cls, settings: Settings, storage_client: Any) -> ResultStore:
        """Uploads over a :class:`GcsTransport` to the settings' storage, reads through ``storage_client``."""
        transport = GcsTransport.from_settings(settings, READ_WRITE_SCOPE, retries=UPLOAD_RETRIES,
                                               backoff_s=UPLOAD_BACKOFF_S, read_retries=UPLOAD_READ_RETRIES,
                                               timeout=UPLOAD_TIMEOUT)
        return cls(storage_client.bucket(settings.bucket), transport)

    def create(self, name: str, data: bytes | str, content_type: str) -> bool:
        """Create ``name``; return False if it already existed (left unchanged)."""
        if self.transport is not None:
            return self._upload(name, data.encode() if isinstance(data, str) else data, content_type)
        try:
            self.bucket.blob(name).upload_from_string(
                data,
                content_type=content_type,
                if_generation_match=0,
                timeout=STORAGE_TIMEOUT_S,
                retry=STORAGE_RETRY,
            )
        except gexc.PreconditionFailed:
            return False
        except Exception as exc:  # noqa: BLE001
            raise TransientError(f"storage unavailable while writing {name}: {_describe(exc)}") from exc
        return True

    def _upload(self, name: str, data: bytes, content_type: str) -> bool:
        """One create-only simple upload. A retry after a lost answer finds the object there (412) and
        reports a duplicate: the object is the one this worker wrote either way."""
        assert self.transport is not None
        url = create_only_upload_url(self.transport.endpoint, self.bucket.name, name)
        try:
            response = self.transport.request("POST", url, body=data, headers={"Content-Type": content_type},
                                              methods_to_retry=("POST",))
        except urllib3.exceptions.HTTPError as exc:
            raise TransientError(f"storage unavailable while writing {name}: {describe_failure(exc)}"[:300]) from exc
        if response.status == 412:
            return False
        if response.status != 200:
            raise TransientError(f"storage unavailable while writing {name}: HTTP {response.status} "
                                 f"{error_message(response.data)}".rstrip()[:300])
        return True

    def create_record(self, name: str, record: DetectionsRecord | ErrorRecord) -> bool:
        """Create a result record (JSON); False if it already existed."""
        return self.create(name, record.to_json(), "application/json")

    def download_payload(self, name: str, max_bytes: int = MAX_PAYLOAD_BYTES) -> bytes:
        """A claim-checked frame from this bucket: its size checked first, then that generation downloaded.

        ``FileNotFoundError`` if it does not exist; :class:`PermanentFrameError` if it is too large.
        """
        try:
            blob = self.bucket.get_blob(name, timeout=STORAGE_TIMEOUT_S, retry=STORAGE_RETRY)
            if blob is None:
                raise FileNotFoundError(f"gs://{self.bucket.name}/{name}")
            if blob.size is not None and blob.size > max_bytes:
                raise PermanentFrameError(f"claim-checked payload is {blob.size} bytes; at most {max_bytes}")
            return blob.download_as_bytes(
                if_generation_match=blob.generation, timeout=STORAGE_TIMEOUT_S, retry=STORAGE_RETRY
            )
        except gexc.NotFound:
            raise FileNotFoundError(f"gs://{self.bucket.name}/{name}") from None
        except (FileNotFoundError, PermanentFrameError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise TransientError(f"storage unavailable while reading {name}: {_describe(exc)}") from exc

    def check_reachable(self) -> str | None:
        """``None`` if the bucket answers, else why not (for ``/readyz``).

        A listing of a prefix that holds nothing: it proves the bucket exists and is readable with the
        worker's own (object-level) permissions, and costs the same whatever the bucket holds.
        """
        try:
            found = self.bucket.client.list_blobs(self.bucket.name, prefix=READINESS_PROBE_PREFIX, max_results=1,
                                                  timeout=(2.0, 5.0), retry=None)
            list(found)
        except gexc.NotFound:
            return f"storage unreachable: NotFound: bucket {self.bucket.name!r} does not exist"
        except Exception as exc:  # noqa: BLE001
            return f"storage unreachable: {_describe(exc)}"
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
