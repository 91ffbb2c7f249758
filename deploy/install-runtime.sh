#!/bin/sh
# Install the worker's run-time Python packages into a venv: the exact steps deploy/Dockerfile runs
# (tests/deploy/test_image.py runs this same script in a fresh venv).
#
# Usage: deploy/install-runtime.sh deps    VENV_PYTHON SRC_DIR  # pinned dependencies + PeekingDuck
#        deploy/install-runtime.sh project VENV_PYTHON SRC_DIR  # the project itself (no dependencies)
#
# SRC_DIR holds pyproject.toml and constraints.txt (and, for `project`, the packages: framecontract/ and
# worker/ in the image). The two phases are separate so that the image's dependency layer is rebuilt only
# when those two files change. `deps` installs the core dependencies and the `worker` extra of
# pyproject.toml only: no PyAV, no test or load-test tools (the producer and collector have extras of
# their own).
# PeekingDuck 1.3 declares Python<3.10 and pins that conflict with Pub/Sub, so it is installed with
# --no-deps --ignore-requires-python, as the Makefile does; its real run-time needs are in pyproject.toml.
set -eu

PEEKINGDUCK_VERSION="${PEEKINGDUCK_VERSION:-1.3.0.post1}"

usage() {
    echo "usage: $0 deps|project VENV_PYTHON SRC_DIR" >&2
    exit 2
}

[ "$#" -eq 3 ] || usage
phase="$1"
python="$2"
src="$3"
[ -x "$python" ] || { echo "error: $python is not an executable Python" >&2; exit 1; }
[ -f "$src/pyproject.toml" ] || { echo "error: $src/pyproject.toml not found" >&2; exit 1; }
[ -f "$src/constraints.txt" ] || { echo "error: $src/constraints.txt not found" >&2; exit 1; }

pip_install() {
    "$python" -m pip install --quiet --disable-pip-version-check "$@"
}

case "$phase" in
    deps)
        requirements="$(mktemp)"
        trap 'rm -f "$requirements"' EXIT
        # The core dependencies and the worker extra of pyproject.toml, one per line (tomllib: Python >= 3.11).
        "$python" - "$src/pyproject.toml" >"$requirements" <<'PY'
import sys
import tomllib

with open(sys.argv[1], "rb") as stream:
    project = tomllib.load(stream)["project"]
requirements = project["dependencies"] + project["optional-dependencies"]["worker"]
own = [r for r in requirements if r.replace("_", "-").lower().startswith(project["name"])]
if own:
    sys.exit(f"the worker extra must list packages, not the project's own extras: {own}")
print("\n".join(requirements))
PY
        pip_install -c "$src/constraints.txt" -r "$requirements"
        pip_install --no-deps --ignore-requires-python "peekingduck==$PEEKINGDUCK_VERSION"
        ;;
    project)
        pip_install --no-deps "$src"
        # The project's metadata declares the collector's console script; without collector/ (the
        # image has none) it could only fail, so it goes.
        if [ ! -d "$src/collector" ]; then
            rm -f "$(dirname "$python")/collector"
        fi
        ;;
    *)
        usage
        ;;
esac
