"""SSD-MobileNetV2 OIDv4 (24 Open Images labels) on LiteRT: preprocess, SSD anchor decode, NMS.

Usage::

    detector = SsdOidDetector(asset_path("ssd_oid"), detect=["person", "dog"])
    found = detector.detect(cv2.imread("dog.jpg"))
    found.bboxes   # float32 (N, 4) normalised [x1, y1, x2, y2], clipped to 0..1
    found.labels   # ['dog', ...]: COCO names where COCO has the class (see worker.detectors.oid)
    found.scores   # float32 (N,)

The model (MediaPipe Objectron's first stage, fetched by ``deploy.assets``) takes RGB scaled to
[-1, 1], NHWC 1x300x300x3 (plain resize, no letterbox) and returns ``raw_outputs/box_encodings``
``[1, 1917, 4]`` (ty, tx, th, tw relative to an anchor) and ``raw_outputs/class_predictions``
``[1, 1917, 24]`` (logits; index 0 is the background). The 1917 anchors are MediaPipe's
``SsdAnchorsCalculator`` with the options of ``object_detection_oid_v4_cpu.pbtxt``; decoding follows
its ``TfLiteTensorsToDetectionsCalculator`` (scales 10, 10, 5, 5, exp on sizes, sigmoid scores,
background ignored). Unlike MediaPipe's graph (one box, threshold 0.6) every box above
``score_threshold`` is kept and NMS is class-agnostic: OID has overlapping labels (Vehicle/Car,
Footwear/Boot, Mug/Coffee cup) that would otherwise box one object twice.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from worker.detectors.nanodet import Candidates, Detections, non_max_suppression
from worker.detectors.oid import BACKGROUND, OID_LABELS, OUTPUT_LABELS, resolve_oid_classes
from worker.detectors.settings import check_detector_settings

INPUT_SIZE = 300
NUM_ANCHORS = 1917
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
"""Divisors of the (ty, tx, th, tw) encodings: MediaPipe's y_scale, x_scale, h_scale, w_scale."""
INPUT_NAME = "normalized_input_image_tensor"
BOXES_NAME = "raw_outputs/box_encodings"
SCORES_NAME = "raw_outputs/class_predictions"
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class AnchorOptions:
    """MediaPipe ``SsdAnchorsCalculatorOptions`` (the subset this model uses); defaults = the OIDv4 graph."""

    input_size: int = INPUT_SIZE
    strides: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    """One feature map per stride, ceil(input_size / stride) cells a side; all distinct."""
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)
    interpolated_scale_aspect_ratio: float = 1.0
    """Adds one anchor per cell with this ratio and scale sqrt(scale · next scale); 0 disables it."""
    reduce_boxes_in_lowest_layer: bool = True
    """The first layer gets only (ratio 1, scale 0.1), (2, scale), (0.5, scale)."""
    anchor_offset: float = 0.5


def layer_scale(options: AnchorOptions, layer: int) -> float:
    """Scale of layer ``layer``: linear from min_scale to max_scale over the layers (1.0 past the last)."""
    count = len(options.strides)
    if layer >= count:
        return 1.0
    if count == 1:
        return (options.min_scale + options.max_scale) / 2
    return options.min_scale + (options.max_scale - options.min_scale) * layer / (count - 1)


