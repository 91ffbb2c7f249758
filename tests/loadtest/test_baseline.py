"""The baseline server (``python -m loadtest baseline``) as a real process with the real model: the dog
photo answered with detections, garbage refused with 400/422, the locustfile's baseline checks, and a
clean stop on SIGTERM."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.baseline import baseline_server
from loadtest.checks import check_predict_response, load_image, study_body
from loadtest.runner import execute, plan_run
from loadtest.scenario import parse_scenario

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1: never through a proxy


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": content_type})
    try:
        with _opener.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One baseline server process for this module (the model loads once)."""
    log = tmp_path_factory.mktemp("baseline") / "baseline.log"
    with baseline_server(log, say=lambda _m: None) as url:
        yield url


def test_answers_the_dog_photo_with_detections(baseline: str) -> None:
    image = load_image("dog")
    status, answer = post(baseline, study_body(image))
    assert status == 200
    verdict = check_predict_response(status, json.dumps(answer).encode(), image, stored=False)
    assert verdict.ok, verdict.failure
    assert (answer["name"], answer["width"], answer["height"], answer["uri"]) == ("dog.jpg", 768, 576, None)
    assert answer["model"] == "model.nanodet"  # the worker's pipeline: NanoDet, then draw.bbox
    labels = {d["label"] for d in answer["detections"]}
    assert {"dog", "bicycle"} <= labels
    dog = next(d for d in answer["detections"] if d["label"] == "dog")
    x1, y1, x2, y2 = dog["box"]
    assert x1 <= 240 <= x2 and y1 <= 380 <= y2  # the dog sits in the lower left
    assert {"decode", "model", "draw", "encode", "total"} <= set(answer["latency_ms"])


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"not json", 422, None),
    (b'{"name": "dog.jpg"}', 422, None),                    # no image
    (b'["image"]', 422, None),                              # not an object
    (b'{"image": 5}', 422, None),                           # image not a string
    (b'{"image": "!!not base64!!"}', 400, "field 'image' is not valid base64"),
    (json.dumps({"image": base64.b64encode(b"hello, not an image").decode()}).encode(), 400,
     "'image' is not an image: "),
])
def test_refuses_garbage(baseline: str, body: bytes, status: int, error: str | None) -> None:
    got_status, answer = post(baseline, body)
    assert got_status == status
    if error is None:
        assert answer["detail"]  # FastAPI's validation error: what was wrong, where
    else:
        assert answer["error"].startswith(error)


def test_locust_against_the_baseline(baseline: str, tmp_path: Path) -> None:
    """The locustfile's ``--server baseline`` check accepts the baseline's answers (``uri`` null)."""
    scenario = parse_scenario({
        "name": "baseline-test", "description": "two users for a few seconds",
        "load": {"users": 2, "spawn_rate": 2, "duration_s": 3, "processes": 1},
        "deploy": {"target": "local", "workers": 1},
    }, "test.yml")
    data = execute(plan_run(scenario, baseline, tmp_path, server="baseline"), say=lambda _m: None)
    assert data.totals.ok >= 1
    assert data.totals.failures == 0 and data.totals.failures_by_kind == {}
    assert data.server == "baseline"
    assert data.run_dir is not None and json.loads((data.run_dir / "run.json").read_text())["server"] == "baseline"


def test_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    said: list[str] = []
    log = tmp_path / "baseline.log"
    with baseline_server(log, say=said.append) as url:
        assert url.startswith("http://127.0.0.1:")
        with _opener.open(f"{url}/healthz", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
    assert said[-1] == "baseline server stopped (exit status 0)"
    lines = log.read_text().splitlines()
    assert lines[0].startswith("baseline ready: http://127.0.0.1:")
    assert lines[-1] == "baseline stopped (SIGTERM)"
