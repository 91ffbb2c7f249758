"""Build a PeekingDuck pipeline from a YAML file and run it on one frame at a time.

Usage::

    pipeline = Pipeline.from_yaml(Path("worker/pipeline.yml"))
    outputs = pipeline.run(image_bgr)        # dict with "img", "bboxes", "bbox_labels", ...

The YAML is PeekingDuck's own pipeline format (``nodes:`` list, each entry a node name or a
``{name: {config overrides}}`` map). Nodes are built once and their ``run`` is called in order for
every frame, as PeekingDuck's ``Runner`` does for a video, without its ``sys.exit`` on errors,
its working-directory changes, or its input/output nodes (the worker supplies ``img``).

Node names: ``<type>.<name>`` is one of PeekingDuck's own nodes; ``custom_nodes.<type>.<name>`` is
one of this project's (``worker/nodes/<type>/<name>.py``) or, with ``WORKER_CUSTOM_NODES=<dir>``, one
of the user's own, laid out as PeekingDuck lays out custom nodes: ``<dir>/<type>/<name>.py`` defining
``Node`` (an ``AbstractNode``) and its config ``<dir>/configs/<type>/<name>.yml`` (``input``,
``output`` and every key it accepts). A user's node is imported as ``custom_nodes.<type>.<name>``
(``<dir>`` is the ``custom_nodes`` package, so its helper modules import as ``custom_nodes.<...>``) and
built as PeekingDuck builds one: ``Node(config)`` with its yml, the pipeline file's overrides applied
(an unknown key is an error here, not a warning) and ``pkd_viewer: false``. A name that is both ours
and the user's is refused at start-up. ``Pipeline.from_yaml(path, custom_nodes=dir)`` overrides the
environment.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import types
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
USER_NODES_VARIABLE = "WORKER_CUSTOM_NODES"
"""A folder of the user's own PeekingDuck nodes (see the module docstring)."""
USER_NODES_PACKAGE = "custom_nodes"
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


def user_nodes_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """``WORKER_CUSTOM_NODES`` as a folder, or None when unset; PipelineConfigError if it is not a folder."""
    value = (os.environ if environ is None else environ).get(USER_NODES_VARIABLE)
    if not value:
        return None
    folder = Path(value).expanduser().resolve()
    if not folder.is_dir():
        raise PipelineConfigError(f"{USER_NODES_VARIABLE}={value}: not a folder")
    return folder


def _use_user_package(folder: Path) -> None:
    """Make ``custom_nodes`` the package whose folder is ``folder`` (dropping one imported from another)."""
    current = sys.modules.get(USER_NODES_PACKAGE)
    if current is not None and list(getattr(current, "__path__", [])) == [str(folder)]:
        return
    for name in [n for n in sys.modules if n == USER_NODES_PACKAGE or n.startswith(USER_NODES_PACKAGE + ".")]:
        del sys.modules[name]
    package = types.ModuleType(USER_NODES_PACKAGE, f"the user's PeekingDuck nodes in {folder}")
    package.__path__ = [str(folder)]  # subfolders without __init__.py import as namespace packages
    sys.modules[USER_NODES_PACKAGE] = package
    importlib.invalidate_caches()


def _merge(config: dict[str, Any], overrides: Mapping[str, Any], name: str, prefix: str = "") -> dict[str, Any]:
    """``config`` with ``overrides`` applied (nested mappings merged); an unknown key is an error."""
    for key, value in overrides.items():
        if key not in config:
            known = ", ".join(sorted(k for k in config if k not in ("input", "output")))
            raise PipelineConfigError(f"node {name}: unknown config key(s) {prefix}{key}; known: {known}")
        if isinstance(value, Mapping) and isinstance(config[key], dict):
            config[key] = _merge(dict(config[key]), value, name, f"{prefix}{key}.")
        else:
            config[key] = value
    return config


def build_user_node(spec: NodeSpec, folder: Path) -> Any:
    """One of the user's nodes, as PeekingDuck builds a custom node: ``Node(config)`` (module docstring)."""
    node_type, node_name = spec.node_path.split(".")
    source = folder / node_type / f"{node_name}.py"
    config_path = folder / "configs" / node_type / f"{node_name}.yml"
    try:
        config = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise PipelineConfigError(f"node {spec.name}: {source} has no config file {config_path}") from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"node {spec.name}: {config_path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict) or "input" not in config or "output" not in config:
        raise PipelineConfigError(f"node {spec.name}: {config_path} must be a mapping with 'input' and 'output'")
    config = _merge(config, spec.overrides, spec.name)
    config["pkd_viewer"] = False  # as PeekingDuck's own loader adds it
    _use_user_package(folder)
    module_name = f"{USER_NODES_PACKAGE}.{spec.node_path}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and not module_name.startswith(exc.name):
            why = f"needs the {exc.name!r} package, which is not installed"
            raise PipelineConfigError(f"node {spec.name} {why}") from None
        raise PipelineConfigError(f"node {spec.name}: cannot import {source}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's code: any import-time error names the file
        raise PipelineConfigError(f"node {spec.name}: cannot import {source}: {type(exc).__name__}: {exc}") from None
    node_class = getattr(module, "Node", None)
    if node_class is None:
        raise PipelineConfigError(f"node {spec.name}: {source} defines no class Node")
    try:
        return node_class(config)
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise PipelineConfigError(f"node {spec.name}: {type(exc).__name__}: {exc}") from None


def build_node(spec: NodeSpec, user_nodes: Path | None = None) -> Any:
    """Import and construct one node with its overrides; unknown config keys are an error.

    ``user_nodes``: the folder of the user's own nodes (``WORKER_CUSTOM_NODES``), searched for
    ``custom_nodes.<type>.<name>`` besides this project's.
    """
    import_peekingduck()
    install_offline_weights()  # built-in model nodes: baked weights only, never a download at start-up
    if spec.is_custom and user_nodes is not None:
        node_type, node_name = spec.node_path.split(".")
        ours, theirs = CUSTOM_NODES_DIR / node_type / f"{node_name}.py", user_nodes / node_type / f"{node_name}.py"
        if theirs.is_file():
            if ours.is_file():
                raise PipelineConfigError(f"node {spec.name} is both this project's ({ours}) and yours ({theirs}); "
                                          "give yours another name")
            return build_user_node(spec, user_nodes)
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
    def from_yaml(cls, path: Path = DEFAULT_PIPELINE, custom_nodes: Path | None = None) -> Pipeline:
        """Build the pipeline of a YAML file; ``custom_nodes``: the user's node folder (default
        ``WORKER_CUSTOM_NODES``, else none)."""
        try:
            config = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise PipelineConfigError(f"pipeline file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise PipelineConfigError(f"pipeline file {path} is not valid YAML: {exc}") from None
        specs = parse_pipeline_config(config)
        user_nodes = Path(custom_nodes).resolve() if custom_nodes is not None else user_nodes_dir()
        return cls([build_node(s, user_nodes) for s in specs], [s.name for s in specs])

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