def ssd_anchors(options: AnchorOptions | None = None) -> np.ndarray:
    """float32 (A, 4) anchors ``[x_center, y_center, width, height]``, normalised to the input.

    ``options`` defaults to the OIDv4 graph's (``AnchorOptions()``): 1917 anchors.

    Same order as MediaPipe's ``SsdAnchorsCalculator`` (no fixed anchor size, no multiscale mode):
    layer by layer, then row, column, and the layer's (ratio, scale) pairs; a pair's height is
    ``scale / sqrt(ratio)`` and width ``scale · sqrt(ratio)``.
    """
    options = options or AnchorOptions()
    if len(set(options.strides)) != len(options.strides):
        raise ValueError(f"strides must be distinct (merged same-stride layers are not supported): {options.strides}")
    anchors = []
    for layer, stride in enumerate(options.strides):
        scale = layer_scale(options, layer)
        if layer == 0 and options.reduce_boxes_in_lowest_layer:
            pairs = [(1.0, 0.1), (2.0, scale), (0.5, scale)]
        else:
            pairs = [(ratio, scale) for ratio in options.aspect_ratios]
            if options.interpolated_scale_aspect_ratio > 0:
                interpolated = math.sqrt(scale * layer_scale(options, layer + 1))
                pairs.append((options.interpolated_scale_aspect_ratio, interpolated))
        sizes = np.array([(s * math.sqrt(r), s / math.sqrt(r)) for r, s in pairs])  # (width, height)
        cells = math.ceil(options.input_size / stride)
        centres = (np.arange(cells) + options.anchor_offset) / cells
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([cx.ravel(), cy.ravel()], axis=1)  # row-major: y outer, x inner
        layer_anchors = np.concatenate([np.repeat(grid, len(pairs), axis=0), np.tile(sizes, (len(grid), 1))], axis=1)
        anchors.append(layer_anchors)
    return np.concatenate(anchors).astype(np.float32)


ANCHORS = ssd_anchors()


def decode_boxes(box_encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, 4) ``(ty, tx, th, tw)`` encodings + (N, 4) ``[cx, cy, w, h]`` anchors → (N, 4) ``[x1, y1, x2, y2]``.

    ``cy = ty / 10 · anchor_h + anchor_cy``, ``cx = tx / 10 · anchor_w + anchor_cx``,
    ``h = exp(th / 5) · anchor_h``, ``w = exp(tw / 5) · anchor_w``; normalised like the anchors.
    """
    y_scale, x_scale, h_scale, w_scale = BOX_SCALES
    encodings = box_encodings.astype(np.float32)
    centre_x = encodings[:, 1] / x_scale * anchors[:, 2] + anchors[:, 0]
    centre_y = encodings[:, 0] / y_scale * anchors[:, 3] + anchors[:, 1]
    half_w = np.exp(np.minimum(encodings[:, 3] / w_scale, 20.0)) * anchors[:, 2] / 2
    half_h = np.exp(np.minimum(encodings[:, 2] / h_scale, 20.0)) * anchors[:, 3] / 2
    return np.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=1)


def class_mask_for(classes: set[int] | None, num_classes: int = len(OID_LABELS)) -> np.ndarray:
    """Boolean mask over the model's classes: the wanted ones (all for ``None``), never the background."""
    mask = np.ones(num_classes, bool) if classes is None else np.isin(np.arange(num_classes), sorted(classes))
    mask[BACKGROUND] = False
    return mask


def decode_outputs(
    box_encodings: np.ndarray,
    class_logits: np.ndarray,
    anchors: np.ndarray,
    score_threshold: float,
) -> Candidates:
    """Turn raw SSD outputs into scored boxes (pure; no NMS, no clipping).

    ``box_encodings`` (A, 4) and ``class_logits`` (A, C) are the model outputs without the batch
    dimension, ``anchors`` (A, 4) from :func:`ssd_anchors`. Each anchor takes its best class other
    than the background, with score ``sigmoid(logit)``; it becomes a candidate if that score is at
    least ``score_threshold``. Boxes are normalised ``[x1, y1, x2, y2]``; ``class_ids`` index
    :data:`OID_LABELS`.
    """
    if box_encodings.ndim != 2 or box_encodings.shape[1] != 4 or anchors.shape != box_encodings.shape \
            or class_logits.ndim != 2 or class_logits.shape[0] != box_encodings.shape[0]:
        raise ValueError(f"expected (A, 4) boxes, (A, C) logits and (A, 4) anchors; got {box_encodings.shape}, "
                         f"{class_logits.shape} and {anchors.shape}")
    logits = class_logits.astype(np.float32, copy=True)
    logits[:, BACKGROUND] = -np.inf
    class_ids = logits.argmax(axis=1)
    best = logits[np.arange(len(logits)), class_ids]
    with np.errstate(over="ignore"):
        scores = 1.0 / (1.0 + np.exp(-best))
    keep = np.flatnonzero(scores >= score_threshold)
    return Candidates(
        decode_boxes(box_encodings[keep], anchors[keep]).astype(np.float32),
        class_ids[keep].astype(np.int64),
        scores[keep].astype(np.float32),
    )


