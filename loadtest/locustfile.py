"""Locust users for the HTTP front door: the study's POST /predict, as fast as Locust can go.

Usage::

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8080 -u 1000 -r 100 -t 5m
    locust -f loadtest/locustfile.py ... --image path/to/frame.jpg --fps 5     # cameras at 5 fps each
    python -m loadtest run study-autoscaling --host https://...               # the usual way

Each user POSTs the study's body ``{"name": ..., "image": <base64 JPEG>}`` (the dog photo unless
``--image`` names another asset or file) with no wait between requests (the study's profile), or,
with ``--fps N``, at a constant throughput of N requests/s per user (``constant_throughput``: a
camera sending N frames/s; when a response takes longer than 1/N s the user falls behind, like a
camera whose frames queue). Every response is checked (:func:`loadtest.checks.check_predict_response`):
a 200 must carry the /predict JSON for an image of the size sent. Failures are named by status code:
``POST /predict`` for good answers, ``POST /predict [HTTP 429]`` etc. for failures, so Locust's tables
give response times per status and the failures CSV groups by status.

Locust writes its CSV files once a second from a background greenlet, so the requests that finish in
the last second (including those still in flight when the run time is up) never reach
``*_stats.csv`` / ``*_failures.csv``; :func:`_final_csv` rewrites those files with the final
numbers when Locust quits (measured: 14 of 16 good responses in the CSV of a 4 s run without it).
"""

from __future__ import annotations

import csv
from typing import Any

from locust import FastHttpUser, events, task
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from locust.user.wait_time import constant_throughput

from loadtest.checks import PREDICT_PATH, Image, check_predict_response, load_image, status_of_failure, study_body

DEFAULT_IMAGE = "dog"

_state: dict[str, Any] = {}


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument("--image", type=str, default=DEFAULT_IMAGE, env_var="LOADTEST_IMAGE",
                        help="asset name (dog) or path of the image to POST")
    parser.add_argument("--fps", type=float, default=0.0, env_var="LOADTEST_FPS",
                        help="requests per second per user (constant throughput); 0 = no wait (the study)")


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


class PredictUser(FastHttpUser):
    """One client (or camera) POSTing the study's body to ``/predict``."""

    def wait_time(self) -> float:
        pace = _state.get("pace")
        return pace(self) if pace else 0.0

    @task
    def predict(self) -> None:
        image: Image = _state["image"]
        with self.client.post(PREDICT_PATH, data=_state["body"], headers={"Content-Type": "application/json"},
                              name=PREDICT_PATH, catch_response=True) as resp:
            error = repr(resp.error) if getattr(resp, "error", None) is not None and not resp.status_code else None
            verdict = check_predict_response(resp.status_code or 0, resp.content, image, error)
            if verdict.ok:
                resp.success()
            else:
                resp.request_meta["name"] = f"{PREDICT_PATH} [HTTP {status_of_failure(verdict.failure or '')}]"
                resp.failure(verdict.failure)
