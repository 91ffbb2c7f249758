"""Locust users for the HTTP front door: the study's POST /predict, as fast as Locust can go.

Usage::

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8080 -u 1000 -r 100 -t 5m
    locust -f loadtest/locustfile.py ... --image path/to/frame.jpg --fps 5     # cameras at 5 fps each
    locust -f loadtest/locustfile.py ... --client retry-after                 # clients that honour Retry-After
    locust -f loadtest/locustfile.py ... --server baseline                    # against `python -m loadtest baseline`
    python -m loadtest run study-autoscaling --host https://...               # the usual way

Each user POSTs the study's body ``{"name": ..., "image": <base64 JPEG>}`` (the dog photo unless
``--image`` names another asset or file) with no wait between requests (the study's profile), or,
with ``--fps N``, at a constant throughput of N requests/s per user (``constant_throughput``: a
camera sending N frames/s; when a response takes longer than 1/N s the user falls behind, like a
camera whose frames queue). Every response is checked (:func:`loadtest.checks.check_predict_response`):
a 200 must carry the /predict JSON for an image of the size sent (``--server baseline``: with
``"uri": null``, as the baseline stores nothing). Failures are named by kind: ``POST /predict`` for good
answers, ``POST /predict [HTTP 429]`` etc. for HTTP failures, ``[HTTP 200]`` for a 200 with a bad body,
``[timeout]``, ``[conn closed]``, ``[conn reset]``, ``[conn refused]``, ``[conn error]`` for requests
that got no answer, so Locust's tables give response times per kind and the failures CSV groups by kind.

Client profiles (``--client``, :mod:`loadtest.profiles`): ``study`` (default) sends again at once
whatever the answer; ``retry-after`` waits what a 429/503's ``Retry-After`` asks (at most 30 s)
before its next request, and records that answer as an honoured refusal, ``POST /predict [refused
429]``, marked successful in Locust's tables because it is not a failure of the server (the report
lists refusals by kind beside the failures).

Locust writes its CSV files once a second from a background greenlet, so the requests that finish in
the last second (including those still in flight when the run time is up) never reach
``*_stats.csv`` / ``*_failures.csv``; :func:`_final_csv` rewrites those files with the final
numbers when Locust quits (measured: 14 of 16 good responses in the CSV of a 4 s run without it).
"""

from __future__ import annotations

import csv
from typing import Any

from locust import FastHttpUser, events, task
from locust.contrib.fasthttp import LocustBadStatusCode
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from locust.user.wait_time import constant_throughput

from framecontract.endpoints import PREDICT_PATH
from loadtest.checks import (
    BAD_BODY,
    SERVERS,
    Image,
    Verdict,
    check_predict_response,
    load_image,
    study_body,
)
from loadtest.profiles import CLIENT_PROFILES, DEFAULT_PROFILE, REFUSED_PREFIX, check_profile, retry_after_wait

DEFAULT_IMAGE = "dog"

_state: dict[str, Any] = {}


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--image", type=str, default=DEFAULT_IMAGE, env_var="LOADTEST_IMAGE",
                        help="asset name (dog) or path of the image to POST")
    parser.add_argument("--fps", type=float, default=0.0, env_var="LOADTEST_FPS",
                        help="requests per second per user (constant throughput); 0 = no wait (the study)")
    parser.add_argument("--client", type=str, default=DEFAULT_PROFILE, choices=CLIENT_PROFILES,
                        env_var="LOADTEST_CLIENT",
                        help="study: send again at once whatever the answer; retry-after: wait what a 429/503's "
                             "Retry-After asks (at most 30 s)")
    parser.add_argument("--server", type=str, default="worker", choices=SERVERS, env_var="LOADTEST_SERVER",
                        help="what answers: worker (a good answer names the stored JPEG, gs://) or baseline "
                             "(python -m loadtest baseline: stores nothing, uri null)")


