"""NanoDet detector and PeekingDuck node on real images (vtest.avi, dog.jpg), plus the pure decode."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from framecontract.assets import asset_path
from tests.worker.conftest import assert_well_formed, boxes_contain
from worker.detectors.coco import COCO_LABELS, canonical_label
from worker.detectors.nanodet import (
    Candidates,
    LevelOutput,
    NanoDetDetector,
    class_aware_nms,
    decode_outputs,
    match_outputs_to_levels,
    non_max_suppression,
    resolve_class_filter,
)

VTEST_SIZE = np.array([768, 576, 768, 576])
FRAME0_PEOPLE = [(515, 195), (663, 281), (267, 266)]
"""Centres (pixels) of the three people walking in frame 0 of vtest.avi, read off the image."""


@pytest.fixture(scope="module")
def detector() -> NanoDetDetector:
    return NanoDetDetector(asset_path("nanodet"))


@pytest.fixture(scope="module")
def vtest_frames() -> dict[int, np.ndarray]:
    """Frames 0, 100, 200 and 300 of vtest.avi, decoded with OpenCV."""
    capture = cv2.VideoCapture(str(asset_path("vtest")))
    frames = {}
    for index in range(301):
        ok, frame = capture.read()
        assert ok, f"vtest.avi ended at frame {index}"
        if index % 100 == 0:
            frames[index] = frame
    capture.release()
    return frames


def test_finds_the_three_people_in_vtest_frame_0(detector: NanoDetDetector, vtest_frames: dict) -> None:
    found = detector.detect(vtest_frames[0])
    assert_well_formed(found, COCO_LABELS)
    people = found.bboxes[[label == "person" for label in found.labels]] * VTEST_SIZE
    assert len(people) >= 3
    for centre in FRAME0_PEOPLE:
        assert boxes_contain(people, centre), f"no person box around {centre}: {people.round()}"
    heights = people[:, 3] - people[:, 1]
    assert np.all((heights > 40) & (heights < 150)), "pedestrian boxes should be person-sized"


@pytest.mark.parametrize("index", [100, 200, 300])
def test_finds_several_people_in_later_vtest_frames(detector: NanoDetDetector, vtest_frames: dict, index: int) -> None:
    found = detector.detect(vtest_frames[index])
    assert_well_formed(found, COCO_LABELS)
    assert found.labels.count("person") >= 5
    assert np.all(found.scores >= 0.35)


def test_finds_dog_and_bicycle_in_dog_jpg(detector: NanoDetDetector, dog_image: np.ndarray) -> None:
    found = detector.detect(dog_image)
    assert_well_formed(found, COCO_LABELS)
    size = np.array([dog_image.shape[1], dog_image.shape[0]] * 2)
    by_label = {label: box * size for label, box in zip(found.labels, found.bboxes, strict=True)}
    assert {"dog", "bicycle"} <= set(by_label)
    assert boxes_contain(by_label["dog"][None], (240, 380))  # the dog sits in the lower left
    assert boxes_contain(by_label["bicycle"][None], (400, 280))


def test_detect_filter_keeps_only_the_named_classes(dog_image: np.ndarray) -> None:
    only_dogs = NanoDetDetector(asset_path("nanodet"), detect=["dog"]).detect(dog_image)
    assert only_dogs.labels == ["dog"]
    aliases = NanoDetDetector(asset_path("nanodet"), detect=["Motorbike", "bicycle"]).detect(dog_image)
    assert aliases.labels == ["bicycle"]


def test_unknown_class_name_is_an_error_listing_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['unicorn'\].*person, bicycle"):
        NanoDetDetector(asset_path("nanodet"), detect=["person", "unicorn"])
    with pytest.raises(ValueError, match="non-empty"):
        resolve_class_filter([])


def test_bad_image_is_a_clear_error(detector: NanoDetDetector) -> None:
    with pytest.raises(ValueError, match=r"expected a BGR image of shape \(H, W, 3\), got \(48, 64\)"):
        detector.detect(np.zeros((48, 64), np.uint8))


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="deploy.assets fetch"):
        NanoDetDetector(tmp_path / "nanodet.onnx")


def test_canonical_label() -> None:
    assert len(COCO_LABELS) == 80 == len(set(COCO_LABELS))
    assert COCO_LABELS.index("dog") == 16
    assert canonical_label(" TV  Monitor ") is None
    assert canonical_label("tvmonitor") == "tv"
    assert canonical_label("Traffic  Light") == "traffic light"


# ---------------------------------------------------------------- pure decode, on synthetic maps


def one_hot_bins(bins: list[int], reg_max: int = 10) -> np.ndarray:
    """Regression logits whose softmax is (numerically exactly) one-hot at the given bin per side."""
    logits = np.zeros((4, reg_max + 1), np.float32)
    logits[np.arange(4), bins] = 200.0
    return logits.reshape(-1)


def synthetic_level(stride: int, grid_w: int, grid_h: int, classes: int = 3) -> LevelOutput:
    return LevelOutput(stride, np.zeros((grid_w * grid_h, classes), np.float32),
                       np.zeros((grid_w * grid_h, 44), np.float32))


def test_decode_outputs_places_a_known_box_exactly() -> None:
    level = synthetic_level(stride=8, grid_w=4, grid_h=2)  # a 32x16 input
    cell = 1 * 4 + 2  # row 1, column 2: centre (2.5 * 8, 1.5 * 8) = (20, 12)
    level.scores[cell, 1] = 0.9
    level.scores[5, 0] = 0.2  # below the threshold
    level.regression[cell] = one_hot_bins([1, 2, 3, 1])  # l, t, r, b in strides
    found = decode_outputs([level], input_width=32, input_height=16, score_threshold=0.35)
    np.testing.assert_array_equal(found.boxes, [[20 - 8, 12 - 16, 20 + 24, 12 + 8]])
    np.testing.assert_array_equal(found.class_ids, [1])
    np.testing.assert_array_equal(found.scores, np.float32([0.9]))


def test_decode_outputs_uses_the_distribution_expectation() -> None:
    level = synthetic_level(stride=16, grid_w=1, grid_h=1)
    level.scores[0, 2] = 0.5
    logits = np.full((4, 11), -200.0, np.float32)
    logits[:, 2] = logits[:, 3] = 0.0  # two equal bins: expectation 2.5 strides = 40 px
    level.regression[0] = logits.reshape(-1)
    found = decode_outputs([level], 16, 16, score_threshold=0.35)
    np.testing.assert_allclose(found.boxes, [[8 - 40, 8 - 40, 8 + 40, 8 + 40]], atol=1e-4)


def test_decode_outputs_class_mask_and_several_levels() -> None:
    fine, coarse = synthetic_level(8, 2, 2), synthetic_level(16, 1, 1)
    fine.scores[3, 0] = 0.8
    coarse.scores[0, 2] = 0.7
    both = decode_outputs([fine, coarse], 16, 16, 0.35)
    assert both.class_ids.tolist() == [0, 2]
    masked = decode_outputs([fine, coarse], 16, 16, 0.35, class_mask=np.array([False, False, True]))
    assert masked.class_ids.tolist() == [2]
    nothing = decode_outputs([fine, coarse], 16, 16, 0.95)
    assert nothing.boxes.shape == (0, 4) and nothing.scores.shape == (0,)


def test_decode_outputs_rejects_maps_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="stride 8: expected 4 cells"):
        decode_outputs([synthetic_level(8, 3, 3)], 16, 16, 0.35)


def test_nms_is_class_aware() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert non_max_suppression(boxes, scores, 0.5).tolist() == [0, 3]
    same_class = Candidates(boxes, np.array([0, 0, 0, 0]), scores)
    assert class_aware_nms(same_class, 0.5).tolist() == [0, 3]
    person_on_bicycle = Candidates(boxes, np.array([0, 0, 1, 0]), scores)
    assert class_aware_nms(person_on_bicycle, 0.5).tolist() == [0, 2, 3]


def test_outputs_are_matched_to_strides_by_shape_not_position() -> None:
    shapes = {"c": (1, 169, 44), "a": (1, 2704, 80), "f": (1, 676, 80), "b": (1, 169, 80),
              "e": (1, 2704, 44), "d": (1, 676, 44)}
    assert match_outputs_to_levels(shapes, 80, 44) == {8: ("a", "e"), 16: ("f", "d"), 32: ("b", "c")}
    with pytest.raises(ValueError, match="stride 32"):
        match_outputs_to_levels({k: v for k, v in shapes.items() if k != "c"}, 80, 44)


# ---------------------------------------------------------------- the PeekingDuck node
