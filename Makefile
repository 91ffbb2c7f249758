# frame-fanout — two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PKD_VERSION := 1.3.0.post1

.PHONY: help setup venv assets browser demo test lint up down status bench loadtest image plan clean

help:
	@echo "make demo   - set up, start the local stack, process vtest.avi end to end, reassemble, stop"
	@echo "make test   - set up and run every test (starts and stops the emulators itself)"
	@echo "make loadtest - the study's experiment, short: its server design, then our front door (runs/)"
	@echo "make bench  - the benchmarks (producer, worker, collector, end to end), each against a same-run baseline"
	@echo "make lint   - ruff"
	@echo "make up / down / status - the local stack by hand"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade "pip>=24"
	# .[dev]: the core, every program's extra (producer, worker, collector) and the tools; constraints.txt pins them.
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	# PeekingDuck 1.3 declares Python<3.10 and pins that conflict with Pub/Sub; its real run-time
	# needs are in the worker extra of pyproject.toml (see ../shared/notes/peekingduck.md).
	$(PIP) install --quiet --disable-pip-version-check --no-deps --ignore-requires-python peekingduck==$(PKD_VERSION)
	touch $(STAMP)

assets: venv
	$(PY) -m deploy.assets fetch

setup: venv assets

demo: setup
	$(PY) -m deploy.demo

# Debian's chromium for the live page's browser test (tests/collector/test_live_page_browser.py): installed
# when missing and we are root (as CI runs); otherwise that test fails saying the install command.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { apt-get update -qq || true; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
	  echo "note: chromium is not installed (apt-get install -y chromium); the live page's browser test will fail"

test: setup browser
	$(PY) -m pytest

# Benchmarks, each against a baseline measured in the same run (ratios; see README "Benchmarks").
bench: setup
	$(PY) -m producer.benchmark $$($(PY) -m deploy.assets path vtest) --local --repeat 5
	$(PY) -m producer.benchmark hd1080 --local --parallel $$(( $$(nproc) > 1 ? $$(nproc) : 2 )) --repeat 3
	$(PY) -m worker.benchmark --frames 150 --repeat 3
	$(PY) -m worker.detectors.benchmark
	$(PY) -m collector.bench
	$(PY) -m deploy.bench --frames 795

# A short version of the study's main experiment (traffic to 127.0.0.1 only; stops itself): 200 users for
# 60 s against the study's server design (the baseline), then against our POST /predict; one report in runs/.
loadtest: setup
	timeout --signal=INT --kill-after=30 600 $(PY) -m loadtest local local-study-short --baseline --out runs

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/hadolint deploy/Dockerfile
	$(VENV)/bin/shellcheck deploy/*.sh .ci/run

# The worker image (needs a Docker engine; Cloud Build does this for `python -m deploy.gcp up`).
image:
	docker build -f deploy/Dockerfile -t frame-fanout-worker .

# Every gcloud command `python -m deploy.gcp up` would run: make plan PROJECT=p REGION=europe-west1
plan: venv
	$(PY) -m deploy.gcp plan --project $(PROJECT) --region $(REGION)

up: setup
	$(PY) -m deploy.local up

down: venv
	$(PY) -m deploy.local down

status: venv
	$(PY) -m deploy.local status

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
