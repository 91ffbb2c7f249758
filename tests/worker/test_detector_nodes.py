"""Both detector nodes as PeekingDuck nodes: output that draw.bbox takes, and clear config errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framecontract.assets import asset_path
from worker.pkd_compat import import_peekingduck

# (node module, a class name the model cannot detect)
NODES = [("nanodet", "unicorn"), ("ssd_oid", "truck")]


@pytest.fixture(scope="module")
def dog_image() -> np.ndarray:
    image = cv2.imread(str(asset_path("dog")))
    assert image is not None
    return image


def node_class(name: str):  # noqa: ANN201
    import importlib

    import_peekingduck()
    return importlib.import_module(f"worker.nodes.model.{name}")


@pytest.mark.parametrize(("name", "_undetectable"), NODES)
def test_node_output_feeds_peekingduck_draw_bbox(dog_image: np.ndarray, name: str, _undetectable: str) -> None:
    from peekingduck.pipeline.nodes.draw.bbox import Node as DrawBbox

    module = node_class(name)
    node = module.Node(config={"detect": ["dog", "bicycle"]}, node_path=f"model.{name}", pkd_base_dir=module.NODES_DIR)
    assert node.inputs == ["img"] and node.outputs == ["bboxes", "bbox_labels", "bbox_scores"]
    image = dog_image.copy()
    outputs = node.run({"img": image})
    assert isinstance(outputs["bboxes"], np.ndarray) and outputs["bboxes"].shape == (2, 4)
    assert isinstance(outputs["bbox_labels"], np.ndarray) and sorted(outputs["bbox_labels"]) == ["bicycle", "dog"]
    assert isinstance(outputs["bbox_scores"], np.ndarray) and outputs["bbox_scores"].shape == (2,)

    DrawBbox(show_labels=True).run({"img": image, **outputs})
    changed = np.any(image != dog_image, axis=2)
    assert changed.sum() > 1000
    x1, y1, x2, y2 = (outputs["bboxes"][0] * ([image.shape[1], image.shape[0]] * 2)).astype(int)
    assert changed[y1 - 2:y1 + 3, x1:x2].mean() > 0.5, "the top edge of the first box should be drawn"


@pytest.mark.parametrize(("name", "undetectable"), NODES)
def test_node_config_errors_are_clear(name: str, undetectable: str) -> None:
    node = node_class(name).Node
    with pytest.raises(ValueError, match="unknown config key.*threshold; known:"):
        node(threshold=0.5)
    with pytest.raises(TypeError, match="score_threshold"):
        node(score_threshold="high")
    with pytest.raises(ValueError, match=undetectable):
        node(detect=[undetectable])
