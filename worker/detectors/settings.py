"""Checks shared by the detectors' constructors.

Usage::

    model_path = check_detector_settings("NanoDet", model_path, score_threshold, iou_threshold, num_threads)
"""

from __future__ import annotations

from pathlib import Path


def check_detector_settings(
    model_name: str, model_path: str | Path, score_threshold: float, iou_threshold: float, num_threads: int
) -> Path:
    """Validate a detector's settings; return the model path. ValueError / FileNotFoundError say what is wrong."""
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"thresholds must be in [0, 1]; got score {score_threshold}, iou {iou_threshold}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"{model_name} model {path} does not exist; run `python -m deploy.assets fetch`")
    return path
