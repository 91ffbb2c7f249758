"""SSD-MobileNetV2 OIDv4 detector and PeekingDuck node on real images (vtest.avi, dog.jpg), plus the pure decode.

Also measures its single-thread latency against NanoDet on the same frame in the same run.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from framecontract.assets import asset_path
from tests.worker.conftest import assert_well_formed, boxes_contain
from worker.detectors.nanodet import Candidates
from worker.detectors.oid import OID_LABELS, OUTPUT_LABELS, oid_indices_for, output_label, resolve_oid_classes
from worker.detectors.ssd_oid import (
    ANCHORS,
    AnchorOptions,
    SsdOidDetector,
    class_mask_for,
    decode_boxes,
    decode_outputs,
    preprocess,
    read_labelmap,
    select_detections,
    ssd_anchors,
)

VTEST_SIZE = np.array([768, 576, 768, 576])
PEOPLE = {
    100: [(507, 190), (601, 195), (362, 234), (391, 222), (231, 79)],
    200: [(95, 187), (236, 230), (497, 187), (632, 316), (724, 304), (690, 128)],
}
"""Centres (pixels) of pedestrians in frames 100 and 200 of vtest.avi, read off the frames (NanoDet
finds the same ones)."""


@pytest.fixture(scope="module")
def detector() -> SsdOidDetector:
    return SsdOidDetector(asset_path("ssd_oid"))


@pytest.fixture(scope="module")
def vtest_frames() -> dict[int, np.ndarray]:
    """Frames 100 and 200 of vtest.avi, decoded with OpenCV."""
    capture = cv2.VideoCapture(str(asset_path("vtest")))
    frames = {}
    for index in range(201):
        ok, frame = capture.read()
        assert ok, f"vtest.avi ended at frame {index}"
        if index in PEOPLE:
            frames[index] = frame
    capture.release()
    return frames


# ---------------------------------------------------------------- real images


@pytest.mark.parametrize("index", sorted(PEOPLE))
def test_finds_the_people_in_vtest_frames(detector: SsdOidDetector, vtest_frames: dict, index: int) -> None:
    found = detector.detect(vtest_frames[index])
    assert_well_formed(found, OUTPUT_LABELS[1:])
    assert np.all(found.scores >= 0.35)
    people = found.bboxes[[label == "person" for label in found.labels]] * VTEST_SIZE
    assert len(people) >= len(PEOPLE[index])
    for centre in PEOPLE[index]:
        assert boxes_contain(people, centre), f"frame {index}: no person box around {centre}: {people.round()}"
    heights = people[:, 3] - people[:, 1]
    assert np.all((heights > 20) & (heights < 150)), "pedestrian boxes should be person-sized"


def test_finds_dog_and_bicycle_in_dog_jpg(detector: SsdOidDetector, dog_image: np.ndarray) -> None:
    found = detector.detect(dog_image)
    assert_well_formed(found, OUTPUT_LABELS[1:])
    size = np.array([dog_image.shape[1], dog_image.shape[0]] * 2)
    by_label = {label: box * size for label, box in zip(found.labels, found.bboxes, strict=True)}
    assert {"dog", "bicycle"} <= set(by_label), found.labels  # COCO spelling, not "Dog"/"Bicycle"
    assert boxes_contain(by_label["dog"][None], (240, 380))  # the dog sits in the lower left
    assert not boxes_contain(by_label["dog"][None], (600, 130))  # ... not up by the pickup
    assert boxes_contain(by_label["bicycle"][None], (400, 280))


def test_detect_filter_keeps_only_the_named_classes(detector: SsdOidDetector, dog_image: np.ndarray) -> None:
    everything = detector.detect(dog_image)
    only_dogs = SsdOidDetector(asset_path("ssd_oid"), detect=["dog"]).detect(dog_image)
    assert only_dogs.labels == ["dog"]
    dog = everything.labels.index("dog")
    np.testing.assert_array_equal(only_dogs.bboxes, everything.bboxes[dog:dog + 1])
    oid_spelling = SsdOidDetector(asset_path("ssd_oid"), detect=["Bicycle", "Car"]).detect(dog_image)
    assert sorted(oid_spelling.labels) == ["bicycle", "car"]
    assert SsdOidDetector(asset_path("ssd_oid"), detect=["cat", "vehicle"]).detect(dog_image).labels == []


def test_unknown_or_undetectable_class_name_is_an_error_listing_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['truck'\].*detects: bicycle, book,"):
        SsdOidDetector(asset_path("ssd_oid"), detect=["person", "truck"])  # COCO has it, this model not
    with pytest.raises(ValueError, match="non-empty"):
        resolve_oid_classes([])


def test_bad_image_is_a_clear_error(detector: SsdOidDetector) -> None:
    with pytest.raises(ValueError, match=r"expected a BGR image of shape \(H, W, 3\), got \(48, 64\)"):
        detector.detect(np.zeros((48, 64), np.uint8))


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="deploy.assets fetch"):
        SsdOidDetector(tmp_path / "ssd.tflite")


# ---------------------------------------------------------------- labels


def test_labels_match_the_label_map_shipped_with_the_model() -> None:
    assert read_labelmap(asset_path("ssd_oid_labels")) == OID_LABELS
    assert len(OID_LABELS) == 24 and OID_LABELS[0] == "???"


def test_emitted_names_are_coco_where_coco_has_the_class() -> None:
    assert [output_label(n) for n in ("Person", "Car", "Dog", "Bicycle", "Mug", "Coffee cup", "Cattle")] == [
        "person", "car", "dog", "bicycle", "cup", "cup", "cow"]
    assert output_label("Vehicle") == "vehicle" and output_label("Stationary bicycle") == "stationary bicycle"
    from worker.detectors.coco import COCO_LABELS

    coco_named = {label for label in OUTPUT_LABELS[1:] if label in COCO_LABELS}
    assert coco_named == {"bicycle", "laptop", "person", "chair", "cow", "cat", "mouse", "tv", "cup",
                          "dining table", "bottle", "dog", "book", "car"}
    assert oid_indices_for("cup") == {12, 13}
    assert oid_indices_for("tvmonitor") == {10}  # a COCO alias PeekingDuck accepts
    assert oid_indices_for(" coffee  CUP ") == {13}
    assert oid_indices_for("truck") == set()


# ---------------------------------------------------------------- pure anchors and decode


def test_anchors_follow_mediapipe_ssd_anchors_calculator() -> None:
    assert ANCHORS.shape == (1917, 4) and ANCHORS.dtype == np.float32
    # layer sizes: 19x19x3, then 10x10, 5x5, 3x3, 2x2, 1x1 cells with 6 anchors each
    bounds = np.cumsum([0, 19 * 19 * 3, 100 * 6, 25 * 6, 9 * 6, 4 * 6, 1 * 6])
    assert bounds[-1] == 1917
    first = ANCHORS[: bounds[1]]
    np.testing.assert_allclose(first[:3], [[0.5 / 19, 0.5 / 19, 0.1, 0.1],
                                           [0.5 / 19, 0.5 / 19, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)],
                                           [0.5 / 19, 0.5 / 19, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)]], rtol=1e-6)
    np.testing.assert_allclose(first[3, :2], [1.5 / 19, 0.5 / 19], rtol=1e-6)  # x moves first, then y
    np.testing.assert_allclose(first[19 * 3, :2], [0.5 / 19, 1.5 / 19], rtol=1e-6)
    second = ANCHORS[bounds[1]: bounds[1] + 6]  # scale 0.35, ratios 1, 2, 0.5, 3, 1/3, then interpolated
    scale, next_scale = 0.35, 0.5
    widths = [scale, scale * math.sqrt(2), scale / math.sqrt(2), scale * math.sqrt(3), scale * math.sqrt(0.3333),
              math.sqrt(scale * next_scale)]
    np.testing.assert_allclose(second[:, 2], widths, rtol=1e-5)
    np.testing.assert_allclose(second[:, 2] * second[:, 3], [w * w / r for w, r in
                                                             zip(widths, [1, 2, 0.5, 3, 0.3333, 1], strict=True)],
                               rtol=1e-5)
    last = ANCHORS[-6:]  # 1x1 map, scale 0.95, interpolated with 1.0
    np.testing.assert_allclose(last[:, :2], 0.5)
    np.testing.assert_allclose(last[[0, -1], 2], [0.95, math.sqrt(0.95)], rtol=1e-6)
    assert len(ssd_anchors(AnchorOptions(reduce_boxes_in_lowest_layer=False))) == 1917 + 19 * 19 * 3
    assert len(ssd_anchors(AnchorOptions(interpolated_scale_aspect_ratio=0.0))) == 1917 - (100 + 25 + 9 + 4 + 1)
    with pytest.raises(ValueError, match="distinct"):
        ssd_anchors(AnchorOptions(strides=(16, 16)))


def test_decode_boxes_inverts_the_encoding() -> None:
    anchors = np.array([[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.1, 0.1]], np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((2, 4), np.float32), anchors),
                               [[0.4, 0.3, 0.6, 0.7], [0.2, 0.7, 0.3, 0.8]], atol=1e-6)
    # ty=10 moves the centre down one anchor height (0.5 → 0.9), tx=-5 left half a width (0.5 → 0.4);
    # th=0 keeps the height (0.4), tw=5·ln 2 doubles the width (0.2 → 0.4)
    encoded = np.array([[10.0, -5.0, 0.0, 5 * math.log(2)]], np.float32)
    np.testing.assert_allclose(decode_boxes(encoded, anchors[:1]), [[0.2, 0.7, 0.6, 1.1]], atol=1e-6)


def test_decode_outputs_scores_classes_and_threshold() -> None:
    anchors = np.array([[0.5, 0.5, 0.2, 0.2]] * 4, np.float32)
    logits = np.full((4, 24), -10.0, np.float32)
    logits[0, 0] = 9.0  # background wins: never a detection
    logits[1, 4] = 2.0  # Person, sigmoid 0.881
    logits[2, 18], logits[2, 23] = 1.0, 0.5  # Vehicle 0.731 beats Car 0.622
    logits[3, 20] = -1.0  # Dog at 0.269: below the threshold
    found = decode_outputs(np.zeros((4, 4), np.float32), logits, anchors, score_threshold=0.35)
    assert found.class_ids.tolist() == [4, 18]
    np.testing.assert_allclose(found.scores, [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))], rtol=1e-6)
    np.testing.assert_allclose(found.boxes, [[0.4, 0.4, 0.6, 0.6]] * 2, atol=1e-6)
    assert len(decode_outputs(np.zeros((4, 4), np.float32), logits, anchors, 0.95).scores) == 0
    with pytest.raises(ValueError, match="expected"):
        decode_outputs(np.zeros((4, 4), np.float32), logits[:3], anchors, 0.35)


def test_select_detections_is_class_agnostic_clips_and_drops_empty_boxes() -> None:
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.11, 0.1, 0.51, 0.5], [-0.2, 0.6, 0.3, 1.4], [1.1, 0.2, 1.3, 0.4]],
                     np.float32)
    candidates = Candidates(boxes, np.array([18, 23, 4, 20]), np.array([0.7, 0.6, 0.5, 0.9], np.float32))
    found = select_detections(candidates, iou_threshold=0.5)
    assert found.labels == ["vehicle", "person"]  # car suppressed by the overlapping vehicle; dog off-image
    np.testing.assert_allclose(found.bboxes, [[0.1, 0.1, 0.5, 0.5], [0.0, 0.6, 0.3, 1.0]])
    assert found.scores.tolist() == pytest.approx([0.7, 0.5])
    people = select_detections(candidates, 0.5, class_mask_for(resolve_oid_classes(["person"])))
    assert people.labels == ["person"] and people.bboxes.tolist() == found.bboxes[1:].tolist()
    cars = select_detections(candidates, 0.5, class_mask_for(resolve_oid_classes(["car"])))
    assert len(cars) == 0, "detect filters after NMS: the vehicle box still suppresses the car box"


def test_preprocess_is_rgb_in_minus_one_to_one() -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    blob = preprocess(image)
    assert blob.shape == (1, 300, 300, 3) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0, 150, 150], [-1.0, -1.0, 1.0])


# ---------------------------------------------------------------- the PeekingDuck node and pipeline



def test_example_pipeline_yaml_runs(dog_image: np.ndarray) -> None:
    from worker.pipeline import Pipeline

    pipeline = Pipeline.from_yaml(Path(__file__).resolve().parents[2] / "worker" / "pipelines" / "ssd.yml")
    assert pipeline.model_name == "model.ssd_oid"
    outputs = pipeline.run(dog_image.copy())
    assert {"dog", "bicycle"} <= set(outputs["bbox_labels"])
