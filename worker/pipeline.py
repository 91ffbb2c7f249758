"""Build a PeekingDuck pipeline from a YAML file and run it on one frame at a time.

Usage::

    pipeline = Pipeline.from_yaml(Path("worker/pipeline.yml"))
    outputs = pipeline.run(image_bgr)        # dict with "img", "bboxes", "bbox_labels", ...

The YAML is PeekingDuck's own pipeline format (``nodes:`` list, each entry a node name or a
``{name: {config overrides}}`` map). Nodes are built once and their ``run`` is called in order for
every frame, as PeekingDuck's ``Runner`` does for a video, without its ``sys.exit`` on errors,
its working-directory changes, or its input/output nodes (the worker supplies ``img``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from worker.pkd_compat import import_peekingduck
from worker.pkd_offline import install_offline_weights

CUSTOM_PREFIX = "custom_nodes."
CUSTOM_NODES_DIR = Path(__file__).resolve().parent / "nodes"
DEFAULT_PIPELINE = Path(__file__).resolve().parent / "pipeline.yml"
NODE_TYPES = ("augment", "model", "dabble", "draw")
PROVIDED_INPUTS = ("img",)


class PipelineConfigError(ValueError):
    """A pipeline YAML that cannot be built; the message names the node and the problem."""


@dataclass(frozen=True)
class NodeSpec:
    """One entry of the pipeline YAML: node name and its config overrides."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def is_custom(self) -> bool:
        return self.name.startswith(CUSTOM_PREFIX)

    @property
    def node_path(self) -> str:
        """``<type>.<name>`` as PeekingDuck spells it."""
        return self.name.removeprefix(CUSTOM_PREFIX)


def parse_pipeline_config(config: Any) -> list[NodeSpec]:
    """Validate the decoded YAML and return the node specs in order."""
    if not isinstance(config, Mapping) or "nodes" not in config:
        raise PipelineConfigError("pipeline config must be a mapping with a 'nodes' list")
    nodes = config["nodes"]
    if not isinstance(nodes, list) or not nodes:
        raise PipelineConfigError("'nodes' must be a non-empty list")
    specs = []
    for position, entry in enumerate(nodes, start=1):
        if isinstance(entry, str):
            name, overrides = entry, {}
        elif isinstance(entry, Mapping) and len(entry) == 1:
            name, overrides = next(iter(entry.items()))
            overrides = overrides or {}
            if not isinstance(overrides, Mapping):
                raise PipelineConfigError(f"node {position} ({name}): config must be a mapping")
        else:
            raise PipelineConfigError(f"node {position}: expected a node name or {{name: config}}, got {entry!r}")
        spec = NodeSpec(str(name), dict(overrides))
        parts = spec.node_path.split(".")
        if len(parts) != 2 or parts[0] not in NODE_TYPES:
            raise PipelineConfigError(
                f"node {position} ({name}): expected '<type>.<name>' or 'custom_nodes.<type>.<name>' "
                f"with type one of {', '.join(NODE_TYPES)} (the worker supplies the input and stores the output)"
            )
        specs.append(spec)
    return specs


def check_node_wiring(node_io: list[tuple[str, list[str], list[str]]]) -> None:
    """Check every node's inputs are produced earlier; ``node_io`` is (name, inputs, outputs)."""
    available = set(PROVIDED_INPUTS)
    for name, inputs, outputs in node_io:
        missing = [i for i in inputs if i not in available and i not in ("all", "none")]
        if missing:
            raise PipelineConfigError(
                f"node {name} needs {', '.join(missing)}, which no earlier node produces "
                f"(available: {', '.join(sorted(available))})"
            )
        available.update(o for o in outputs if o != "none")


def build_node(spec: NodeSpec) -> Any:
    """Import and construct one node with its overrides; unknown config keys are an error."""
    import_peekingduck()
    install_offline_weights()  # built-in model nodes: baked weights only, never a download at start-up
    if spec.is_custom:
        module_name = f"worker.nodes.{spec.node_path}"
        extra: dict[str, Any] = {"node_path": spec.node_path, "pkd_base_dir": CUSTOM_NODES_DIR}
    else:
        module_name = f"peekingduck.pipeline.nodes.{spec.node_path}"
        extra = {}
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and not module_name.startswith(exc.name):
            why = f"needs the {exc.name!r} package, which is not installed"
            raise PipelineConfigError(f"node {spec.name} {why}") from None
        raise PipelineConfigError(f"node {spec.name}: no such node") from None
    try:
        node = module.Node(**extra, **spec.overrides)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise PipelineConfigError(f"node {spec.name}: {exc}") from None
    unknown = sorted(set(spec.overrides) - set(node.config))
    if unknown:
        raise PipelineConfigError(
            f"node {spec.name}: unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(node.config))}"
        )
    return node


class Pipeline:
    """PeekingDuck nodes built once, run in order on each frame."""

    def __init__(self, nodes: list[Any], names: list[str]) -> None:
        self.nodes = nodes
        self.names = names
        check_node_wiring([(n, list(node.inputs), list(node.outputs)) for n, node in zip(names, nodes, strict=True)])

    @classmethod
    def from_yaml(cls, path: Path = DEFAULT_PIPELINE) -> Pipeline:
        try:
            config = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise PipelineConfigError(f"pipeline file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise PipelineConfigError(f"pipeline file {path} is not valid YAML: {exc}") from None
        specs = parse_pipeline_config(config)
        return cls([build_node(s) for s in specs], [s.name for s in specs])

    def run(self, image: np.ndarray, timings: dict[str, float] | None = None) -> dict[str, Any]:
        """Run every node on ``image`` (modified in place by draw nodes); return the data dict.

        With ``timings``, adds milliseconds per node type (``model``, ``draw``, ...).
        """
        data: dict[str, Any] = {"img": image}
        for name, node in zip(self.names, self.nodes, strict=True):
            started = time.perf_counter()
            inputs = data if "all" in node.inputs else {k: data[k] for k in node.inputs if k in data}
            data.update(node.run(inputs))
            if timings is not None:
                kind = name.removeprefix(CUSTOM_PREFIX).split(".")[0]
                timings[kind] = timings.get(kind, 0.0) + (time.perf_counter() - started) * 1000
        return data

    @property
    def model_name(self) -> str:
        """Name of the first model node, for the detections record."""
        for name in self.names:
            if name.removeprefix(CUSTOM_PREFIX).startswith("model."):
                return name.removeprefix(CUSTOM_PREFIX)
        return "none"
