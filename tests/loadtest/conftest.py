"""Load-test fixtures: recorded runs, and real HTTP servers on 127.0.0.1 in threads.

Usage::

    def test_x(http_fixture_run): load_run(http_fixture_run)          # a recorded Locust run folder
    def test_y(serve): url = serve(flask_app)                          # http://127.0.0.1:PORT, stopped after
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def http_fixture_run() -> Path:
    """A real 10-user, 10-second Locust run against the local stack (2 workers), recorded as CSV."""
    return FIXTURES / "http-10users"


@pytest.fixture
def pipeline_fixture_run() -> Path:
    """A real pipeline run: 30 frames at 3 frames/s through the local stack, recorded as frames.csv."""
    return FIXTURES / "pipeline-3fps"


@pytest.fixture(scope="session")
def pipeline() -> Any:
    """The default worker pipeline (NanoDet → draw.bbox), loaded once."""
    from worker.pipeline import Pipeline

    return Pipeline.from_yaml()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Start WSGI apps on free 127.0.0.1 ports (werkzeug, threaded); all are shut down after the test."""
    from werkzeug.serving import make_server

    servers = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(timeout=10)
