"""The producer's objects in GCS: the job manifest and claim-checked payloads.

Usage::

    store = JobWriter(make_storage_client(settings), settings.bucket)
    store.create_manifest(manifest)        # refuses a job id that already has a manifest
    store.put_payload(name, jpeg_bytes)    # create-only; already there is fine
    store.write_heartbeat(manifest.beat(120, 0, 11_900_000))   # every few seconds while running
    store.update_manifest(manifest.finish("complete", frames_published=795))
    store.read_manifest("demo")            # None if the job does not exist (--resume)
"""

from __future__ import annotations

import contextlib
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.cloud.storage.retry import DEFAULT_RETRY

from framecontract.layout import gs_uri, manifest_name
from framecontract.manifest import InvalidManifestError, Manifest
from producer.errors import (
    InputError,
    JobExistsError,
    ManifestWriteError,
    ResourceNotFoundError,
    ServiceUnavailableError,
)

STORAGE_PREFLIGHT_RETRY = DEFAULT_RETRY.with_timeout(15.0)
"""Give up on an unreachable storage service after 15 s instead of the default 120 s."""

HEARTBEAT_RETRY = DEFAULT_RETRY.with_timeout(10.0)
HEARTBEAT_TIMEOUT_S = 10.0
"""A heartbeat write gives up after about 10 s (the next one comes a few seconds later), so the final
manifest never waits long behind one."""


class JobWriter:
    """Writes one bucket's job objects, turning storage errors into :class:`ProducerError`s."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._bucket = client.bucket(bucket)
        self.bucket = bucket

    def create_manifest(self, manifest: Manifest) -> None:
        """Write the first manifest of a job; :class:`JobExistsError` if the job id is taken.

        Also the preflight check of the bucket: a missing bucket or an unreachable service is
        reported here, before anything is published.
        """
        blob = self._bucket.blob(manifest_name(manifest.job_id))
        where = gs_uri(self.bucket, blob.name)
        taken = JobExistsError(f"job {manifest.job_id!r} already exists ({where})",
                               "choose another --job-id, or omit it to generate a new one")
        try:
            if blob.exists(retry=STORAGE_PREFLIGHT_RETRY):
                raise taken
            blob.upload_from_string(manifest.to_json(), content_type="application/json",
                                    if_generation_match=0, retry=STORAGE_PREFLIGHT_RETRY)
        except gexc.PreconditionFailed:
            raise taken from None
        except gexc.NotFound:
            raise bucket_not_found(self.bucket) from None
        except (gexc.ServiceUnavailable, gexc.RetryError, requests.ConnectionError) as exc:
            raise storage_unreachable(exc) from None

    def update_manifest(self, manifest: Manifest) -> None:
        """Overwrite the job's manifest (the final state); :class:`ManifestWriteError` if that fails."""
        blob = self._bucket.blob(manifest_name(manifest.job_id))
        try:
            blob.upload_from_string(manifest.to_json(), content_type="application/json", retry=DEFAULT_RETRY)
        except (gexc.GoogleAPIError, requests.RequestException) as exc:
            raise ManifestWriteError(
                f"could not write the {manifest.state!r} manifest of job {manifest.job_id!r} to "
                f"{gs_uri(self.bucket, blob.name)}: {exc}",
                "check that the storage service is reachable; the job's frames may be published but the "
                "collector cannot know the job ended",
            ) from None

    def write_heartbeat(self, manifest: Manifest) -> None:
        """Overwrite the running manifest (a heartbeat), retrying briefly; :class:`ManifestWriteError` if that fails."""
        blob = self._bucket.blob(manifest_name(manifest.job_id))
        try:
            blob.upload_from_string(manifest.to_json(), content_type="application/json", retry=HEARTBEAT_RETRY,
                                    timeout=HEARTBEAT_TIMEOUT_S)
        except (gexc.GoogleAPIError, requests.RequestException) as exc:
            raise ManifestWriteError(f"could not write the heartbeat of job {manifest.job_id!r} to "
                                     f"{gs_uri(self.bucket, blob.name)}: {exc}",
                                     "check that the storage service is reachable") from None

    def read_manifest(self, job_id: str) -> Manifest | None:
        """The job's manifest, ``None`` if it has none; :class:`ProducerError` if it cannot be read."""
        blob = self._bucket.blob(manifest_name(job_id))
        try:
            data = blob.download_as_bytes(retry=STORAGE_PREFLIGHT_RETRY)
        except gexc.NotFound:
            data = None
        except (gexc.ServiceUnavailable, gexc.RetryError, requests.ConnectionError) as exc:
            raise storage_unreachable(exc) from None
        if data is None:
            if not self._bucket.exists(retry=STORAGE_PREFLIGHT_RETRY):
                raise bucket_not_found(self.bucket)
            return None
        try:
            return Manifest.from_json(data)
        except InvalidManifestError as exc:
            raise InputError(f"{gs_uri(self.bucket, blob.name)}: {exc}",
                             "the job's manifest is damaged; start a new job") from None

    def put_payload(self, name: str, data: bytes) -> None:
        """Write a claim-checked JPEG create-only; an object already there (a retry) is fine."""
        with contextlib.suppress(gexc.PreconditionFailed):
            self._bucket.blob(name).upload_from_string(data, content_type="image/jpeg", if_generation_match=0)


def bucket_not_found(bucket: str) -> ResourceNotFoundError:
    """The error for a missing bucket."""
    return ResourceNotFoundError(
        f"GCS bucket {bucket!r} not found",
        "start the local stack with 'python -m deploy.local up', or create the bucket "
        f"('gcloud storage buckets create gs://{bucket}'), or pass --bucket",
    )


def storage_unreachable(exc: BaseException) -> ServiceUnavailableError:
    """The error for a storage service that does not answer."""
    return ServiceUnavailableError(
        f"cannot reach Cloud Storage ({type(exc).__name__}: {str(exc)[:200]})",
        "check STORAGE_EMULATOR_HOST / the local stack ('python -m deploy.local status'), or your network",
    )
