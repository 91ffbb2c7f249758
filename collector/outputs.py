"""Where ``reassemble`` writes: local paths, or ``gs://`` objects written locally first and uploaded.

Usage::

    with tempfile.TemporaryDirectory() as scratch:
        outputs = prepare_outputs("gs://results/demo.mp4", "demo.csv", scratch=Path(scratch))
        check_destinations(store, outputs)        # buckets exist, nothing under the jobs' jobs/
        reassemble(store, options, outputs)       # writes outputs.video / .detections / .report
        upload_outputs(store, outputs)            # gs:// destinations: detections, report, video last

Names: the detections default to ``<video stem>.detections.jsonl`` and the report is always
``<video stem>.report.json``, next to the video (in the same bucket "directory" for ``gs://``).
The detections format follows its name: ``.csv`` → CSV, anything else → JSON Lines.

Local files and ``gs://`` objects are both **overwritten**: reassembly is a deterministic function of
the job's results, so running it again (say after a ``--partial`` run) replaces the outputs with the
current ones. Objects under ``jobs/`` of the jobs' own bucket are refused (that prefix belongs to the
producer and the workers).
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from collector.errors import CollectorError
from collector.store import JobStore
from framecontract.layout import JOBS_PREFIX, parse_gs_uri

DetectionsFormat = Literal["jsonl", "csv"]
CONTENT_TYPES = {".mp4": "video/mp4", ".csv": "text/csv", ".json": "application/json"}
JSONL_CONTENT_TYPE = "application/x-ndjson"


def is_gs_uri(text: str | Path) -> bool:
    """True for ``gs://...`` destinations."""
    return str(text).startswith("gs://")


@dataclass(frozen=True)
class Upload:
    """A file written locally that ends up as a ``gs://`` object."""

    path: Path
    uri: str
    content_type: str


@dataclass(frozen=True)
class OutputPaths:
    """Local files reassembly writes, and the uploads that take some of them to the bucket."""

    video: Path
    detections: Path
    report: Path
    uploads: tuple[Upload, ...] = ()
    detections_format: DetectionsFormat = "jsonl"

    def name(self, path: Path) -> str:
        """Where ``path`` ends up: its ``gs://`` URI if it is uploaded, else the path itself."""
        return next((u.uri for u in self.uploads if u.path == path), str(path))


def _stem(destination: str) -> str:
    base, ext = posixpath.splitext(destination)
    return base if ext and not base.endswith("/") else destination


def _content_type(name: str) -> str:
    return CONTENT_TYPES.get(posixpath.splitext(name)[1].lower(), JSONL_CONTENT_TYPE)


def plan_outputs(video: str | Path, detections: str | Path | None, scratch: Path | None) -> OutputPaths:
    """Decide every output's local path and destination. Pure (no I/O).

    ``gs://`` destinations get a local path in ``scratch`` (required then) and an :class:`Upload`.
    CollectorError for a malformed ``gs://`` URI.
    """
    video_dest = str(video)
    stem = _stem(video_dest)
    destinations = {
        "video": video_dest,
        "detections": str(detections) if detections is not None else stem + ".detections.jsonl",
        "report": stem + ".report.json",
    }
    local: dict[str, Path] = {}
    uploads: list[Upload] = []
    for kind, dest in destinations.items():
        if not is_gs_uri(dest):
            local[kind] = Path(dest)
            continue
        try:
            _, name = parse_gs_uri(dest)
        except ValueError:
            raise CollectorError(f"{dest!r} is not a gs:// object URI (gs://BUCKET/path/name)") from None
        if name.endswith("/"):
            raise CollectorError(f"{dest!r} names a folder; give the object's full name (gs://BUCKET/path/name)")
        if scratch is None:
            raise ValueError("gs:// outputs need a scratch directory")
        local[kind] = scratch / f"{kind}{posixpath.splitext(name)[1]}"
        uploads.append(Upload(local[kind], dest, _content_type(name)))
    fmt: DetectionsFormat = "csv" if destinations["detections"].lower().endswith(".csv") else "jsonl"
    return OutputPaths(local["video"], local["detections"], local["report"], tuple(uploads), fmt)


def prepare_outputs(
    video: str | Path, detections: str | Path | None = None, scratch: Path | None = None
) -> OutputPaths:
    """:func:`plan_outputs`, then check the local directories can be written (creating missing ones).

    Raises ``CollectorError: cannot write to output directory ...``.
    """
    paths = plan_outputs(video, detections, scratch)
    for directory in sorted({p.parent for p in (paths.video, paths.detections, paths.report)}):
        blocker = next((d for d in (directory, *directory.parents) if d.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise CollectorError(f"cannot write to output directory '{directory}': '{blocker}' is not a directory")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".collector-probe-"):
                pass
        except OSError as exc:
            raise CollectorError(f"cannot write to output directory '{directory}': {exc.strerror or exc}") from None
    return paths


def check_destinations(store: JobStore, outputs: OutputPaths) -> None:
    """Before any work: every destination bucket exists, and nothing would land in the jobs' ``jobs/``."""
    checked: set[str] = set()
    for upload in outputs.uploads:
        bucket, name = parse_gs_uri(upload.uri)
        if bucket == store.bucket_name and name.startswith(JOBS_PREFIX):
            raise CollectorError(
                f"refusing to write {upload.uri}: {JOBS_PREFIX} in the jobs bucket belongs to the producer and "
                "the workers; choose another path"
            )
        if bucket not in checked:
            store.check_bucket(bucket)
            checked.add(bucket)


class UploadFailedError(CollectorError):
    """An upload failed after reassembly; the local files must be kept (the message says where)."""


def upload_outputs(store: JobStore, outputs: OutputPaths) -> None:
    """Upload the ``gs://`` outputs (overwriting), the video last so that its companions exist first.

    When one fails, :class:`UploadFailedError` says what was uploaded and, for each file that was not,
    where it is and the command that uploads it; the caller keeps those files.
    """
    ordered = sorted(outputs.uploads, key=lambda u: u.path == outputs.video)
    for done, upload in enumerate(ordered):
        try:
            store.upload_file(upload.path, upload.uri, upload.content_type)
        except CollectorError as exc:
            uploaded = f"uploaded {', '.join(u.uri for u in ordered[:done])}; " if done else ""
            commands = "; ".join(f"gcloud storage cp {u.path} {u.uri}" for u in ordered[done:])
            raise UploadFailedError(f"{exc}. Nothing is lost: {uploaded}the rest is kept here, "
                                    f"upload it with: {commands}") from None
