"""Start PeekingDuck's built-in model nodes (model.yolo and friends) from baked weights, never the network.

Usage::

    from worker.pkd_offline import install_offline_weights
    install_offline_weights()    # once, before building a built-in model node; idempotent

    # then, in a pipeline YAML:
    #   - model.yolo:
    #       weights_parent_dir: /opt/pkd      # absolute; see the layout below

Unpatched, every PeekingDuck model node fetches ``weights_checksums.json`` from PeekingDuck's
download host at each start-up (even with the weights present) and downloads the weights when they
are missing; offline that is a ``ConnectionError`` or a hang. After :func:`install_offline_weights`
(which patches ``WeightsDownloaderMixin``, the mixin all 14 model nodes inherit):

- the weights are looked up where PeekingDuck's own download leaves them,
  ``<weights_parent_dir>/peekingduck_weights/<model_subdir>/<model_format>/<model_file>`` plus the
  model's ``classes_file`` if it has one, e.g.
  ``/opt/pkd/peekingduck_weights/yolo/tensorflow/{yolov4-tiny.pb,coco.names}`` for ``model.yolo``
  (``weights_parent_dir: null`` means the folder holding the ``peekingduck`` package);
- missing files raise :class:`BakedWeightsMissingError` (a ``FileNotFoundError``) naming the expected
  paths, instead of a download attempt;
- checksums come from ``<weights_parent_dir>/peekingduck_weights/weights_checksums.json`` if the bake
  step saved PeekingDuck's checksums file there (same format); a mismatch raises
  :class:`BakedWeightsChecksumError`. Without that file the baked weights are trusted as they are;
- any remaining download path raises :class:`OfflineDownloadError` before opening a connection.

:func:`expected_weights_paths` tells a build step which files to bake for a node config.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from worker.pkd_compat import import_peekingduck

CHECKSUMS_FILE = "weights_checksums.json"
"""Optional, beside the model folders in ``peekingduck_weights/``: PeekingDuck's checksums file, saved at bake time."""

logger = logging.getLogger(__name__)
_originals: dict[str, Any] = {}


class BakedWeightsMissingError(FileNotFoundError):
    """A built-in model node's weights are not in the baked folder (and will not be downloaded)."""


class BakedWeightsChecksumError(ValueError):
    """A baked weights file does not match the checksum recorded for it."""


class OfflineDownloadError(RuntimeError):
    """Something tried to download PeekingDuck weights while offline mode is installed."""


def describe(mixin: Any) -> str:
    """``yolo/tensorflow/v4tiny``: the model a weights-downloader object is about."""
    return f"{mixin.model_subdir}/{mixin.config['model_format']}/{mixin.config['model_type']}"


def expected_weights_paths(mixin: Any, model_dir: Path | None = None) -> list[Path]:
    """The files (or SavedModel folders) a model node needs in its weights folder: model file, classes file.

    ``mixin`` is any object with PeekingDuck's ``WeightsDownloaderMixin`` properties and a node
    ``config`` (``weights``, ``model_format``, ``model_type``, ``weights_parent_dir``, ``root``).
    """
    model_dir = model_dir if model_dir is not None else mixin._find_paths()
    names = [mixin.model_filename] + ([mixin.classes_filename] if mixin.classes_filename else [])
    return [model_dir / name for name in names]


def checksums_path(model_dir: Path) -> Path:
    """``<weights_parent_dir>/peekingduck_weights/weights_checksums.json`` for a ``.../<model>/<format>`` dir."""
    return model_dir.parents[1] / CHECKSUMS_FILE


def offline_get_weights_checksum(self: Any) -> str | None:
    """The recorded sha256 of the selected weights from the baked checksums file; ``None`` if there is none.

    Replaces PeekingDuck's version, which downloads ``weights_checksums.json`` on every start-up.
    """
    path = checksums_path(self._find_paths())
    if not path.is_file():
        return None
    try:
        checksums = json.loads(path.read_text())
        return str(checksums[self.model_subdir][self.config["model_format"]][str(self.config["model_type"])])
    except (ValueError, KeyError, TypeError) as exc:
        raise BakedWeightsChecksumError(
            f"{path} has no checksum for {describe(self)} ({type(exc).__name__}: {exc}); "
            "save PeekingDuck's weights_checksums.json there unchanged, or delete it to skip verification"
        ) from None


def offline_has_weights(self: Any, model_dir: Path) -> bool:
    """True if the weights are baked into ``model_dir`` (and match the baked checksum, if any).

    Never returns False (which would make PeekingDuck download): raises
    :class:`BakedWeightsMissingError` naming the expected paths, or :class:`BakedWeightsChecksumError`.
    """
    expected = expected_weights_paths(self, model_dir)
    missing = [path for path in expected if not path.exists()]
    if missing:
        raise BakedWeightsMissingError(
            f"PeekingDuck weights for {describe(self)} are not baked in: missing {', '.join(map(str, missing))}. "
            "This worker never downloads weights; bake them at build time into "
            f"<weights_parent_dir>/peekingduck_weights/{self.model_subdir}/{self.config['model_format']}/ "
            f"(weights_parent_dir is {self.config.get('weights_parent_dir')!r}; null means the folder holding "
            "the peekingduck package)"
        )
    recorded = offline_get_weights_checksum(self)
    weights = expected[0]
    if recorded is None:
        logger.debug("using baked PeekingDuck weights %s (no %s to verify against)", weights, CHECKSUMS_FILE)
        return True
    actual = self.sha256sum(weights).hexdigest()
    if actual != recorded:
        raise BakedWeightsChecksumError(
            f"baked weights {weights} for {describe(self)} have sha256 {actual}, but "
            f"{checksums_path(model_dir)} records {recorded}: the bake is corrupt or from another version"
        )
    logger.debug("using baked PeekingDuck weights %s (sha256 verified)", weights)
    return True


def offline_download_to(self: Any, filename: str, destination_dir: Path) -> None:
    """Replaces PeekingDuck's downloader: refuse, naming what was wanted."""
    raise OfflineDownloadError(
        f"refusing to download {filename} for {describe(self)} into {destination_dir}: PeekingDuck weights "
        "must be baked in (worker.pkd_offline)"
    )


PATCHES = {
    "_get_weights_checksum": offline_get_weights_checksum,
    "_has_weights": offline_has_weights,
    "_download_to": offline_download_to,
}


def install_offline_weights() -> None:
    """Patch PeekingDuck's ``WeightsDownloaderMixin`` for baked weights and no network (idempotent)."""
    import_peekingduck()
    from peekingduck.pipeline.nodes.base import WeightsDownloaderMixin

    for name, replacement in PATCHES.items():
        current = getattr(WeightsDownloaderMixin, name)
        if current is not replacement:
            _originals.setdefault(name, current)
            setattr(WeightsDownloaderMixin, name, replacement)


def uninstall_offline_weights() -> None:
    """Restore PeekingDuck's own methods (for tests)."""
    import_peekingduck()
    from peekingduck.pipeline.nodes.base import WeightsDownloaderMixin

    for name, original in list(_originals.items()):
        setattr(WeightsDownloaderMixin, name, original)
        del _originals[name]


def is_installed() -> bool:
    """True while the offline patches are in place."""
    import_peekingduck()
    from peekingduck.pipeline.nodes.base import WeightsDownloaderMixin

    return all(getattr(WeightsDownloaderMixin, name) is fn for name, fn in PATCHES.items())
