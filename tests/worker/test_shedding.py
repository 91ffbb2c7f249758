"""Load shedding over real HTTP: gunicorn (gthread) running the real app, a burst of requests.

With one process holding at most one request (``WORKER_MAX_IN_FLIGHT=1``), a burst must be answered
200 or 429 with ``Retry-After`` — never queued until a timeout, never 5xx.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from deploy.emulators import free_port
from worker.gunicorn_conf import serving_layout

REPO = Path(__file__).resolve().parents[2]


def test_serving_layout() -> None:
    assert serving_layout(cpus=2, max_in_flight=2) == (2, 6)
    assert serving_layout(cpus=2, max_in_flight=128) == (2, 132)
    assert serving_layout(cpus=1, max_in_flight=4, processes=3) == (3, 8)
    with pytest.raises(ValueError):
        serving_layout(cpus=0, max_in_flight=1)


@pytest.fixture
def gunicorn_worker(gcs_settings, tmp_path):
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="1", WORKER_MAX_IN_FLIGHT="1",
               WORKER_PUSH_AUTH="off",
               GOOGLE_CLOUD_PROJECT=gcs_settings.project, FRAMES_BUCKET=gcs_settings.bucket,
               STORAGE_EMULATOR_HOST=gcs_settings.storage_emulator_host)
    log = (tmp_path / "gunicorn.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:worker.gunicorn_conf", "--no-control-socket",
         "worker.app:create_app()"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "gunicorn.log").read_text()[-3000:]
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except requests.RequestException:  # refused, or accepted but not answered while loading
            time.sleep(0.2)
    else:
        pytest.fail("worker did not become ready:\n" + (tmp_path / "gunicorn.log").read_text()[-3000:])
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_burst_is_answered_200_or_429_with_retry_after(gunicorn_worker) -> None:
    from framecontract.assets import asset_path

    image = asset_path("dog").read_bytes()

    def post(_: int) -> requests.Response:
        return requests.post(gunicorn_worker + "/predict", data=image, headers={"Content-Type": "image/jpeg"},
                             timeout=60)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(post, range(24)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    for r in responses:
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "1"  # one request ahead, well under a second each
            assert r.json()["error"].startswith("worker is busy: a new request would wait about ")
    # health checks still answer on the spare thread, and the metrics count what happened
    assert requests.get(gunicorn_worker + "/healthz", timeout=5).status_code == 200
    metrics = requests.get(gunicorn_worker + "/metrics", timeout=5).text
    assert f'predict_requests_total{{status="429"}} {float(statuses.count(429))}' in metrics
