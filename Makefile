# frame-fanout — two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
PKD_VERSION := 1.3.0.post1

.PHONY: help setup venv assets demo test lint up down status bench clean

help:
	@echo "make demo   - set up, start the local stack, process vtest.avi end to end, reassemble, stop"
	@echo "make test   - set up and run every test (starts and stops the emulators itself)"
	@echo "make lint   - ruff"
	@echo "make up / down / status - the local stack by hand"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check --upgrade "pip>=24"
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	# PeekingDuck 1.3 declares Python<3.10 and pins that conflict with Pub/Sub; its real run-time
	# needs are in pyproject.toml (see ../shared/notes/peekingduck.md).
	$(PIP) install --quiet --disable-pip-version-check --no-deps --ignore-requires-python peekingduck==$(PKD_VERSION)
	touch $(STAMP)

assets: venv
	$(PY) -m deploy.assets fetch

setup: venv assets

demo: setup
	$(PY) -m deploy.demo

test: setup
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .

up: setup
	$(PY) -m deploy.local up

down: venv
	$(PY) -m deploy.local down

status: venv
	$(PY) -m deploy.local status

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
