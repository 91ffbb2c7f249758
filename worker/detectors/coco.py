"""The 80 COCO class names, in the order COCO-80 detectors (NanoDet, YOLO) number them.

Usage::

    from worker.detectors.coco import COCO_LABELS, canonical_label
    COCO_LABELS[16]                  # 'dog'
    canonical_label("motorbike")     # 'motorcycle' (Darknet/VOC spelling accepted)
"""

from __future__ import annotations

COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

COCO_ALIASES: dict[str, str] = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}
"""Darknet / Pascal VOC spellings (also accepted by PeekingDuck's master map) → COCO names."""


def canonical_label(name: str) -> str | None:
    """The COCO name for ``name`` (case-insensitive, aliases allowed), or ``None`` if unknown."""
    key = " ".join(name.strip().lower().split())
    key = COCO_ALIASES.get(key, key)
    return key if key in COCO_LABELS else None