@events.init.add_listener
def _load_image(environment: Any, **_kwargs: Any) -> None:
    """Read and encode the image once per Locust process."""
    options = environment.parsed_options
    spec = getattr(options, "image", DEFAULT_IMAGE) if options else DEFAULT_IMAGE
    image = load_image(spec)
    _state["image"] = image
    _state["body"] = study_body(image)
    fps = float(getattr(options, "fps", 0.0) or 0.0) if options else 0.0
    if fps < 0:
        raise ValueError(f"--fps must be >= 0, got {fps}")
    _state["pace"] = constant_throughput(fps) if fps > 0 else None
    _state["client"] = check_profile(str(getattr(options, "client", DEFAULT_PROFILE) or DEFAULT_PROFILE)
                                     if options else DEFAULT_PROFILE)
    _state["stored"] = (getattr(options, "server", "worker") if options else "worker") != "baseline"
    _state["environment"] = environment


@events.quit.add_listener
def _final_csv(**_kwargs: Any) -> None:
    """Rewrite ``PREFIX_stats.csv``, ``_failures.csv`` and ``_exceptions.csv`` with the final stats."""
    environment = _state.get("environment")
    options = getattr(environment, "parsed_options", None)
    prefix = getattr(options, "csv_prefix", None)
    if not prefix or environment is None or isinstance(environment.runner, WorkerRunner):
        return
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("stats", writer.requests_csv), ("failures", writer.failures_csv),
                          ("exceptions", writer.exceptions_csv)):
        with open(f"{prefix}_{suffix}.csv", "w", newline="") as fh:
            write(csv.writer(fh))


def request_name(verdict: Verdict, refused: bool = False) -> str:
    """Locust's name for an answer: ``/predict`` (good), ``/predict [HTTP 429]``, ``/predict [HTTP 200]`` (bad
    body), ``/predict [timeout]`` (no answer, by kind), ``/predict [refused 429]`` (a refusal honoured)."""
    if verdict.ok:
        return PREDICT_PATH
    if refused:
        return f"{PREDICT_PATH} [{REFUSED_PREFIX}{verdict.status}]"
    if verdict.kind == BAD_BODY:
        return f"{PREDICT_PATH} [HTTP 200]"
    return f"{PREDICT_PATH} [{'HTTP ' + verdict.kind if verdict.kind.isdigit() else verdict.kind}]"


class PredictUser(FastHttpUser):
    """One client (or camera) POSTing the study's body to ``/predict``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backoff_s: float | None = None
        """Set by a refusal the ``retry-after`` profile honours; the next wait is at least this long."""

    def wait_time(self) -> float:
        pace = _state.get("pace")
        paced = pace(self) if pace else 0.0
        backoff, self.backoff_s = self.backoff_s, None
        return paced if backoff is None else max(paced, backoff)

    @task
    def predict(self) -> None:
        image: Image = _state["image"]
        with self.client.post(PREDICT_PATH, data=_state["body"], headers={"Content-Type": "application/json"},
                              name=PREDICT_PATH, catch_response=True) as resp:
            status = resp.status_code or 0
            exception = resp.request_meta.get("exception") or getattr(resp, "error", None)
            if exception is not None and not isinstance(exception, LocustBadStatusCode):
                status = 0  # the connection failed, possibly after the status line (e.g. closed mid-body)
            error = repr(exception) if status == 0 and exception is not None else None
            verdict = check_predict_response(status, None if status == 0 else resp.content, image, error,
                                             stored=_state["stored"])
            wait = None
            if not verdict.ok and _state["client"] == "retry-after":
                wait = retry_after_wait(status, (resp.headers or {}).get("Retry-After"))
            resp.request_meta["name"] = request_name(verdict, refused=wait is not None)
            if verdict.ok or wait is not None:
                self.backoff_s = wait
                resp.success()  # a refusal the client honours is not a failure of the server
            else:
                resp.failure(verdict.failure)