def select_detections(candidates: Candidates, iou_threshold: float, class_mask: np.ndarray | None = None,
                      max_detections: int = MAX_DETECTIONS) -> Detections:
    """Clip to the image, drop empty boxes, class-agnostic NMS, then keep the classes set in ``class_mask``.

    Filtering after NMS makes ``detect`` a pure filter: the result is exactly the ``["*"]`` result's
    detections of those classes (as with NanoDet's class-aware NMS). Labels in the emitted spelling.
    """
    boxes = np.clip(candidates.boxes, 0.0, 1.0)
    visible = np.flatnonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    keep = visible[non_max_suppression(boxes[visible], candidates.scores[visible], iou_threshold)]
    if class_mask is not None:
        keep = keep[class_mask[candidates.class_ids[keep]]]
    keep = keep[:max_detections]
    return Detections(
        boxes[keep].astype(np.float32).reshape(-1, 4),
        [OUTPUT_LABELS[i] for i in candidates.class_ids[keep]],
        candidates.scores[keep].astype(np.float32),
    )


def preprocess(image_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) → float32 (1, 300, 300, 3) RGB in [-1, 1] (plain resize)."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        shape = getattr(image_bgr, "shape", type(image_bgr).__name__)
        raise ValueError(f"expected a BGR image of shape (H, W, 3), got {shape}")
    resized = cv2.resize(image_bgr, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return (rgb.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1.0))[None]


def read_labelmap(path: str | Path) -> tuple[str, ...]:
    """The labels in a label map file (one a line), e.g. the ``ssd_oid_labels`` asset."""
    return tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())


class SsdOidDetector:
    """SSD-MobileNetV2 OIDv4 on LiteRT; one inference thread by default (one per worker process).

    Usage: ``SsdOidDetector(path, detect=["person"]).detect(image_bgr)``.
    ``detect`` takes COCO names (``person``, ``cup``), OID names (``Coffee cup``) or the OID-only
    emitted names (``vehicle``); it filters the detections after NMS, so ``detect=["dog"]`` gives
    exactly the dogs of ``detect=["*"]``. ``detect()`` is safe to call from several threads (the
    interpreter is used under a lock).
    """

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.35,
        iou_threshold: float = 0.5,
        num_threads: int = 1,
        detect: Sequence[str] | None = None,
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        model_path = check_detector_settings("SSD OIDv4", model_path, score_threshold, iou_threshold, num_threads)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.class_mask = class_mask_for(resolve_oid_classes(detect))
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._lock = threading.Lock()
        inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        outputs = {d["name"]: d for d in self.interpreter.get_output_details()}
        expected = {INPUT_NAME: (1, INPUT_SIZE, INPUT_SIZE, 3), BOXES_NAME: (1, NUM_ANCHORS, 4),
                    SCORES_NAME: (1, NUM_ANCHORS, len(OID_LABELS))}
        found = {name: tuple(int(n) for n in d["shape"]) for name, d in {**inputs, **outputs}.items()}
        if any(found.get(name) != shape for name, shape in expected.items()):
            raise ValueError(f"{model_path}: expected tensors {expected}, got {found}")
        self.input_index = inputs[INPUT_NAME]["index"]
        self.boxes_index = outputs[BOXES_NAME]["index"]
        self.scores_index = outputs[SCORES_NAME]["index"]

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Detect objects in a BGR uint8 image (H, W, 3)."""
        blob = preprocess(image_bgr)
        with self._lock:
            self.interpreter.set_tensor(self.input_index, blob)
            self.interpreter.invoke()
            box_encodings = self.interpreter.get_tensor(self.boxes_index)[0]
            class_logits = self.interpreter.get_tensor(self.scores_index)[0]
        candidates = decode_outputs(box_encodings, class_logits, ANCHORS, self.score_threshold)
        return select_detections(candidates, self.iou_threshold, self.class_mask)
