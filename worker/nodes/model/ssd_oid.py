"""🔲 SSD-MobileNetV2 OIDv4 object detection (23 Open Images classes) on LiteRT, no TensorFlow or torch.

Usage::

    from worker.pkd_compat import import_peekingduck
    import_peekingduck()
    from worker.nodes.model.ssd_oid import Node
    node = Node(detect=["person"])     # or Node(config={...}, node_path="model.ssd_oid", pkd_base_dir=...)
    outputs = node.run({"img": image_bgr})

In a pipeline YAML: ``- custom_nodes.model.ssd_oid: {detect: [person]}`` (see worker/pipelines/ssd.yml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from worker.pkd_compat import import_peekingduck

import_peekingduck()

from peekingduck.pipeline.nodes.abstract_node import AbstractNode  # noqa: E402

from worker.detectors.ssd_oid import SsdOidDetector  # noqa: E402

NODES_DIR = Path(__file__).resolve().parents[1]
"""``worker/nodes``: PeekingDuck's ``pkd_base_dir`` for this project's nodes (configs under ``configs/``)."""
LOADER_KEYS = frozenset({"root", "pkd_viewer"})
"""Keys PeekingDuck's own loader adds to a node's config."""


class Node(AbstractNode):
    """Initializes and uses SSD-MobileNetV2 OIDv4 to infer bboxes from an image frame.

    A faster, less accurate alternative to ``model.nanodet`` (about 0.4x its single-thread latency
    here). It detects 23 Open Images classes (Person, Car, Vehicle, Bicycle, Dog, Cat, Chair,
    Bottle, ...) at 300x300 input, on LiteRT (``ai-edge-litert``) with the model fetched by
    ``python -m deploy.assets fetch``. NMS is class-agnostic.

    Labels are emitted in COCO spelling where COCO has the class (``person``, ``car``, ``dog``,
    ``cup`` for Mug and Coffee cup, ``tv`` for Computer monitor, ...), so ``draw.bbox``,
    ``draw.legend`` and downstream consumers see the same names as from ``model.nanodet``; classes
    COCO lacks keep their OID name in lower case (``vehicle``, ``footwear``, ``boot``, ``box``,
    ``desk``, ``camera``, ``high heels``, ``stationary bicycle``). See ``worker.detectors.oid``.

    Inputs:
        |img_data|

    Outputs:
        |bboxes_data|

        |bbox_labels_data|

        |bbox_scores_data|

    Configs:
        model_path (:obj:`Optional[str]`): **default = null**. |br|
            Path of the TFLite model; ``null`` uses the cached default
            (``python -m deploy.assets path ssd_oid``).
        score_threshold (:obj:`float`): **[0, 1], default = 0.35**. |br|
            Detections with a lower class score are discarded (0.5 misses people).
        iou_threshold (:obj:`float`): **[0, 1], default = 0.5**. |br|
            Boxes overlapping a higher-scoring one (of any class) by more than this IoU are discarded.
        detect (:obj:`List[str]`): **default = ["*"]**. |br|
            Class names to keep, or ``["*"]`` for all: COCO names (``person``), OID names
            (``Coffee cup``) or the emitted OID-only names (``vehicle``). A pure filter, applied
            after NMS: the result is the ``["*"]`` result's detections of those classes. A name this
            model cannot detect (e.g. ``truck``) is an error.
        num_threads (:obj:`int`): **default = 1**. |br|
            LiteRT inference threads (one per worker process scales best).

    References:
        MediaPipe Objectron's object detector, ``object_detection_ssd_mobilenetv2_oidv4_fp16.tflite``
        (Apache-2.0), from npm ``@mediapipe/objectron`` 0.4.1675468480.
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        node_path: str = "model.ssd_oid",
        pkd_base_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        # PeekingDuck passes either a full config (its Runner) or overrides as kwargs; treat both as
        # overrides of configs/model/ssd_oid.yml so a partial config dict works too.
        base_dir = pkd_base_dir or NODES_DIR
        overrides = {k: v for k, v in {**(config or {}), **kwargs}.items() if k not in LOADER_KEYS}
        known = set(self._get_config_types()) | {"input", "output"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"model.ssd_oid: unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        super().__init__(None, node_path=node_path, pkd_base_dir=base_dir, **overrides)
        self.detector = SsdOidDetector(
            self.resolve_model_path(self.config["model_path"]),
            score_threshold=float(self.config["score_threshold"]),
            iou_threshold=float(self.config["iou_threshold"]),
            num_threads=self.config["num_threads"],
            detect=list(self.config["detect"]),
        )

    @staticmethod
    def resolve_model_path(model_path: str | None) -> Path:
        """The configured model path, or the cached default (AssetMissingError if not fetched)."""
        if model_path is not None:
            return Path(model_path).expanduser()
        from deploy.assets import asset_path

        return asset_path("ssd_oid")

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
