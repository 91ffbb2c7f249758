"""The worker's Flask application (application factory; served by gunicorn).

Usage::

    gunicorn --workers 2 --threads 4 --bind :8080 "worker.app:create_app()"
    app = create_app(WorkerConfig(settings=my_settings))     # tests

Routes: ``POST /pubsub/push`` (Pub/Sub push endpoint), ``POST /predict`` (HTTP front door),
``GET /healthz`` (process alive), ``GET /readyz`` (pipeline built and warmed up),
``GET /metrics`` (Prometheus).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request

from framecontract.clients import make_storage_client
from framecontract.settings import Settings, load_settings
from worker.auth import AuthError, PushAuthConfig, PushAuthVerifier
from worker.envelope import parse_push_envelope
from worker.errors import BadRequestError, TransientError
from worker.logs import configure_json_logging
from worker.metrics import ERRORS, FRAMES, PREDICTIONS, REQUEST_SECONDS, observe_stages, render_metrics
from worker.pipeline import DEFAULT_PIPELINE, Pipeline
from worker.predict import PredictHandler, parse_predict_request
from worker.push import FrameHandler
from worker.runner import PipelineRunner
from worker.storage import ResultStore

log = logging.getLogger("worker")

MAX_PUSH_BYTES = 16 * 1024 * 1024
"""Largest accepted push request: a 10 MB message base64-encoded in its JSON envelope."""


@dataclass
class WorkerConfig:
    """Everything the app needs; ``from_env`` reads it the way Cloud Run passes it.

    Environment: ``WORKER_PIPELINE``, ``WORKER_WARMUP`` (0/1), ``WORKER_MAX_IN_FLIGHT``,
    ``WORKER_FRAME_BUDGET_S``, ``WORKER_MAX_IMAGE_BYTES``, ``WORKER_STARTUP_DELAY_S``, plus the
    settings' variables.
    """

    settings: Settings = field(default_factory=load_settings)
    pipeline_path: Path = DEFAULT_PIPELINE
    warmup: bool = True
    json_logs: bool = True
    max_in_flight: int = 2
    """Requests admitted per process (one runs, the rest wait); beyond it 429 at once."""
    frame_budget_s: float = 30.0
    """Time a frame may take from arrival to stored result; keep well inside the ack deadline."""
    max_image_bytes: int = 10 * 1024 * 1024
    """Largest front-door request body (413 above it)."""
    startup_delay_s: float = 0.0
    """Extra start-up time before serving (the study's "10 s simulated initialisation" experiment)."""
    push_auth: PushAuthConfig = field(default_factory=PushAuthConfig)
    """OIDC check of ``POST /pubsub/push`` (off by default: the emulator sends no token)."""

    @classmethod
    def from_env(cls) -> WorkerConfig:
        env = os.environ
        return cls(
            settings=load_settings(),
            pipeline_path=Path(env.get("WORKER_PIPELINE", str(DEFAULT_PIPELINE))),
            warmup=env.get("WORKER_WARMUP", "1") != "0",
            max_in_flight=int(env.get("WORKER_MAX_IN_FLIGHT", "2")),
            frame_budget_s=float(env.get("WORKER_FRAME_BUDGET_S", "30")),
            max_image_bytes=int(env.get("WORKER_MAX_IMAGE_BYTES", str(10 * 1024 * 1024))),
            startup_delay_s=float(env.get("WORKER_STARTUP_DELAY_S", "0")),
            push_auth=PushAuthConfig.from_env(),
        )


def create_app(
    config: WorkerConfig | None = None, pipeline: Any | None = None, storage_client: Any | None = None
) -> Flask:
    """Build the app: load the pipeline (once per process), warm it up, wire storage.

    ``pipeline`` and ``storage_client`` let tests share one loaded model or point at a dead host.
    """
    config = config or WorkerConfig.from_env()
    if config.json_logs:
        configure_json_logging()
    started = time.perf_counter()
    if config.startup_delay_s > 0:
        time.sleep(config.startup_delay_s)  # simulated slow initialisation (load-test experiment)
    pipeline = pipeline or Pipeline.from_yaml(config.pipeline_path)
    if config.warmup:  # the first real request should not pay for lazy initialisation
        pipeline.run(np.zeros((64, 64, 3), dtype=np.uint8))
    storage_client = storage_client or make_storage_client(config.settings)
    store = ResultStore(storage_client.bucket(config.settings.bucket))
    runner = PipelineRunner(pipeline, max_in_flight=config.max_in_flight)
    push_handler = FrameHandler(runner, store, budget_s=config.frame_budget_s)
    push_auth = PushAuthVerifier(config.push_auth) if config.push_auth.enabled else None
    predict_handler = PredictHandler(runner, store, config.settings.bucket, budget_s=config.frame_budget_s)
    log.info(
        "worker ready",
        extra={"fields": {"pipeline": str(config.pipeline_path), "bucket": config.settings.bucket,
                          "max_in_flight": config.max_in_flight, "pid": os.getpid(),
                          "push_auth": config.push_auth.audience or "off",
                          "startup_ms": round((time.perf_counter() - started) * 1000, 1)}},
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = max(MAX_PUSH_BYTES, config.max_image_bytes)
    app.extensions["frame_handler"] = push_handler
    app.extensions["pipeline_runner"] = runner
    app.extensions["push_auth"] = push_auth

    @app.before_request
    def authenticate_push() -> Any:
        """Refuse pushes without a valid Pub/Sub OIDC token (only when an audience is configured)."""
        if push_auth is None or request.endpoint != "pubsub_push":
            return None
        try:
            push_auth.verify(request.headers.get("Authorization"))
        except AuthError as exc:
            ERRORS.labels(error_class="auth", status=str(exc.status)).inc()
            log.warning("push refused", extra={"fields": {"reason": exc.reason, "status": exc.status,
                                                          "detail": exc.detail}})
            return jsonify(error=exc.reason), exc.status, exc.headers()
        return None

    @app.get("/healthz")
    def healthz() -> tuple[str, int]:
        return "ok", 200

    @app.get("/readyz")
    def readyz() -> tuple[str, int]:
        return "ready", 200  # create_app returns only after the pipeline is built and warmed up

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render_metrics()
        return Response(body, content_type=content_type)

    @app.post("/pubsub/push")
    def pubsub_push() -> Any:
        started = time.perf_counter()
        request.get_data()  # read the body always (cached for get_json), so keep-alive stays in step
        try:
            with runner.admit():  # before the body is parsed: an excess request costs next to nothing
                message = parse_push_envelope(request.get_json(silent=True))
                outcome = push_handler.handle(message)
        except BadRequestError as exc:
            ERRORS.labels(error_class="bad-request", status="400").inc()
            log.warning("bad push request", extra={"fields": {"reason": exc.reason, "status": 400}})
            return jsonify(error=exc.reason), 400
        except TransientError as exc:
            ERRORS.labels(error_class="transient", status=str(exc.status)).inc()
            log.warning("transient failure", extra={"fields": {"reason": exc.reason, "status": exc.status}})
            return jsonify(error=exc.reason), exc.status, {"Retry-After": str(exc.retry_after_s)}
        outcome.latency_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
        FRAMES.labels(outcome=outcome.status).inc()
        observe_stages(outcome.latency_ms)
        REQUEST_SECONDS.labels(route="push").observe(time.perf_counter() - started)
        log.info(
            f"frame {outcome.status}",
            extra={"fields": {
                "job_id": outcome.identity.job_id, "frame_index": outcome.identity.frame_index,
                "timestamp_us": outcome.identity.timestamp_us, "outcome": outcome.status,
                "detections": outcome.detections, "reason": outcome.reason, "latency_ms": outcome.latency_ms,
                "message_id": message.message_id,
            }},
        )
        return "", 204

    @app.post("/predict")
    def predict() -> Any:
        started = time.perf_counter()
        if request.content_length is not None and request.content_length > config.max_image_bytes:
            return _too_large(config.max_image_bytes)
        data = request.get_data()  # read the body always, so a keep-alive connection stays in step
        try:
            with runner.admit():  # before the body is parsed: an excess request costs next to nothing
                parsed = parse_predict_request(request.content_type, data)
                body = predict_handler.handle(parsed)
        except BadRequestError as exc:
            PREDICTIONS.labels(status=str(exc.status)).inc()
            return jsonify(error=exc.reason), exc.status
        except TransientError as exc:
            PREDICTIONS.labels(status=str(exc.status)).inc()
            return jsonify(error=exc.reason), exc.status, {"Retry-After": str(exc.retry_after_s)}
        body["latency_ms"]["total"] = round((time.perf_counter() - started) * 1000, 2)
        PREDICTIONS.labels(status="200").inc()
        REQUEST_SECONDS.labels(route="predict").observe(time.perf_counter() - started)
        log.info("prediction", extra={"fields": {"name": body["name"], "detections": len(body["detections"]),
                                                 "latency_ms": body["latency_ms"], "uri": body["uri"]}})
        return jsonify(body), 200

    @app.errorhandler(413)
    def too_large(_: Exception) -> Any:
        return _too_large(app.config["MAX_CONTENT_LENGTH"])

    return app


def _too_large(limit: int) -> Any:
    return jsonify(error=f"request body is larger than the {limit} byte limit"), 413
