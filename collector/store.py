"""The bucket side of the collector: manifests and listings (google-cloud-storage), downloads (:mod:`collector.media`).

Usage::

    store = JobStore.from_settings(load_settings())     # raises CollectorError if the bucket is missing
    manifest = store.require_manifest("demo")            # CollectorError for an unknown job
    objects = store.list_job("demo")                     # one listing of jobs/demo/
    data = store.download("jobs/demo/frames/3/....jpg")
    store.upload_file(Path("demo.mp4"), "gs://results/demo.mp4", "video/mp4")

Under the emulator (``STORAGE_EMULATOR_HOST``) no credentials are needed; in production both
clients use Application Default Credentials.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.errors import CollectorError
from collector.media import MediaDownloader
from collector.plan import ListedObject
from framecontract.clients import NO_CREDENTIALS_HELP, NoCredentialsError, make_storage_client
from framecontract.jobid import InvalidJobIdError, validate_job_id
from framecontract.layout import (
    JOBS_PREFIX,
    gs_uri,
    job_prefix,
    manifest_name,
    parse_gs_uri,
    time_window_listings,
)
from framecontract.manifest import MAX_MANIFEST_BYTES, InvalidManifestError, Manifest
from framecontract.settings import Settings

_LIST_FIELDS = "items(name,size,updated),nextPageToken"
RESULT_KINDS = ("frames", "detections", "errors")
"""What a reassembly reads (payloads are inputs)."""

DOWNLOAD_WORKERS = 16
"""Parallel downloads from Cloud Storage (each GET is mostly latency)."""
EMULATOR_DOWNLOAD_WORKERS = 4
"""Parallel downloads from the storage emulator: a single-threaded HTTP server that answers one request at
a time, so more threads only queue there (measured 2026-12-01, 300 JPEGs of 320x240, 3 rounds: 4, 8 and 16
threads all ≈ 1,950-2,060 GETs/s). Its listen backlog is 128 (deploy/storage_emulator.py, patch (c))."""


class UnreadableManifestError(CollectorError):
    """A job's manifest exists but is not a valid manifest (the message says why)."""


def checked_job_id(job_id: str) -> str:
    """``job_id`` if valid, else :class:`CollectorError` with framecontract's reason."""
    try:
        return validate_job_id(job_id)
    except InvalidJobIdError as exc:
        raise CollectorError(str(exc)) from None


def _google_call_error(exc: Exception, what: str) -> CollectorError:
    """Turn a Google client exception into a one-line CollectorError."""
    from google.auth.exceptions import DefaultCredentialsError

    if isinstance(exc, DefaultCredentialsError | NoCredentialsError):
        return CollectorError(NO_CREDENTIALS_HELP)
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CollectorError(f"{what}: {message}")


