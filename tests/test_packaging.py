"""Each program installs and loads only what it needs.

pyproject.toml has a small core (the Google clients framecontract builds) and one extra per program:
``producer``, ``worker`` (all the worker image installs) and ``collector``; ``dev`` pulls all three plus
the local stack's and the tests' tools, and is what ``make`` installs. Checked here:

- the producer's and the collector's CLIs, imported and run (``--help``) in a fresh interpreter, load no
  model runtime, web server or other program; the worker, its app imported and both its pipelines built
  and run, loads no PyAV and no other program;
- every third-party import of each package (all of them, also the ones inside functions, read with
  ``ast``) belongs to a distribution that the core or that package's extra declares;
- each program imports no other program (so the worker image's ``framecontract/`` + ``worker/`` is all
  the worker needs), and ``dev`` covers every extra;
- ``deploy.assets`` and ``framecontract.assets`` import with the standard library alone (the image's
  model stage runs the one, the worker imports the other).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

from framecontract.assets import AssetMissingError, asset_path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PROGRAMS = ("framecontract", "producer", "worker", "collector", "deploy", "loadtest")
"""The project's top-level packages (pyproject's packages.find)."""
EXTRA_OF = {"framecontract": None, "producer": "producer", "worker": "worker", "collector": "collector",
            "deploy": "dev", "loadtest": "dev", "tests": "dev"}
"""Which extra each folder's imports must be declared in (besides the core); deploy, loadtest and the
tests only run from a development install."""
INSTALLED_SEPARATELY = {"peekingduck"}
"""Installed with --no-deps by the Makefile and deploy/install-runtime.sh (its metadata cannot be met)."""
NOT_CHECKED = {REPO / "deploy" / "convert_nanodet.py"}
"""Runs in the throw-away TensorFlow venv of deploy.assets (TF2ONNX_REQUIREMENTS), not in ours."""
BENCHMARKS = ("benchmark.py", "bench.py")
"""Development tools inside the program folders; they may use deploy's emulators."""

MODEL_RUNTIMES_AND_WEB = ("onnxruntime", "ai_edge_litert", "tflite_runtime", "flask", "werkzeug", "gunicorn",
                          "peekingduck", "prometheus_client", "torch", "tensorflow")
NOT_IN_CLI = {
    "producer": (*MODEL_RUNTIMES_AND_WEB, "av", "worker", "collector", "deploy", "loadtest"),
    "collector": (*MODEL_RUNTIMES_AND_WEB, "worker", "producer", "deploy", "loadtest"),
}
NOT_IN_WORKER = ("av", "producer", "collector", "deploy", "loadtest", "locust", "matplotlib", "torch", "tensorflow")

CLI_PROBE = """
import contextlib, importlib, io, json, sys

module = importlib.import_module(sys.argv[1])
for argv in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            module.main(argv)
        except SystemExit:
            pass
print(json.dumps(sorted(sys.modules)))
"""

WORKER_PROBE = """
import json, sys
from pathlib import Path

import numpy as np

import worker.app
import worker.gunicorn_conf
from worker.pipeline import Pipeline

for path in sys.argv[1:]:
    Pipeline.from_yaml(Path(path)).run(np.zeros((96, 128, 3), np.uint8))
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(script: str, *args: str) -> set[str]:
    """``sys.modules`` at the end of ``script``, run by a fresh interpreter in the repository."""
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.mark.parametrize(("program", "entry", "argvs"), [
    ("producer", "producer.__main__", [["--help"]]),  # what `python -m producer` runs
    ("collector", "collector.cli", [["--help"], ["status", "--help"], ["wait", "--help"],
                                    ["reassemble", "--help"], ["jobs", "--help"], ["follow", "--help"]]),
])
def test_cli_loads_no_model_runtime_web_server_or_other_program(program: str, entry: str,
                                                                 argvs: list[list[str]]) -> None:
    modules = loaded_modules(CLI_PROBE, entry, json.dumps(argvs))
    assert entry in modules and f"{program}.cli" in modules
    unwanted = [name for name in NOT_IN_CLI[program] if name in modules]
    assert unwanted == [], f"{entry} loads {unwanted}"


def test_worker_loads_no_pyav_and_no_other_program() -> None:
    try:
        for name in ("nanodet", "ssd_oid"):
            asset_path(name)
    except AssetMissingError as exc:
        pytest.fail(f"the models are needed to build the worker's pipelines: {exc}", pytrace=False)
    pipelines = [REPO / "worker" / "pipeline.yml", *sorted((REPO / "worker" / "pipelines").glob("*.yml"))]
    modules = loaded_modules(WORKER_PROBE, *map(str, pipelines))
    assert {"worker.app", "flask", "onnxruntime", "ai_edge_litert", "peekingduck"} <= modules
    unwanted = [name for name in NOT_IN_WORKER if name in modules]
    assert unwanted == [], f"the worker loads {unwanted}"


def test_asset_lookup_and_fetching_need_only_the_standard_library(tmp_path: Path) -> None:
    """The image's model stage runs deploy.assets from its COPYs alone; the worker's asset lookup needs no more."""
    from tests.deploy.test_image import copied_sources, stages

    for source in copied_sources(stages()["model"]):
        if source.endswith(".py") or source.endswith("/"):
            target = tmp_path / source
            if (REPO / source).is_dir():
                shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, target)
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); import deploy.assets, framecontract.assets; "
             "print(json.dumps(sorted(sys.modules)))")
    # -S: no site-packages at all, only the standard library and the copied files
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deploy.assets" in json.loads(proc.stdout)


# --------------------------------------------------------------------------- static: imports vs extras


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    """Canonical distribution names of ``requirements``, the project's own extras expanded."""
    names: set[str] = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
        assert match, f"cannot read requirement {requirement!r}"
        if canonical(match[1]) == canonical(PROJECT["name"]):
            for extra in (match[2] or "").split(","):
                names |= requirement_names(PROJECT["optional-dependencies"][extra.strip()])
        else:
            names.add(canonical(match[1]))
    return names


