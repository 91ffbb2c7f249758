"""PeekingDuck's built-in model nodes start from a baked weights folder with no network (worker.pkd_offline).

FABRICATED WEIGHTS: PeekingDuck's real weights are unobtainable here (their download host is
unreachable) and TensorFlow/torch are not installed, so these tests build the folder layout
PeekingDuck's own download leaves (``peekingduck_weights/<model>/<format>/<model file>`` + classes
file) with placeholder bytes. They prove: nothing touches the network (sockets and ``requests`` are
made to fail and record every attempt; a control run without the patch shows the guard catches
PeekingDuck's start-up checksum fetch), missing weights give an error naming the expected paths and
download nothing, and the real ``model.yolo`` node, built from a pipeline YAML, gets as far as handing
the baked ``.pb`` file's bytes to TensorFlow's graph parser. For that last step a fake ``tensorflow``
module (``GFile`` + a ``GraphDef`` whose ``ParseFromString`` raises :class:`WeightsReached` with the
bytes) stands in for the missing framework; it is only in ``sys.modules`` for that test.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import requests
import yaml

from worker.pkd_compat import import_peekingduck
from worker.pkd_offline import (
    BakedWeightsChecksumError,
    BakedWeightsMissingError,
    OfflineDownloadError,
    expected_weights_paths,
    install_offline_weights,
    is_installed,
    uninstall_offline_weights,
)

peekingduck = import_peekingduck()
from peekingduck.pipeline.nodes.base import WeightsDownloaderMixin  # noqa: E402

PKD_DIR = Path(peekingduck.__file__).resolve().parent
MODEL_NODES = sorted(path.stem for path in (PKD_DIR / "configs" / "model").glob("*.yml"))


class NetworkUsed(Exception):
    """Raised by the network guard (not an OSError, so no library mistakes it for a retryable failure)."""


class WeightsReached(Exception):
    """Raised by the fake TensorFlow's graph parser, carrying the bytes it was handed."""

    def __init__(self, data: bytes) -> None:
        super().__init__(f"graph parser got {len(data)} bytes")
        self.data = data


@pytest.fixture
def network_attempts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every socket connect, DNS lookup or ``requests`` call raises :class:`NetworkUsed` and is recorded."""
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def guard(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{what} {args[1:] if what == 'connect' else args}"[:200])
            raise NetworkUsed(f"network use in an offline test: {what}")

        return guard

    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(requests, "get", refuse("requests.get"))
    monkeypatch.setattr(requests.sessions.Session, "request", refuse("Session.request"))
    return attempts


@pytest.fixture
def offline() -> Iterator[None]:
    install_offline_weights()
    yield
    uninstall_offline_weights()


class WeightsUser(WeightsDownloaderMixin):
    """What PeekingDuck's model classes (YOLOModel, YOLOXModel, ...) are to the mixin: a config and a logger."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.logger = logging.getLogger("test.pkd_offline")


def node_config(node: str, weights_parent_dir: Path | None) -> dict[str, Any]:
    """PeekingDuck's own default config for ``model.<node>``, as its config loader would pass it."""
    config = yaml.safe_load((PKD_DIR / "configs" / "model" / f"{node}.yml").read_text())
    config["weights_parent_dir"] = None if weights_parent_dir is None else str(weights_parent_dir)
    config["root"] = PKD_DIR
    return config


def bake(user: WeightsUser) -> list[Path]:
    """Fabricate the weights layout: a ``.pb``/``.pth``/... file, or a SavedModel-like folder, + classes file."""
    paths = expected_weights_paths(user)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix:
            path.write_bytes(b"fabricated " + path.name.encode())
        else:  # e.g. movenet's "multipose_lightning": a TF SavedModel directory
            (path / "variables").mkdir(parents=True)
            (path / "saved_model.pb").write_bytes(b"fabricated saved model")
    return paths


