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

from worker.detectors.ssd_oid import SsdOidDetector
from worker.nodes.detector_node import NODES_DIR, DetectorNode

__all__ = ["NODES_DIR", "Node"]


class Node(DetectorNode):
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

    node_name = "model.ssd_oid"
    asset = "ssd_oid"
    detector_class = SsdOidDetector