def declared_in(extra: str | None) -> set[str]:
    """The core dependencies plus ``extra``'s, as canonical distribution names."""
    return requirement_names(PROJECT["dependencies"] + (PROJECT["optional-dependencies"][extra] if extra else []))


@functools.cache
def module_owners() -> dict[str, frozenset[str]]:
    """Dotted module name → canonical names of the installed distributions whose files provide it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0] == ".." or ".dist-info" in parts[0]:
                continue
            if file.suffix == ".py":
                module = parts[:-1] if parts[-1] == "__init__.py" else (*parts[:-1], parts[-1][:-3])
            elif file.suffix in (".so", ".pyd"):
                module = (*parts[:-1], parts[-1].split(".")[0])
            else:
                continue
            owners[".".join(module)].add(canonical(dist.metadata["Name"]))
    return {module: frozenset(dists) for module, dists in owners.items()}


def owner_of(module: str) -> frozenset[str] | None:
    """The distributions providing ``module`` or its nearest parent that some distribution provides."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = module_owners().get(".".join(parts[:end]))
        if found:
            return found
    return None


def imports_in(folder: str) -> dict[str, set[str]]:
    """Absolute imports (as dotted names; ``from a import b`` as ``a.b``) → the files of ``folder`` that make them."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted((REPO / folder).rglob("*.py")):
        if path in NOT_CHECKED:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                found[name].add(str(path.relative_to(REPO)))
    return found


def third_party(name: str) -> bool:
    top = name.split(".")[0]
    return top not in sys.stdlib_module_names and top not in (*PROGRAMS, "tests", "__future__")


@pytest.mark.parametrize("folder", list(EXTRA_OF))
def test_each_third_party_import_is_declared_for_its_program(folder: str) -> None:
    declared = declared_in(EXTRA_OF[folder])
    problems = []
    for name, files in sorted(imports_in(folder).items()):
        if not third_party(name) or name.split(".")[0] in INSTALLED_SEPARATELY:
            continue
        owners = owner_of(name)
        where = ", ".join(sorted(files)[:3])
        if owners is None:
            problems.append(f"{name} ({where}): no installed distribution provides it")
        elif not owners & declared:
            extra = f"the {EXTRA_OF[folder]} extra" if EXTRA_OF[folder] else "the core dependencies"
            problems.append(f"{name} ({where}) comes from {'/'.join(sorted(owners))}, not declared in {extra}")
    assert problems == []


def test_the_check_sees_undeclared_and_lazy_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer extra has no Flask and no onnxruntime: a lazy import of either would fail the test above."""
    assert owner_of("av.container") == {"av"} and owner_of("google.cloud.storage.retry") == {"google-cloud-storage"}
    declared = declared_in("producer")
    assert not owner_of("flask") & declared and not owner_of("onnxruntime") & declared
    assert owner_of("cv2") & declared and owner_of("av") & declared and owner_of("google.api_core.retry") & declared
    fake = tmp_path / "producer"
    fake.mkdir()
    (fake / "x.py").write_text("def f():\n    import onnxruntime\n    from flask import Flask\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert set(imports_in("producer")) == {"onnxruntime", "flask.Flask"}


@pytest.mark.parametrize(("program", "may_import"), [
    ("framecontract", {"framecontract"}),
    ("producer", {"producer", "framecontract"}),
    ("worker", {"worker", "framecontract"}),
    ("collector", {"collector", "framecontract"}),
])
def test_programs_import_no_other_program(program: str, may_import: set[str]) -> None:
    """The worker image holds framecontract/ and worker/ only; the producer and collector ship apart too."""
    wrong = {f"{name} ({', '.join(sorted(files))})"
             for name, files in imports_in(program).items()
             if name.split(".")[0] in PROGRAMS and name.split(".")[0] not in may_import
             and not all(Path(f).name in BENCHMARKS for f in files)}
    assert wrong == set()


def test_dev_installs_every_program_and_make_installs_dev() -> None:
    dev = declared_in("dev")
    for extra in ("producer", "worker", "collector"):
        missing = declared_in(extra) - dev
        assert not missing, f"the dev extra lacks {sorted(missing)} of the {extra} extra"
    assert '-e ".[dev]"' in (REPO / "Makefile").read_text()
    assert not (requirement_names(PROJECT["dependencies"]) & {"onnxruntime", "ai-edge-litert", "flask", "gunicorn",
                                                                "av", "opencv-python-headless"})