@pytest.mark.parametrize("node", MODEL_NODES)
def test_every_builtin_model_node_finds_baked_weights_without_network(
    node: str, tmp_path: Path, offline: None, network_attempts: list[str]
) -> None:
    user = WeightsUser(node_config(node, tmp_path))
    files = bake(user)
    model_dir = tmp_path / "peekingduck_weights" / user.model_subdir / user.config["model_format"]
    assert files[0].parent == model_dir
    assert user.download_weights() == model_dir
    assert network_attempts == []


def test_there_are_fourteen_builtin_model_nodes() -> None:
    assert len(MODEL_NODES) == 14 and {"yolo", "yolox", "efficientdet", "movenet"} <= set(MODEL_NODES)


def test_control_unpatched_peekingduck_fetches_checksums_from_the_network(
    tmp_path: Path, network_attempts: list[str]
) -> None:
    """Without the patch, the same baked folder still makes PeekingDuck go online: the guard sees it."""
    uninstall_offline_weights()
    assert not is_installed()
    user = WeightsUser(node_config("yolo", tmp_path))
    bake(user)
    with pytest.raises(NetworkUsed):
        user.download_weights()
    assert network_attempts and "weights_checksums.json" in network_attempts[0]


def test_missing_weights_name_the_expected_paths_and_download_nothing(
    tmp_path: Path, offline: None, network_attempts: list[str]
) -> None:
    user = WeightsUser(node_config("yolo", tmp_path))
    with pytest.raises(BakedWeightsMissingError) as caught:
        user.download_weights()
    message = str(caught.value)
    model_dir = tmp_path / "peekingduck_weights" / "yolo" / "tensorflow"
    assert f"missing {model_dir / 'yolov4-tiny.pb'}, {model_dir / 'coco.names'}" in message
    assert "yolo/tensorflow/v4tiny" in message and "never downloads" in message
    assert isinstance(caught.value, FileNotFoundError)
    assert list(tmp_path.iterdir()) == [], "nothing may be created (PeekingDuck mkdirs before downloading)"
    assert network_attempts == []

    (model_dir).mkdir(parents=True)
    (model_dir / "yolov4-tiny.pb").write_bytes(b"weights only")
    with pytest.raises(BakedWeightsMissingError, match=r"missing [^,]*coco\.names\. "):
        user.download_weights()


def test_missing_or_null_weights_parent_dir_is_a_clear_error(tmp_path: Path, offline: None,
                                                                 network_attempts: list[str]) -> None:
    with pytest.raises(FileNotFoundError, match=f"weights_parent_dir does not exist: {tmp_path / 'nope'}"):
        WeightsUser(node_config("yolox", tmp_path / "nope")).download_weights()
    with pytest.raises(BakedWeightsMissingError, match=str(PKD_DIR.parent / "peekingduck_weights" / "yolox")):
        WeightsUser(node_config("yolox", None)).download_weights()  # null: next to the package
    assert network_attempts == []


def test_baked_checksums_file_is_used_when_present(tmp_path: Path, offline: None,
                                                   network_attempts: list[str]) -> None:
    user = WeightsUser(node_config("yolox", tmp_path))
    weights = bake(user)[0]
    checksums = tmp_path / "peekingduck_weights" / "weights_checksums.json"
    good = hashlib.sha256(weights.read_bytes()).hexdigest()
    checksums.write_text(json.dumps({"yolox": {"pytorch": {"yolox-tiny": good}}}))
    assert user.download_weights() == weights.parent
    checksums.write_text(json.dumps({"yolox": {"pytorch": {"yolox-tiny": "0" * 64}}}))
    with pytest.raises(BakedWeightsChecksumError, match=f"{weights} for yolox/pytorch/yolox-tiny have sha256 {good}"):
        user.download_weights()
    checksums.write_text(json.dumps({"yolo": {}}))
    with pytest.raises(BakedWeightsChecksumError, match="has no checksum for yolox/pytorch/yolox-tiny"):
        user.download_weights()
    assert network_attempts == []


def test_download_is_refused_even_if_called_directly(tmp_path: Path, offline: None,
                                                     network_attempts: list[str]) -> None:
    user = WeightsUser(node_config("yolo", tmp_path))
    with pytest.raises(OfflineDownloadError, match="refusing to download yolov4-tiny.zip for yolo/tensorflow/v4tiny"):
        user._download_to(user.blob_filename, tmp_path)
    assert list(tmp_path.iterdir()) == [] and network_attempts == []


