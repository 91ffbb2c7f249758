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

import json
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry

from worker.errors import TransientError

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

    def create_json(self, name: str, record: dict[str, Any]) -> bool:
        return self.create(name, json.dumps(record, separators=(",", ":")), "application/json")

    def download(self, bucket_name: str, name: str) -> bytes:
        """Download a claim-checked payload; NotFound is returned as ``FileNotFoundError``."""
        try:
            return self.bucket.client.bucket(bucket_name).blob(name).download_as_bytes(
                timeout=STORAGE_TIMEOUT_S, retry=STORAGE_RETRY
            )
        except gexc.NotFound:
            raise FileNotFoundError(f"gs://{bucket_name}/{name}") from None
        except Exception as exc:  # noqa: BLE001
            raise TransientError(f"storage unavailable while reading {name}: {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
