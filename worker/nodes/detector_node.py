"""The shared body of this project's detector nodes (``model.nanodet``, ``model.ssd_oid``).

Usage (a node file)::

    class Node(DetectorNode):
        node_name = "model.nanodet"
        asset = "nanodet"
        detector_class = NanoDetDetector

A subclass names its config (``configs/<type>/<name>.yml`` under ``worker/nodes``), the cached
asset that is its default model, and the detector class, which takes ``(model_path,
score_threshold, iou_threshold, num_threads, detect)`` and has ``detect(image_bgr)`` returning
normalised ``bboxes``, ``labels`` and ``scores``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import numpy as np

from framecontract.assets import asset_path
from worker.pkd_compat import import_peekingduck

import_peekingduck()

from peekingduck.pipeline.nodes.abstract_node import AbstractNode  # noqa: E402

NODES_DIR = Path(__file__).resolve().parent
"""``worker/nodes``: PeekingDuck's ``pkd_base_dir`` for this project's nodes (configs under ``configs/``)."""
LOADER_KEYS = frozenset({"root", "pkd_viewer"})
"""Keys PeekingDuck's own loader adds to a node's config."""


class DetectorNode(AbstractNode):
    """A PeekingDuck model node around one of :mod:`worker.detectors` (see the module docstring)."""

    node_name: ClassVar[str]
    asset: ClassVar[str]
    detector_class: ClassVar[type]

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        node_path: str | None = None,
        pkd_base_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        # PeekingDuck passes either a full config (its Runner) or overrides as kwargs; treat both as
        # overrides of the node's yml so that a partial config dict works too.
        overrides = {k: v for k, v in {**(config or {}), **kwargs}.items() if k not in LOADER_KEYS}
        known = set(self._get_config_types()) | {"input", "output"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"{self.node_name}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        super().__init__(None, node_path=node_path or self.node_name, pkd_base_dir=pkd_base_dir or NODES_DIR,
                         **overrides)
        self.detector = self.detector_class(
            self.resolve_model_path(self.config["model_path"]),
            score_threshold=float(self.config["score_threshold"]),
            iou_threshold=float(self.config["iou_threshold"]),
            num_threads=self.config["num_threads"],
            detect=list(self.config["detect"]),
        )

    @classmethod
    def resolve_model_path(cls, model_path: str | None) -> Path:
        """The configured model path, or the cached default (AssetMissingError if not fetched)."""
        if model_path is not None:
            return Path(model_path).expanduser()
        return asset_path(cls.asset)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Detect objects in ``inputs["img"]`` (BGR); bboxes are normalised [x1, y1, x2, y2]."""
        found = self.detector.detect(inputs["img"])
        return {
            "bboxes": found.bboxes,
            "bbox_labels": np.array(found.labels, dtype=str),
            "bbox_scores": found.scores,
        }

    def _get_config_types(self) -> dict[str, Any]:
        """Returns dictionary mapping the node's config keys to respective types.

        typing.Union/Optional on purpose: typeguard 2 (PeekingDuck's) silently accepts anything for
        ``X | Y`` unions.
        """
        return {
            "model_path": Optional[str],  # noqa: UP045
            "score_threshold": Union[float, int],  # noqa: UP007
            "iou_threshold": Union[float, int],  # noqa: UP007
            "detect": list[str],
            "num_threads": int,
        }
