"""The locustfile over real HTTP on 127.0.0.1: the real worker (create_app, storage emulator) and a
fake front door that answers 200 with the wrong body, each for a few seconds via ``loadtest.runner``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify

from framecontract.clients import make_storage_client
from loadtest.checks import load_image
from loadtest.results import read_csv_rows
from loadtest.runner import execute, plan_run
from loadtest.scenario import parse_scenario


def scenario(users: int, duration_s: int, fps: float = 0, image: str = "dog") -> Any:
    return parse_scenario({
        "name": "test-run", "description": "a few seconds against 127.0.0.1",
        "load": {"users": users, "spawn_rate": users, "duration_s": duration_s, "fps": fps, "image": image,
                 "processes": 1},
        "deploy": {"target": "local", "workers": 1},
    }, "test.yml")


def test_study_body_against_the_real_worker(serve: Any, gcs_settings: Any, pipeline: Any, tmp_path: Path) -> None:
    from worker.app import WorkerConfig, create_app

    app = create_app(WorkerConfig(settings=gcs_settings, json_logs=False, warmup=False), pipeline=pipeline)
    host = serve(app)
    data = execute(plan_run(scenario(users=3, duration_s=4), host, tmp_path), say=lambda _m: None)

    stats = {row["Name"]: row for row in read_csv_rows(data.run_dir / "locust_stats.csv")}
    good = int(stats["/predict"]["Request Count"])
    assert good >= 1, "no successful /predict in 4 s"
    assert int(stats["/predict"]["Failure Count"]) == 0
    assert set(data.totals.failures_by_kind) <= {"429"}  # 3 users, 2 admitted: the rest are refused at once
    assert data.totals.requests == good + sum(data.totals.failures_by_kind.values())
    stored = list(make_storage_client(gcs_settings).list_blobs(gcs_settings.bucket, prefix="predict/"))
    assert len(stored) == good  # every 200 stored exactly one annotated JPEG
    meta = json.loads((data.run_dir / "run.json").read_text())
    assert meta["exit_code"] == 0 and not meta["timed_out"]
    assert meta["client"]["samples"] >= 2
    assert (data.run_dir / "report.png").stat().st_size > 0


def test_bad_answers_fail_and_constant_throughput_paces(serve: Any, tmp_path: Path) -> None:
    app = Flask("fake-front-door")
    app.post("/predict")(lambda: jsonify(name="dog.jpg", width=1, height=1))
    host = serve(app)
    data = execute(plan_run(scenario(users=2, duration_s=4, fps=4), host, tmp_path), say=lambda _m: None)

    failures = read_csv_rows(data.run_dir / "locust_failures.csv")
    assert [(row["Name"], row["Error"]) for row in failures] == [
        ("/predict [HTTP 200]", "CatchResponseError('HTTP 200: response lacks detections, uri, model, latency_ms')")]
    assert data.totals.failures == data.totals.requests
    # 2 users x 4 requests/s x 4 s = 32 (+1 each at the start); with no wait a fake answers hundreds
    assert 12 <= data.totals.requests <= 36


def test_another_image_by_option(serve: Any, gcs_settings: Any, pipeline: Any, tmp_path: Path) -> None:
    """``--image`` with a file: the worker's answer must report that image's size (checked by the locustfile)."""
    import cv2
    import numpy as np

    from worker.app import WorkerConfig, create_app

    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((48, 64, 3), 90, np.uint8))
    assert (load_image(str(path)).width, load_image(str(path)).height) == (64, 48)
    app = create_app(WorkerConfig(settings=gcs_settings, json_logs=False, warmup=False), pipeline=pipeline)
    data = execute(plan_run(scenario(users=1, duration_s=2, image=str(path)), serve(app), tmp_path / "runs"),
                   say=lambda _m: None)
    assert data.totals.requests >= 1
    assert data.totals.failures == 0


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load traffic goes to 127.0.0.1 only: never through a proxy from the environment."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