@dataclass
class JobStore:
    """Read access to the jobs in one bucket."""

    client: Any
    """A ``google.cloud.storage.Client``."""
    bucket_name: str
    media: MediaDownloader
    """Downloads frames and records (the hot path of reassembly)."""
    emulator: bool = False
    """True when talking to the storage emulator (changes the default download parallelism)."""

    @property
    def download_workers(self) -> int:
        """Default number of parallel downloads for this store."""
        return EMULATOR_DOWNLOAD_WORKERS if self.emulator else DOWNLOAD_WORKERS

    @classmethod
    def from_settings(cls, settings: Settings, check_bucket: bool = True) -> JobStore:
        """Client from :func:`framecontract.clients.make_storage_client`; checks the bucket exists."""
        try:
            client = make_storage_client(settings)
            emulator = bool(settings.storage_emulator_host)
            media = MediaDownloader.from_settings(settings)
        except Exception as exc:  # credentials are looked up when the clients are built
            raise _google_call_error(exc, "cannot create a storage client") from None
        store = cls(client, settings.bucket, media, emulator=emulator)
        if check_bucket:
            store.check_bucket()
        return store

    @property
    def bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    def check_bucket(self, bucket_name: str | None = None) -> None:
        """:class:`CollectorError` ``bucket 'x' does not exist`` when it does not (default: the jobs' bucket)."""
        from google.api_core import exceptions as gexc

        name = bucket_name or self.bucket_name
        try:
            found = self.client.lookup_bucket(name)
        except gexc.Forbidden:
            return  # allowed to read/write objects but not bucket metadata: the listing or upload will tell
        except Exception as exc:
            raise _google_call_error(exc, f"cannot reach bucket {name!r}") from None
        if found is None:
            raise CollectorError(f"bucket {name!r} does not exist")

    def read_manifest(self, job_id: str) -> Manifest | None:
        """The job's manifest, ``None`` if there is none.

        :class:`UnreadableManifestError` (``manifest unreadable: <reason> (gs://...)``) if it is not a valid
        manifest; at most :data:`~framecontract.manifest.MAX_MANIFEST_BYTES` + 1 bytes are downloaded.
        """
        from google.api_core import exceptions as gexc

        name = manifest_name(checked_job_id(job_id))
        try:
            data = self.bucket.blob(name).download_as_bytes(start=0, end=MAX_MANIFEST_BYTES)  # end is inclusive
        except gexc.NotFound:
            return None
        except gexc.RequestRangeNotSatisfiable:  # Cloud Storage's answer to a range of an empty object
            data = b""
        except Exception as exc:
            raise _google_call_error(exc, f"cannot read {gs_uri(self.bucket_name, name)}") from None
        try:
            return Manifest.from_json(data)
        except InvalidManifestError as exc:
            raise UnreadableManifestError(f"manifest unreadable: {exc} ({gs_uri(self.bucket_name, name)})") from None

    def require_manifest(self, job_id: str) -> Manifest:
        """The job's manifest, or ``CollectorError: job 'x' not found: no manifest at gs://...``."""
        manifest = self.read_manifest(job_id)
        if manifest is None:
            uri = gs_uri(self.bucket_name, manifest_name(job_id))
            raise CollectorError(f"job {job_id!r} not found: no manifest at {uri}")
        return manifest

    def _list(self, prefix: str, start_offset: str | None = None, end_offset: str | None = None) -> list[ListedObject]:
        from google.api_core import exceptions as gexc

        try:
            return [
                ListedObject(blob.name, int(blob.size or 0), blob.updated)
                for blob in self.client.list_blobs(self.bucket_name, prefix=prefix, fields=_LIST_FIELDS,
                                                   start_offset=start_offset, end_offset=end_offset)
            ]
        except gexc.NotFound:
            raise CollectorError(f"bucket {self.bucket_name!r} does not exist") from None
        except Exception as exc:
            raise _google_call_error(exc, f"cannot list gs://{self.bucket_name}/{prefix}") from None

    def list_job(self, job_id: str) -> list[ListedObject]:
        """Every object under ``jobs/<job>/``, from one (paged) listing."""
        return self._list(job_prefix(checked_job_id(job_id)))

    def list_job_window(self, job_id: str, start_us: int | None, end_us: int | None) -> list[ListedObject]:
        """The job's frames, detections and error records with ``start_us <= timestamp < end_us``.

        One bounded listing per result folder (:func:`framecontract.layout.time_window_listings`), in
        parallel: the cost follows the window, not the job.
        """
        listings = time_window_listings(checked_job_id(job_id), RESULT_KINDS, start_us, end_us)
        with ThreadPoolExecutor(max_workers=self.download_workers) as pool:
            parts = pool.map(lambda listing: self._list(*listing), listings)
            return [obj for part in parts for obj in part]

    def list_all_jobs(self) -> dict[str, list[ListedObject]]:
        """Every object under ``jobs/``, grouped by job id (one listing of the whole prefix)."""
        grouped: dict[str, list[ListedObject]] = defaultdict(list)
        for obj in self._list(JOBS_PREFIX):
            job_id = obj.name[len(JOBS_PREFIX) :].split("/", 1)[0]
            try:
                validate_job_id(job_id)
            except InvalidJobIdError:
                continue
            grouped[job_id].append(obj)
        return dict(grouped)

    def download(self, name: str) -> bytes:
        """One object's bytes, CRC32C-checked, retried (else :class:`~collector.media.MediaDownloadError`)."""
        return self.media.download(self.bucket_name, name)

    def upload_file(self, path: Path, uri: str, content_type: str) -> None:
        """Upload a local file to ``gs://bucket/name``, replacing any object there; CollectorError on failure."""
        bucket, name = parse_gs_uri(uri)
        try:
            self.client.bucket(bucket).blob(name).upload_from_filename(str(path), content_type=content_type)
        except Exception as exc:
            raise _google_call_error(exc, f"cannot upload {uri}") from None
