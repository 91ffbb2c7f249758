"""Client profiles: the Retry-After wait as a pure function, and the locustfile's retry-after and study
clients over real HTTP against a tiny local server that refuses with 429 + ``Retry-After: 1``."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response

from loadtest.checks import load_image
from loadtest.profiles import MAX_RETRY_AFTER_S, check_profile, parse_retry_after, retry_after_wait
from loadtest.results import read_csv_rows
from loadtest.runner import execute, plan_run
from loadtest.scenario import parse_scenario

NOW = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("1", 1.0), (" 2 ", 2.0), ("0", 0.0), ("1.5", 1.5), ("120", 120.0),
    ("Sat, 28 Nov 2026 12:00:05 GMT", 5.0),     # an HTTP-date: seconds from now
    ("Sat, 28 Nov 2026 11:59:00 GMT", 0.0),     # in the past: at once
    (None, None), ("", None), ("-1", None), ("soon", None), ("nan", None), ("inf", None),
])
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(("status", "value", "wait"), [
    (429, "1", 1.0), (503, "3", 3.0), (429, "Sat, 28 Nov 2026 12:00:02 GMT", 2.0),
    (429, "120", MAX_RETRY_AFTER_S),            # bounded: a gateway does not stall longer than 30 s
    (429, None, None), (503, "later", None),    # no usable header: a failure, not a refusal to honour
    (200, "1", None), (500, "1", None), (404, "1", None),
])
def test_retry_after_wait(status: int, value: str | None, wait: float | None) -> None:
    assert retry_after_wait(status, value, now=NOW) == wait


def test_retry_after_wait_cap_and_profiles() -> None:
    assert retry_after_wait(429, "10", cap_s=2.5) == 2.5
    assert check_profile("retry-after") == "retry-after"
    with pytest.raises(ValueError, match="unknown client profile 'polite'; known: study, retry-after"):
        check_profile("polite")


class RefusingFrontDoor:
    """A fake /predict: every odd request is refused 429 with ``Retry-After: 1``, every even one answered 200
    with a valid body. Records (monotonic) when each answer was sent and when each request arrived."""

    def __init__(self) -> None:
        image = load_image("dog")
        self.good = json.dumps({"name": "dog.jpg", "width": image.width, "height": image.height, "detections": [],
                                "uri": "gs://frames/predict/x.jpg", "model": "fake", "latency_ms": {}})
        self.lock = threading.Lock()
        self.arrived: list[float] = []
        self.sent: dict[int, float] = {}
        self.statuses: list[int] = []
        self.second_request = threading.Event()
        self.app = Flask("refusing-front-door")
        self.app.post("/predict")(self.predict)

    def predict(self) -> Response:
        with self.lock:
            index = len(self.arrived)
            self.arrived.append(time.monotonic())
        if index == 1:
            self.second_request.set()
        status = 429 if index % 2 == 0 else 200
        with self.lock:
            self.statuses.append(status)
        if status == 429:
            response = Response('{"error": "at capacity"}', 429, {"Retry-After": "1"}, mimetype="application/json")
        else:
            response = Response(self.good, 200, mimetype="application/json")
        response.call_on_close(lambda: self._sent(index))  # after the whole answer went out
        return response

    def _sent(self, index: int) -> None:
        with self.lock:
            self.sent[index] = time.monotonic()


def scenario(client: str, duration_s: int) -> Any:
    return parse_scenario({
        "name": "profile-test", "description": "one user against a refusing fake",
        "load": {"users": 1, "spawn_rate": 1, "duration_s": duration_s, "processes": 1, "client": client},
        "deploy": {"target": "local", "workers": 1},
    }, "test.yml")


def test_retry_after_client_waits_before_sending_again(serve: Any, tmp_path: Path) -> None:
    fake = RefusingFrontDoor()
    data = execute(plan_run(scenario("retry-after", 4), serve(fake.app), tmp_path), say=lambda _m: None)

    assert fake.second_request.is_set(), "the client never sent again after the 429"
    assert 0 in fake.sent
    # the refusal said Retry-After: 1, so the next request may not arrive before the answer went out + ~1 s
    # (0.1 s allowed for the client's timer: gevent's clock is read once per loop iteration)
    assert fake.arrived[1] - fake.sent[0] >= 0.9
    for refused in range(0, len(fake.arrived) - 1, 2):  # and after every later refusal, as long as the run lasted
        if refused in fake.sent:
            assert fake.arrived[refused + 1] - fake.sent[refused] >= 0.9
    # every 429 was an honoured refusal, not a failure; every 200 a good answer
    t = data.totals
    assert t.refusals_by_kind == {"429": fake.statuses.count(429)}
    assert (t.ok, t.failures) == (fake.statuses.count(200), 0)
    names = {row["Name"] for row in read_csv_rows(data.run_dir / "locust_stats.csv")}
    assert names == {"/predict", "/predict [refused 429]", "Aggregated"}
    assert data.profile == "retry-after"


def test_study_client_counts_the_refusals_as_failures(serve: Any, tmp_path: Path) -> None:
    fake = RefusingFrontDoor()
    data = execute(plan_run(scenario("study", 2), serve(fake.app), tmp_path), say=lambda _m: None)

    t = data.totals
    assert t.failures_by_kind == {"429": fake.statuses.count(429)} and t.refusals_by_kind == {}
    assert t.ok == fake.statuses.count(200)
    failures = read_csv_rows(data.run_dir / "locust_failures.csv")
    assert [(row["Name"], row["Error"]) for row in failures] == [
        ("/predict [HTTP 429]", "CatchResponseError('HTTP 429: at capacity')")]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Load traffic goes to 127.0.0.1 only: never through a proxy from the environment."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
