"""Pipeline YAML parsing and node building (PeekingDuck's own nodes; no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from worker.pipeline import NodeSpec, Pipeline, PipelineConfigError, check_node_wiring, parse_pipeline_config


def test_parse_names_and_overrides() -> None:
    specs = parse_pipeline_config({"nodes": ["draw.bbox", {"custom_nodes.model.nanodet": {"score_threshold": 0.5}}]})
    assert specs == [NodeSpec("draw.bbox"), NodeSpec("custom_nodes.model.nanodet", {"score_threshold": 0.5})]
    assert specs[1].is_custom and specs[1].node_path == "model.nanodet"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "pipeline config must be a mapping with a 'nodes' list"),
        ({"nodes": []}, "'nodes' must be a non-empty list"),
        ({"nodes": [1]}, "node 1: expected a node name or {name: config}, got 1"),
        ({"nodes": ["input.visual"]}, "node 1 (input.visual): expected '<type>.<name>' or 'custom_nodes.<type>.<name>' "
         "with type one of augment, model, dabble, draw (the worker supplies the input and stores the output)"),
        ({"nodes": [{"draw.bbox": [1]}]}, "node 1 (draw.bbox): config must be a mapping"),
    ],
)
def test_bad_configs_say_what_is_wrong(config, message: str) -> None:
    with pytest.raises(PipelineConfigError) as err:
        parse_pipeline_config(config)
    assert str(err.value) == message


def test_wiring_check_names_the_missing_input() -> None:
    with pytest.raises(PipelineConfigError) as err:
        check_node_wiring([("draw.bbox", ["bboxes", "img", "bbox_labels"], ["none"])])
    assert str(err.value) == "node draw.bbox needs bboxes, bbox_labels, which no earlier node produces (available: img)"


def test_unknown_node_and_unknown_key(tmp_path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("nodes:\n  - draw.nothing\n")
    with pytest.raises(PipelineConfigError, match=r"node draw.nothing: no such node"):
        Pipeline.from_yaml(path)
    path.write_text("nodes:\n  - augment.brightness:\n      colour: 3\n")
    with pytest.raises(PipelineConfigError, match=r"node augment.brightness: unknown config key\(s\) colour; known: "):
        Pipeline.from_yaml(path)
    with pytest.raises(PipelineConfigError, match="does not exist"):
        Pipeline.from_yaml(tmp_path / "absent.yml")


def test_peekingduck_nodes_run_in_order(tmp_path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("nodes:\n  - augment.brightness:\n      beta: 50\n")
    pipeline = Pipeline.from_yaml(path)
    image = np.full((10, 10, 3), 100, np.uint8)
    timings: dict[str, float] = {}
    out = pipeline.run(image, timings=timings)
    assert int(out["img"][0, 0, 0]) == 150
    assert set(timings) == {"augment"}
    assert pipeline.model_name == "none"
