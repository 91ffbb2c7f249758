"""WORKER_CUSTOM_NODES: the user's own PeekingDuck nodes, in PeekingDuck's custom-node layout."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from worker.pipeline import Pipeline, PipelineConfigError, user_nodes_dir

REPO = Path(__file__).resolve().parents[2]
CRASH_NODES = REPO / "tests" / "e2e" / "custom_nodes"

NODE = '''
from typing import Any

from peekingduck.pipeline.nodes.abstract_node import AbstractNode

from custom_nodes.dabble.helpers import brighten


class Node(AbstractNode):
    def __init__(self, config: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(config, node_path=__name__, **kwargs)

    def run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"img": brighten(inputs["img"], self.add), "tag": self.label["text"]}
'''


CONFIG = "input: [img]\noutput: [img, tag]\nadd: 10\nlabel:\n  text: hi\n"


def user_folder(tmp_path: Path, config: str = CONFIG) -> Path:
    folder = tmp_path / "my_nodes"
    (folder / "dabble").mkdir(parents=True)
    (folder / "configs" / "dabble").mkdir(parents=True)
    (folder / "dabble" / "brighter.py").write_text(NODE)
    (folder / "dabble" / "helpers.py").write_text("def brighten(img, add):\n    return img + add\n")
    (folder / "configs" / "dabble" / "brighter.yml").write_text(config)
    return folder


def pipeline_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_users_node_runs_with_its_config_and_overrides(tmp_path) -> None:
    folder = user_folder(tmp_path)
    path = pipeline_file(tmp_path, """\
        nodes:
          - custom_nodes.dabble.brighter:
              add: 5
              label: {text: hello}
          - augment.brightness: {beta: 1}
        """)
    pipeline = Pipeline.from_yaml(path, custom_nodes=folder)
    out = pipeline.run(np.full((4, 4, 3), 100, np.uint8))
    assert int(out["img"][0, 0, 0]) == 106 and out["tag"] == "hello"
    node = pipeline.nodes[0]
    assert node.config["add"] == 5 and node.config["pkd_viewer"] is False
    assert node.name == "custom_nodes.dabble.brighter"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [("add: 5\n              colour: red", "node custom_nodes.dabble.brighter: unknown config key(s) colour; known: "
      "add, label"),
     ("label: {font: x}", "node custom_nodes.dabble.brighter: unknown config key(s) label.font; known: text")],
)
def test_unknown_keys_are_refused_at_start_up(tmp_path, overrides: str, message: str) -> None:
    path = pipeline_file(tmp_path, f"""\
        nodes:
          - custom_nodes.dabble.brighter:
              {overrides}
        """)
    with pytest.raises(PipelineConfigError) as err:
        Pipeline.from_yaml(path, custom_nodes=user_folder(tmp_path))
    assert str(err.value) == message


def test_what_is_wrong_with_a_users_folder_is_named(tmp_path) -> None:
    folder = user_folder(tmp_path)
    (folder / "configs" / "dabble" / "brighter.yml").unlink()
    path = pipeline_file(tmp_path, "nodes:\n  - custom_nodes.dabble.brighter\n")
    with pytest.raises(PipelineConfigError, match=r"brighter.py has no config file .*configs/dabble/brighter.yml"):
        Pipeline.from_yaml(path, custom_nodes=folder)
    (folder / "configs" / "dabble" / "brighter.yml").write_text("input: [img]\noutput: [img]\nadd: 1\nlabel: {}\n")
    (folder / "dabble" / "brighter.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(PipelineConfigError, match="needs the 'not_a_module_anywhere' package, which is not installed"):
        Pipeline.from_yaml(path, custom_nodes=folder)
    (folder / "dabble" / "brighter.py").write_text("x = 1 / 0\n")
    with pytest.raises(PipelineConfigError, match=r"cannot import .*brighter.py: ZeroDivisionError"):
        Pipeline.from_yaml(path, custom_nodes=folder)
    absent = pipeline_file(tmp_path, "nodes:\n  - custom_nodes.dabble.absent\n")
    with pytest.raises(PipelineConfigError, match="node custom_nodes.dabble.absent: no such node"):
        Pipeline.from_yaml(absent, custom_nodes=folder)


def test_a_name_of_ours_cannot_be_shadowed(tmp_path) -> None:
    folder = user_folder(tmp_path)
    (folder / "model").mkdir()
    (folder / "model" / "nanodet.py").write_text(NODE)
    path = pipeline_file(tmp_path, "nodes:\n  - custom_nodes.model.nanodet\n")
    with pytest.raises(PipelineConfigError, match=r"is both this project's \(.*worker/nodes/model/nanodet.py\) and "
                                                  r"yours \(.*my_nodes/model/nanodet.py\); give yours another name"):
        Pipeline.from_yaml(path, custom_nodes=folder)


def test_the_folder_comes_from_worker_custom_nodes(tmp_path) -> None:
    assert user_nodes_dir({}) is None
    assert user_nodes_dir({"WORKER_CUSTOM_NODES": str(tmp_path)}) == tmp_path.resolve()
    with pytest.raises(PipelineConfigError, match="WORKER_CUSTOM_NODES=/nonexistent: not a folder"):
        user_nodes_dir({"WORKER_CUSTOM_NODES": "/nonexistent"})


def test_the_crash_node_of_the_fault_tests_ends_its_process_on_a_marked_frame_only(tmp_path) -> None:
    """In a child process: an unmarked frame passes, a red-cornered one ends the process with exit code 1."""
    path = pipeline_file(tmp_path, "nodes:\n  - custom_nodes.dabble.crash_on_marker\n")
    script = textwrap.dedent(f"""
        import cv2, numpy as np, sys
        from worker.pipeline import Pipeline
        pipeline = Pipeline.from_yaml({str(path)!r})
        frame = np.full((48, 64, 3), 90, np.uint8)
        pipeline.run(cv2.imdecode(cv2.imencode(".jpg", frame)[1], cv2.IMREAD_COLOR))
        print("unmarked frame passed", flush=True)
        frame[:16, :16] = (0, 0, 255)
        pipeline.run(cv2.imdecode(cv2.imencode(".jpg", frame)[1], cv2.IMREAD_COLOR))
        print("not reached", flush=True)
        """)
    env = dict(os.environ, WORKER_CUSTOM_NODES=str(CRASH_NODES))
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["unmarked frame passed"]