def test_install_is_idempotent_and_reversible() -> None:
    original = WeightsDownloaderMixin._has_weights
    install_offline_weights()
    install_offline_weights()
    assert is_installed()
    uninstall_offline_weights()
    assert not is_installed()
    assert WeightsDownloaderMixin._has_weights is original


# ---------------------------------------------------------------- the real model.yolo node, from a YAML


@pytest.fixture
def fake_tensorflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A stand-in for TensorFlow with just what PeekingDuck's frozen-graph loader touches first.

    PeekingDuck's model modules imported while it is in place (they bind ``tf``) are dropped afterwards.
    """
    tf = ModuleType("tensorflow")

    class GraphDef:
        def ParseFromString(self, data: bytes) -> None:  # noqa: N802 (TensorFlow's name)
            raise WeightsReached(data)

    tf.Tensor = type("Tensor", (), {})  # type: ignore[attr-defined]  (used in annotations at import)
    tf.io = SimpleNamespace(gfile=SimpleNamespace(GFile=open))  # type: ignore[attr-defined]
    tf.compat = SimpleNamespace(v1=SimpleNamespace(GraphDef=GraphDef))  # type: ignore[attr-defined]
    before = set(sys.modules)
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    yield tf
    for name in set(sys.modules) - before:
        if name.startswith("peekingduck.pipeline.nodes.model") or name == "peekingduck.utils.graph_functions":
            del sys.modules[name]


def write_pipeline(tmp_path: Path, weights_parent_dir: Path) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml.safe_dump({"nodes": [{"model.yolo": {"weights_parent_dir": str(weights_parent_dir),
                                                              "detect": ["person"]}}, "draw.bbox"]}))
    return path


def test_model_yolo_from_yaml_loads_the_baked_graph_without_network(
    tmp_path: Path, offline: None, network_attempts: list[str], fake_tensorflow: ModuleType
) -> None:
    from worker.pipeline import Pipeline

    baked = tmp_path / "weights"
    model_dir = baked / "peekingduck_weights" / "yolo" / "tensorflow"
    model_dir.mkdir(parents=True)
    graph_bytes = b"\x0a\x05fabricated frozen graph for yolov4-tiny"
    (model_dir / "yolov4-tiny.pb").write_bytes(graph_bytes)
    (model_dir / "coco.names").write_text("person\nbicycle\n")
    with pytest.raises(WeightsReached) as caught:
        Pipeline.from_yaml(write_pipeline(tmp_path, baked))
    assert caught.value.data == graph_bytes, "the node must load the graph from the baked folder"
    assert network_attempts == []


def test_model_yolo_from_yaml_without_baked_weights_names_the_path(
    tmp_path: Path, offline: None, network_attempts: list[str], fake_tensorflow: ModuleType
) -> None:
    from worker.pipeline import Pipeline, PipelineConfigError

    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineConfigError) as caught:
        Pipeline.from_yaml(write_pipeline(tmp_path, tmp_path / "empty"))
    expected = tmp_path / "empty" / "peekingduck_weights" / "yolo" / "tensorflow" / "yolov4-tiny.pb"
    assert str(caught.value).startswith("node model.yolo: PeekingDuck weights for yolo/tensorflow/v4tiny")
    assert str(expected) in str(caught.value)
    assert list((tmp_path / "empty").iterdir()) == [] and network_attempts == []


def test_model_yolo_without_tensorflow_fails_clearly_and_offline(
    tmp_path: Path, offline: None, network_attempts: list[str]
) -> None:
    """As things are here (no TensorFlow): the node cannot even be imported; the error says why."""
    from worker.pipeline import Pipeline, PipelineConfigError

    with pytest.raises(PipelineConfigError, match="tensorflow"):
        Pipeline.from_yaml(write_pipeline(tmp_path, tmp_path))
    assert network_attempts == []
