"""Convert the TF.js NanoDet-m graph to ONNX. Runs INSIDE the throw-away TensorFlow venv.

Usage (``deploy.assets`` does this for you)::

    <tf-venv>/bin/python deploy/convert_nanodet.py nanodet.json nanodet.onnx

The venv holds ``tensorflow-cpu==2.15.1 tf2onnx==1.16.1 "numpy<2"``. TF.js strips node attributes
that tf2onnx's shape inference needs, so every node's missing attributes are filled with the
defaults from TensorFlow's op registry, and ``_FusedConv2D`` nodes get ``TArgs`` =
``[DT_FLOAT] * num_args``. The patched graph is written next to the original (so that its
``nanodet.bin`` weights path still resolves) and converted with
``python -m tf2onnx.convert --tfjs ... --opset 13``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

OPSET = 13


def fill_missing_attrs(model: dict[str, Any]) -> int:
    """Fill every node's missing attrs from TensorFlow's op registry, in place; return how many were added."""
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry

    added = 0
    for node in model["modelTopology"]["node"]:
        attrs = node.setdefault("attr", {})
        op_def = op_def_registry.get(node["op"])
        if op_def is None:
            raise SystemExit(f"error: op {node['op']!r} (node {node['name']!r}) is not in TensorFlow's op registry")
        for attr_def in op_def.attr:
            if attr_def.name not in attrs and attr_def.HasField("default_value"):
                attrs[attr_def.name] = json_format.MessageToDict(attr_def.default_value)
                added += 1
        if node["op"] == "_FusedConv2D" and "TArgs" not in attrs:
            num_args = int(attrs.get("num_args", {}).get("i", 0))
            attrs["TArgs"] = {"list": {"type": ["DT_FLOAT"] * num_args}}
            added += 1
    return added


def convert(model_json: Path, output: Path) -> None:
    """Patch ``model_json`` and convert it to ONNX at ``output``."""
    model = json.loads(model_json.read_text())
    added = fill_missing_attrs(model)
    patched = model_json.with_name(model_json.stem + ".patched.json")
    patched.write_text(json.dumps(model))
    print(f"filled {added} missing node attributes; converting with tf2onnx (opset {OPSET})", file=sys.stderr)
    command = [sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(patched), "--output", str(output),
               "--opset", str(OPSET)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not output.is_file():
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"error: tf2onnx failed (exit {result.returncode}) converting {model_json}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_json", type=Path, help="TF.js model.json (weights file next to it)")
    parser.add_argument("output", type=Path, help="ONNX file to write")
    args = parser.parse_args(argv)
    convert(args.model_json, args.output)


if __name__ == "__main__":
    main()
