"""The worker's Flask application (application factory; served by gunicorn).

Usage::

    gunicorn --workers 2 --threads 1 --bind :8080 "worker.app:create_app()"
    app = create_app(WorkerConfig(settings=my_settings))     # tests

Routes: ``POST /pubsub/push`` (Pub/Sub push endpoint), ``GET /healthz`` (process alive),
``GET /readyz`` (pipeline built and warmed up).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, jsonify, request

from framecontract.clients import make_storage_client
from framecontract.settings import Settings, load_settings
from worker.envelope import parse_push_envelope
from worker.errors import BadRequestError, TransientError
from worker.logs import configure_json_logging
from worker.pipeline import DEFAULT_PIPELINE, Pipeline
from worker.push import FrameHandler
from worker.storage import ResultStore

log = logging.getLogger("worker")

MAX_PUSH_BYTES = 16 * 1024 * 1024
"""Largest accepted request: a 10 MB message base64-encoded in its JSON envelope."""


@dataclass
class WorkerConfig:
    """Everything the app needs; ``from_env`` reads it the way Cloud Run passes it."""

    settings: Settings = field(default_factory=load_settings)
    pipeline_path: Path = DEFAULT_PIPELINE
    warmup: bool = True
    json_logs: bool = True

    @classmethod
    def from_env(cls) -> WorkerConfig:
        return cls(
            settings=load_settings(),
            pipeline_path=Path(os.environ.get("WORKER_PIPELINE", str(DEFAULT_PIPELINE))),
            warmup=os.environ.get("WORKER_WARMUP", "1") != "0",
        )


def create_app(config: WorkerConfig | None = None, pipeline: Any | None = None, storage_client: Any | None = None) -> Flask:
    """Build the app: load the pipeline (once per process), warm it up, wire storage.

    ``pipeline`` and ``storage_client`` let tests share one loaded model or point at a dead host.
    """
    config = config or WorkerConfig.from_env()
    if config.json_logs:
        configure_json_logging()
    started = time.perf_counter()
    pipeline = pipeline or Pipeline.from_yaml(config.pipeline_path)
    if config.warmup:
        pipeline.run(np.zeros((64, 64, 3), dtype=np.uint8))
    storage_client = storage_client or make_storage_client(config.settings)
    handler = FrameHandler(pipeline, ResultStore(storage_client.bucket(config.settings.bucket)))
    log.info(
        "worker ready",
        extra={"fields": {"pipeline": str(config.pipeline_path), "bucket": config.settings.bucket,
                          "startup_ms": round((time.perf_counter() - started) * 1000, 1)}},
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_PUSH_BYTES
    app.extensions["frame_handler"] = handler

    @app.get("/healthz")
    def healthz() -> tuple[str, int]:
        return "ok", 200

    @app.get("/readyz")
    def readyz() -> tuple[str, int]:
        return "ready", 200

    @app.post("/pubsub/push")
    def pubsub_push() -> Any:
        started = time.perf_counter()
        try:
            message = parse_push_envelope(request.get_json(silent=True))
            outcome = handler.handle(message)
        except BadRequestError as exc:
            log.warning("bad push request", extra={"fields": {"reason": exc.reason, "status": 400}})
            return jsonify(error=exc.reason), 400
        except TransientError as exc:
            log.warning("transient failure", extra={"fields": {"reason": exc.reason, "status": exc.status}})
            return jsonify(error=exc.reason), exc.status, {"Retry-After": str(exc.retry_after_s)}
        outcome.latency_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
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

    @app.errorhandler(413)
    def too_large(_: Exception) -> Any:
        return jsonify(error=f"request body is larger than {MAX_PUSH_BYTES} bytes"), 413

    return app
