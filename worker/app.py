"""The worker's Flask application (application factory + one blueprint; served by gunicorn).

Usage::

    gunicorn -c python:worker.gunicorn_conf "worker.app:create_app()"
    app = create_app(WorkerConfig(settings=my_settings))     # tests

Routes (:mod:`framecontract.endpoints`): ``POST /pubsub/push`` (Pub/Sub push endpoint), ``POST
/predict`` (HTTP front door), ``GET /healthz`` (process alive), ``GET /readyz`` (pipeline warmed
and storage reachable, else 503 with the reason), ``GET /metrics`` (Prometheus).

Each error class maps to its answer in exactly one error handler: :class:`BadRequestError` → its
status (400, 413, 415) with the reason; :class:`TransientError` → 429/503 with ``Retry-After``;
:class:`AuthError` → 401/403/503 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from framecontract.clients import make_storage_client
from framecontract.endpoints import HEALTH_PATH, METRICS_PATH, PREDICT_PATH, PUSH_PATH, READY_PATH
from framecontract.settings import Settings, load_settings
from worker.auth import AuthError, PushAuthConfig, PushAuthVerifier
from worker.defaults import DEFAULT_MAX_IN_FLIGHT
from worker.envelope import parse_push_body
from worker.errors import BadRequestError, TransientError
from worker.frames import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, ImageLimits
from worker.handler import FrameHandler
from worker.logs import configure_json_logging
from worker.metrics import ERRORS, PREDICTIONS, REQUEST_SECONDS, record_outcome, render_metrics
from worker.pipeline import DEFAULT_PIPELINE, Pipeline
from worker.predict import PayloadTooLargeError, PredictHandler, parse_predict_request
from worker.runner import PipelineRunner
from worker.storage import ResultStore

log = logging.getLogger("worker")

MAX_PUSH_BYTES = 16 * 1024 * 1024
"""Largest accepted push request: a 10 MB message base64-encoded in its JSON envelope."""
EXTENSION = "frame_fanout"
"""Key of :class:`WorkerServices` in ``app.extensions``."""


@dataclass
class WorkerConfig:
    """Everything the app needs; ``from_env`` reads it the way Cloud Run passes it.

    Environment: ``WORKER_PIPELINE``, ``WORKER_WARMUP`` (0/1), ``WORKER_MAX_IN_FLIGHT``,
    ``WORKER_FRAME_BUDGET_S``, ``WORKER_PREDICT_BUDGET_S``, ``WORKER_MAX_IMAGE_BYTES``, ``WORKER_MAX_IMAGE_PIXELS``,
    ``WORKER_MAX_IMAGE_SIDE``, ``WORKER_STARTUP_DELAY_S``, plus the settings' variables.
    """

    settings: Settings = field(default_factory=load_settings)
    pipeline_path: Path = DEFAULT_PIPELINE
    warmup: bool = True
    json_logs: bool = True
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    """Safety cap on requests held per process (waiting or running; gunicorn threads); the budgets decide."""
    frame_budget_s: float = 30.0
    """Push: the wait a frame may expect before it is refused (429), and the time it may take to start
    (503 past it); keep well inside the ack deadline."""
    predict_budget_s: float = 10.0
    """Front door: the same, for ``POST /predict``."""
    max_image_bytes: int = 10 * 1024 * 1024
    """Largest front-door request body (413 above it)."""
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    """Largest image (pixels, from its header, before decoding) on both paths."""
    max_image_side: int = DEFAULT_MAX_SIDE
    """Longest image side (from its header) on both paths."""
    startup_delay_s: float = 0.0
    """Extra start-up time before serving (the study's "10 s simulated initialisation" experiment)."""
    push_auth: PushAuthConfig = field(default_factory=PushAuthConfig)
    """OIDC check of ``POST /pubsub/push`` (off by default: the emulator sends no token)."""
    readiness_recheck_s: float = 10.0
    """How long ``/readyz`` trusts its last storage check."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> WorkerConfig:
        env = dict(os.environ if environ is None else environ)
        return cls(
            settings=load_settings(environ=env),
            pipeline_path=Path(env.get("WORKER_PIPELINE", str(DEFAULT_PIPELINE))),
            warmup=env.get("WORKER_WARMUP", "1") != "0",
            max_in_flight=int(env.get("WORKER_MAX_IN_FLIGHT", str(DEFAULT_MAX_IN_FLIGHT))),
            frame_budget_s=float(env.get("WORKER_FRAME_BUDGET_S", "30")),
            predict_budget_s=float(env.get("WORKER_PREDICT_BUDGET_S", "10")),
            max_image_bytes=int(env.get("WORKER_MAX_IMAGE_BYTES", str(10 * 1024 * 1024))),
            max_image_pixels=int(env.get("WORKER_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))),
            max_image_side=int(env.get("WORKER_MAX_IMAGE_SIDE", str(DEFAULT_MAX_SIDE))),
            startup_delay_s=float(env.get("WORKER_STARTUP_DELAY_S", "0")),
            push_auth=PushAuthConfig.from_env(env),
        )


class Readiness:
    """What ``/readyz`` answers: ``None`` when ready, else the reason (pipeline not warmed, storage down).

    The storage check is a network call, so its result is kept for ``recheck_s`` seconds.
    """

    def __init__(self, check_storage: Callable[[], str | None], recheck_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pipeline_ready = False
        self._check_storage = check_storage
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._storage_problem: str | None = None

    def problem(self) -> str | None:
        if not self.pipeline_ready:
            return "pipeline is not built and warmed up yet"
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._recheck_s:
                self._storage_problem = self._check_storage()
                self._checked_at = now
            return self._storage_problem


@dataclass
class WorkerServices:
    """What the views use, built once per process by :func:`create_app`."""

    config: WorkerConfig
    runner: PipelineRunner
    frames: FrameHandler
    predictions: PredictHandler
    readiness: Readiness
    push_auth: PushAuthVerifier | None = None


def services() -> WorkerServices:
    return current_app.extensions[EXTENSION]


def create_app(
    config: WorkerConfig | None = None, pipeline: Any | None = None, storage_client: Any | None = None
) -> Flask:
    """Build the app: load the pipeline (once per process), warm it up, wire storage.

    ``pipeline`` lets tests share one loaded model; ``storage_client`` (reads and the readiness check)
    defaults to one for ``config.settings``, where the uploads go too.
    """
    config = config or WorkerConfig.from_env()
    if config.json_logs:
        configure_json_logging()
    started = time.perf_counter()
    storage_client = storage_client or make_storage_client(config.settings)
    store = ResultStore.from_settings(config.settings, storage_client)
    readiness = Readiness(store.check_reachable, config.readiness_recheck_s)
    if config.startup_delay_s > 0:
        time.sleep(config.startup_delay_s)  # simulated slow initialisation (load-test experiment)
    pipeline = pipeline or Pipeline.from_yaml(config.pipeline_path)
    if config.warmup:  # the first real request should not pay for lazy initialisation
        pipeline.run(np.zeros((64, 64, 3), dtype=np.uint8))
    readiness.pipeline_ready = True
    runner = PipelineRunner(pipeline, max_in_flight=config.max_in_flight)
    bucket = config.settings.bucket
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max(MAX_PUSH_BYTES, config.max_image_bytes)
    app.extensions[EXTENSION] = WorkerServices(
        config=config,
        runner=runner,
        frames=FrameHandler(runner, store, bucket, config.frame_budget_s,
                            ImageLimits.for_push(config.max_image_pixels, config.max_image_side)),
        predictions=PredictHandler(runner, store, bucket, config.predict_budget_s,
                                   ImageLimits.for_predict(config.max_image_pixels, config.max_image_side)),
        readiness=readiness,
        push_auth=PushAuthVerifier(config.push_auth) if config.push_auth.enabled else None,
    )
    app.register_blueprint(bp)
    log.info(
        "worker ready",
        extra={"fields": {"pipeline": str(config.pipeline_path), "bucket": bucket,
                          "max_in_flight": config.max_in_flight, "pid": os.getpid(),
                          "push_auth": config.push_auth.audience or "off",
                          "startup_ms": round((time.perf_counter() - started) * 1000, 1)}},
    )
    return app


bp = Blueprint("worker", __name__)


def read_body(limit: int) -> bytes:
    """The request body if it is at most ``limit`` bytes, declared (Content-Length) or chunked; else 413.

    Werkzeug stops reading a chunked body at ``max_content_length`` without an error (the rest is
    dropped and the truncated body would be used), so it reads one byte more than the limit here.
    """
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"request body is larger than the {limit} byte limit")
    request.max_content_length = limit + 1
    data = request.get_data()
    if len(data) > limit:
        raise PayloadTooLargeError(f"request body is larger than the {limit} byte limit")
    return data


@bp.get(HEALTH_PATH)
def healthz() -> tuple[str, int]:
    return "ok", 200


@bp.get(READY_PATH)
def readyz() -> Any:
    problem = services().readiness.problem()
    if problem is not None:
        return jsonify(ready=False, reason=problem), 503
    return jsonify(ready=True), 200


@bp.get(METRICS_PATH)
def metrics() -> Response:
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)


@bp.post(PUSH_PATH)
def pubsub_push() -> Any:
    started = time.perf_counter()
    worker = services()
    if worker.push_auth is not None:
        worker.push_auth.verify(request.headers.get("Authorization"))
    body = read_body(current_app.config["MAX_CONTENT_LENGTH"])  # always, so keep-alive stays in step
    with worker.runner.admit(worker.config.frame_budget_s):  # before parsing: a refusal costs next to nothing
        message = parse_push_body(body)
        outcome = worker.frames.handle(message, received=started)
    outcome.latency_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
    record_outcome(outcome)
    REQUEST_SECONDS.labels(route="push").observe(time.perf_counter() - started)
    log.info(f"frame {outcome.status}", extra={"fields": outcome.log_fields(message.message_id)})
    return "", 204


@bp.post(PREDICT_PATH)
def predict() -> Any:
    started = time.perf_counter()
    worker = services()
    data = read_body(worker.config.max_image_bytes)  # always, so a keep-alive connection stays in step
    with worker.runner.admit(worker.config.predict_budget_s):  # before parsing: a refusal costs next to nothing
        body = worker.predictions.handle(parse_predict_request(request.content_type, data))
    body["latency_ms"]["total"] = round((time.perf_counter() - started) * 1000, 2)
    PREDICTIONS.labels(status="200").inc()
    REQUEST_SECONDS.labels(route="predict").observe(time.perf_counter() - started)
    log.info("prediction", extra={"fields": {"name": body["name"], "detections": len(body["detections"]),
                                             "latency_ms": body["latency_ms"], "uri": body["uri"]}})
    return jsonify(body), 200


# ---------------------------------------------------------------- one handler per error class


def _count_refusal(error_class: str, status: int) -> None:
    if request.endpoint == "worker.predict":
        PREDICTIONS.labels(status=str(status)).inc()
    else:
        ERRORS.labels(error_class=error_class, status=str(status)).inc()


@bp.app_errorhandler(BadRequestError)
def bad_request(exc: BadRequestError) -> Any:
    _count_refusal("bad-request", exc.status)
    if request.endpoint != "worker.predict":
        log.warning("bad push request", extra={"fields": {"reason": exc.reason, "status": exc.status}})
    return jsonify(error=exc.reason), exc.status


@bp.app_errorhandler(TransientError)
def transient(exc: TransientError) -> Any:
    _count_refusal("transient", exc.status)
    if request.endpoint != "worker.predict":
        log.warning("transient failure", extra={"fields": {"reason": exc.reason, "status": exc.status}})
    return jsonify(error=exc.reason), exc.status, {"Retry-After": str(exc.retry_after_s)}


@bp.app_errorhandler(AuthError)
def unauthenticated(exc: AuthError) -> Any:
    _count_refusal("auth", exc.status)
    log.warning("push refused", extra={"fields": {"reason": exc.reason, "status": exc.status, "detail": exc.detail}})
    return jsonify(error=exc.reason), exc.status, exc.headers()


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(_: RequestEntityTooLarge) -> Any:
    limit = request.max_content_length or current_app.config["MAX_CONTENT_LENGTH"]
    _count_refusal("bad-request", 413)
    return jsonify(error=f"request body is larger than the {limit} byte limit"), 413
