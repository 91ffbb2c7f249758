"""Which kind of source a SOURCE argument names, and opening it (the dispatcher).

Usage::

    source = open_source("rtsp://user:pass@cam/stream1", ProducerOptions().validated())
    source = open_source("0", options)                  # webcam 0
    source = open_source("shots/", options)             # a folder of images
    source = open_source("videos/vtest.avi", options)   # a video file
    classify_source("ftp://x/y")                        # raises InputError: unsupported scheme

Classification is pure (:func:`classify_source`); only :func:`open_source` touches the file system,
the network or a device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from producer.errors import InputError
from producer.live import STREAM_SCHEMES, open_live_source
from producer.options import JobOptions
from producer.redact import AmbiguousUrlError, is_url, parse_source_url, redact_url
from producer.sources import FrameSource, open_video_file

SUPPORTED = ("a video file, a gs:// video object, a folder of images, rtsp:// or http(s):// URL, or a webcam index "
             "such as 0")


@dataclass(frozen=True)
class SourceSpec:
    """What a SOURCE argument names: ``kind`` is ``path`` (file or folder), ``gcs`` (a ``gs://`` object), ``http``,
    ``stream`` or ``webcam``."""

    kind: str
    target: str


def classify_source(source: str) -> SourceSpec:
    """Classify a SOURCE argument without opening it (pure); :class:`InputError` for what cannot work."""
    if source.strip() == "":
        raise InputError("the source is empty", f"give {SUPPORTED}")
    if re.fullmatch(r"\d{1,3}", source):
        return SourceSpec("webcam", source)
    if not is_url(source):
        return SourceSpec("path", source)
    scheme = source.split("://", 1)[0].lower()
    if scheme == "file":
        return SourceSpec("path", unquote(urlsplit(source).path))
    if scheme == "gs":
        return SourceSpec("gcs", source)
    if scheme in ("http", "https"):
        kind = "http"
    elif scheme in STREAM_SCHEMES:
        kind = "stream"
    else:
        raise InputError(f"unsupported source scheme {scheme + '://'!r} in {redact_url(source)!r}", f"give {SUPPORTED}")
    try:
        host = parse_source_url(source).host
    except AmbiguousUrlError as exc:
        raise InputError(str(exc), exc.remedy) from None
    if not host:
        raise InputError(f"no host in the URL {redact_url(source)!r}", "write it as scheme://host[:port]/path")
    return SourceSpec(kind, source)


def open_source(source: str, options: JobOptions) -> FrameSource:
    """Open whatever ``source`` names and decode its first frame; a :class:`ProducerError` with a remedy if not."""
    spec = classify_source(source)
    if spec.kind == "webcam" and Path(source).exists():  # a file or folder that happens to be called "0"
        spec = SourceSpec("path", source)
    if spec.kind == "webcam":
        return open_live_source(int(spec.target), options.reconnect_timeout, frame_timeout=options.frame_timeout)
    if spec.kind in ("http", "stream"):
        return open_live_source(spec.target, options.reconnect_timeout, frame_timeout=options.frame_timeout)
    if spec.kind == "gcs":
        raise InputError(f"{source!r} is an object in Cloud Storage, which is published in chunks only",
                         "publish it with python -m producer (not through a FrameSource)")
    path = Path(spec.target)
    if path.is_dir():
        from producer.images import open_image_folder

        return open_image_folder(path, options.image_fps)
    return open_video_file(path)
