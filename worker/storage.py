"""Result storage: create-only writes of a frame's objects, duplicate detection.

Usage::

    store = ResultStore(storage_client.bucket("frames"))
    store.create(names.image, jpeg, "image/jpeg")   # False if it already existed (a redelivery)

Every write is create-only (``if_generation_match=0``): a redelivery that races the first
delivery finds the object there and leaves it, so at-least-once delivery gives one result per
frame. Storage trouble other than "already exists" becomes :class:`TransientError` so that the
push handler answers 503 and Pub/Sub redelivers.
"""

from __future__ import annotations

from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from framecontract.records import DetectionsRecord, ErrorRecord
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


class ResultStore:
    """Writes and checks a frame's result objects in one bucket."""

    def __init__(self, bucket: Any) -> None:
        self.bucket = bucket

    def create(self, name: str, data: bytes | str, content_type: str) -> bool:
        """Create ``name``; return False if it already existed (left unchanged)."""
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
