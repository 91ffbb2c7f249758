"""NanoDet-m 416 (COCO-80) on onnxruntime: preprocess, GFL decode, class-aware NMS.

Usage::

    detector = NanoDetDetector(asset_path("nanodet"), detect=["person", "dog"])
    found = detector.detect(cv2.imread("dog.jpg"))
    found.bboxes   # float32 (N, 4) normalised [x1, y1, x2, y2], clipped to 0..1
    found.labels   # ['dog', ...]
    found.scores   # float32 (N,)

The model (converted by ``deploy.assets``) takes RGB /255 NCHW 1x3x416x416 (plain resize, no
letterbox) and returns, for strides 8/16/32, an 80-class score map (already sigmoid) of shape
``[1, cells, 80]`` and a ``[1, cells, 44]`` regression map: 4 sides (left, top, right, bottom) × 11
bins of a GFL distribution. Outputs are matched to strides by their shape, not their position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from worker.detectors.coco import COCO_LABELS, canonical_label
from worker.detectors.settings import check_detector_settings

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
"""A side's distance is a distribution over bins 0..REG_MAX (in strides)."""
MAX_CANDIDATES = 1000
"""Highest-scoring (cell, class) pairs kept before NMS."""
MAX_DETECTIONS = 100


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections in one image, in descending score order."""

    bboxes: np.ndarray
    """float32 (N, 4): normalised [x1, y1, x2, y2] in 0..1."""
    labels: list[str]
    scores: np.ndarray
    """float32 (N,)."""

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True, eq=False)
class LevelOutput:
    """The two output maps of one feature level (batch dimension removed)."""

    stride: int
    scores: np.ndarray
    """(cells, classes), already sigmoid; cells in row-major order."""
    regression: np.ndarray
    """(cells, 4 * (REG_MAX + 1)): left, top, right, bottom bin logits."""


@dataclass(frozen=True, eq=False)
class Candidates:
    """Decoded boxes before NMS, in input pixels."""

    boxes: np.ndarray
    """float32 (M, 4) [x1, y1, x2, y2] in input pixels, not clipped."""
    class_ids: np.ndarray
    """int64 (M,)."""
    scores: np.ndarray
    """float32 (M,)."""


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def decode_outputs(
    levels: Sequence[LevelOutput],
    input_width: int,
    input_height: int,
    score_threshold: float,
    class_mask: np.ndarray | None = None,
    reg_max: int = REG_MAX,
) -> Candidates:
    """Turn the score and GFL regression maps into scored boxes (pure; no NMS).

    Every (cell, class) pair whose score is at least ``score_threshold`` (and whose class is set in
    the boolean ``class_mask``, if given) becomes a candidate. A side's distance is
    ``softmax(bins) · [0..reg_max] × stride`` from the cell centre ``((col + 0.5)·stride,
    (row + 0.5)·stride)``, and the box is ``[cx − l, cy − t, cx + r, cy + b]``.
    """
    boxes, class_ids, scores = [], [], []
    for level in levels:
        grid_w = -(-input_width // level.stride)
        grid_h = -(-input_height // level.stride)
        if level.scores.shape[0] != grid_w * grid_h or level.regression.shape != (grid_w * grid_h, 4 * (reg_max + 1)):
            raise ValueError(
                f"stride {level.stride}: expected {grid_w * grid_h} cells with {4 * (reg_max + 1)} regression "
                f"channels, got scores {level.scores.shape} and regression {level.regression.shape}"
            )
        level_scores = level.scores if class_mask is None else np.where(class_mask, level.scores, 0.0)
        cells, classes = np.nonzero(level_scores >= score_threshold)
        if cells.size == 0:
            continue
        bins = softmax(level.regression[cells].reshape(-1, 4, reg_max + 1).astype(np.float32))
        distances = bins @ np.arange(reg_max + 1, dtype=np.float32) * level.stride
        centre_x = (cells % grid_w + 0.5) * level.stride
        centre_y = (cells // grid_w + 0.5) * level.stride
        boxes.append(np.stack([centre_x - distances[:, 0], centre_y - distances[:, 1],
                               centre_x + distances[:, 2], centre_y + distances[:, 3]], axis=1))
        class_ids.append(classes)
        scores.append(level_scores[cells, classes])
    if not boxes:
        return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return Candidates(
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(class_ids).astype(np.int64),
        np.concatenate(scores).astype(np.float32),
    )


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices of the kept boxes, highest score first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def class_aware_nms(candidates: Candidates, iou_threshold: float, max_detections: int = MAX_DETECTIONS) -> np.ndarray:
    """NMS within each class (boxes of different classes never suppress each other); kept indices."""
    if len(candidates.scores) == 0:
        return np.zeros(0, np.int64)
    # Shift each class into its own region so one NMS pass never compares boxes of different classes.
    span = float(candidates.boxes.max() - candidates.boxes.min()) + 1.0
    shifted = candidates.boxes + (candidates.class_ids.astype(np.float32) * span)[:, None]
    return non_max_suppression(shifted, candidates.scores, iou_threshold)[:max_detections]


def resolve_class_filter(detect: Sequence[str] | None) -> np.ndarray | None:
    """Boolean mask over COCO_LABELS for ``detect``; ``None`` (all classes) for ``None`` or ``["*"]``."""
    if detect is None or "*" in detect:
        return None
    if isinstance(detect, str) or not detect:
        raise ValueError(f"detect must be a non-empty list of class names or ['*'], got {detect!r}")
    unknown = [name for name in detect if not isinstance(name, str) or canonical_label(name) is None]
    if unknown:
        raise ValueError(f"unknown class name(s) {unknown} in detect; valid COCO names: {', '.join(COCO_LABELS)}")
    wanted = {canonical_label(name) for name in detect}
    return np.array([label in wanted for label in COCO_LABELS])


def match_outputs_to_levels(output_shapes: dict[str, tuple[int, ...]], num_classes: int, reg_channels: int,
                            input_size: int = INPUT_SIZE) -> dict[int, tuple[str, str]]:
    """Map stride → (score output name, regression output name) by shape; ValueError if they do not fit."""
    by_cells: dict[int, dict[int, str]] = {}
    for name, shape in output_shapes.items():
        if len(shape) != 3 or shape[0] != 1 or shape[2] not in (num_classes, reg_channels):
            raise ValueError(f"unexpected model output {name} with shape {shape}")
        by_cells.setdefault(int(shape[1]), {})[int(shape[2])] = name
    levels = {}
    for stride in STRIDES:
        cells = (-(-input_size // stride)) ** 2
        pair = by_cells.get(cells, {})
        if num_classes not in pair or reg_channels not in pair:
            raise ValueError(f"no score/regression outputs with {cells} cells (stride {stride}) in {output_shapes}")
        levels[stride] = (pair[num_classes], pair[reg_channels])
    return levels


class NanoDetDetector:
    """NanoDet-m 416 COCO-80 on onnxruntime; one inference thread by default (one per worker process).

    Usage: ``NanoDetDetector(path, detect=["person"]).detect(image_bgr)``.
    NMS is class-aware: a person and the bicycle under them do not suppress each other.
    """

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.35,
        iou_threshold: float = 0.5,
        num_threads: int = 1,
        detect: list[str] | None = None,
    ) -> None:
        import onnxruntime

        model_path = check_detector_settings("NanoDet", model_path, score_threshold, iou_threshold, num_threads)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.class_mask = resolve_class_filter(detect)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        (model_input,) = self.session.get_inputs()
        if list(model_input.shape) != [1, 3, INPUT_SIZE, INPUT_SIZE]:
            raise ValueError(f"{model_path}: expected input 1x3x{INPUT_SIZE}x{INPUT_SIZE}, got {model_input.shape}")
        self.input_name = model_input.name
        shapes = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
        self.levels = match_outputs_to_levels(shapes, len(COCO_LABELS), 4 * (REG_MAX + 1))
        self.output_names = [name for stride in STRIDES for name in self.levels[stride]]

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Detect objects in a BGR uint8 image (H, W, 3)."""
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            shape = getattr(image_bgr, "shape", type(image_bgr).__name__)
            raise ValueError(f"expected a BGR image of shape (H, W, 3), got {shape}")
        blob = cv2.dnn.blobFromImage(image_bgr, 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), swapRB=True, crop=False)
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: blob}),
                           strict=True))
        levels = [LevelOutput(stride, outputs[score_name][0], outputs[reg_name][0])
                  for stride, (score_name, reg_name) in self.levels.items()]
        candidates = decode_outputs(levels, INPUT_SIZE, INPUT_SIZE, self.score_threshold, self.class_mask)
        candidates = top_candidates(candidates, MAX_CANDIDATES)
        keep = class_aware_nms(candidates, self.iou_threshold)
        bboxes = np.clip(candidates.boxes[keep] / INPUT_SIZE, 0.0, 1.0).astype(np.float32)
        labels = [COCO_LABELS[i] for i in candidates.class_ids[keep]]
        return Detections(bboxes.reshape(-1, 4), labels, candidates.scores[keep].astype(np.float32))


def top_candidates(candidates: Candidates, limit: int) -> Candidates:
    """The ``limit`` highest-scoring candidates."""
    if len(candidates.scores) <= limit:
        return candidates
    top = np.argpartition(-candidates.scores, limit - 1)[:limit]
    return Candidates(candidates.boxes[top], candidates.class_ids[top], candidates.scores[top])
