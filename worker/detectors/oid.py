"""The 24 labels of the SSD-MobileNetV2 OIDv4 model (Open Images v4) and their COCO names.

Usage::

    from worker.detectors.oid import OID_LABELS, output_label, resolve_oid_classes
    OID_LABELS[4]                         # 'Person' (index 0 is the background, '???')
    output_label("Person")                # 'person'  (the COCO name, as the node emits it)
    output_label("Vehicle")               # 'vehicle' (no COCO class: the OID name, lower-cased)
    resolve_oid_classes(["person", "cup"])  # OID indices {4, 12, 13}: Person, Mug, Coffee cup

Spelling the node emits: the COCO name where one exists, otherwise the OID name in lower case. So
``person``, ``car``, ``dog``, ``bicycle``, ``cup`` ... read the same whether NanoDet (COCO-80) or this
model produced them, and ``detect: [person]``, ``draw.bbox``/``draw.legend`` and the detections
records need no per-model cases. Mug and Coffee cup both become ``cup``. The OID-only names
(``vehicle``, ``footwear``, ``boot``, ``high heels``, ``box``, ``desk``, ``camera``,
``stationary bicycle``) collide with no COCO name.
"""

from __future__ import annotations

from collections.abc import Sequence

from worker.detectors.coco import canonical_label

OID_LABELS: tuple[str, ...] = (
    "???", "Bicycle", "Boot", "Laptop", "Person", "Chair", "Cattle", "Desk", "Cat", "Computer mouse",
    "Computer monitor", "Box", "Mug", "Coffee cup", "Stationary bicycle", "Table", "Bottle", "High heels",
    "Vehicle", "Footwear", "Dog", "Book", "Camera", "Car",
)  # fmt: skip
"""Model output order, exactly the label map packed with the model (``object_detection_oidv4_labelmap.txt``)."""
BACKGROUND = 0

OID_TO_COCO: dict[str, str] = {
    "Bicycle": "bicycle",
    "Laptop": "laptop",
    "Person": "person",
    "Chair": "chair",
    "Cattle": "cow",
    "Cat": "cat",
    "Computer mouse": "mouse",
    "Computer monitor": "tv",  # COCO's "tv" is VOC's "tvmonitor": screens of both kinds
    "Mug": "cup",
    "Coffee cup": "cup",
    "Table": "dining table",  # COCO's only table class
    "Bottle": "bottle",
    "Dog": "dog",
    "Book": "book",
    "Car": "car",
}
"""OID label → COCO-80 name, where COCO has the same kind of object. Not mapped: Boot, Desk, Box,
Stationary bicycle (exercise machine), High heels, Vehicle (car, bus or truck), Footwear, Camera."""


def output_label(oid_label: str) -> str:
    """The name the node emits for an OID label: its COCO name, else the OID name lower-cased."""
    return OID_TO_COCO.get(oid_label, oid_label.lower())


OUTPUT_LABELS: tuple[str, ...] = tuple(output_label(label) for label in OID_LABELS)
"""``output_label`` of each model output index (index 0, the background, is never emitted)."""


def _key(name: str) -> str:
    return " ".join(name.strip().lower().split())


def oid_indices_for(name: str) -> set[int]:
    """OID output indices that ``name`` selects (case-insensitive); empty if none.

    ``name`` may be an OID label (``"Coffee cup"``), an emitted name (``"vehicle"``, ``"cup"``) or a
    COCO name or alias PeekingDuck accepts (``"tvmonitor"`` → ``tv`` → Computer monitor).
    """
    key = _key(name)
    coco = canonical_label(key)
    return {
        index
        for index in range(BACKGROUND + 1, len(OID_LABELS))
        if key in (_key(OID_LABELS[index]), OUTPUT_LABELS[index]) or OUTPUT_LABELS[index] == coco
    }


def resolve_oid_classes(detect: Sequence[str] | None) -> set[int] | None:
    """OID output indices for a ``detect`` list; ``None`` (all classes) for ``None`` or ``["*"]``.

    ValueError for an empty list, or for names this model cannot detect (including COCO classes it
    does not have, e.g. ``truck``), listing the names it can.
    """
    if detect is None or "*" in detect:
        return None
    if isinstance(detect, str) or not detect:
        raise ValueError(f"detect must be a non-empty list of class names or ['*'], got {detect!r}")
    unknown = [name for name in detect if not isinstance(name, str) or not oid_indices_for(name)]
    if unknown:
        valid = sorted(set(OUTPUT_LABELS[1:]))
        raise ValueError(f"unknown class name(s) {unknown} in detect; the SSD OIDv4 model detects: {', '.join(valid)}")
    return set().union(*(oid_indices_for(name) for name in detect))
