"""Prometheus metrics of the worker, served at ``/metrics``.

Usage::

    FRAMES.labels(outcome="processed").inc()
    STAGE_SECONDS.labels(stage="model").observe(0.034)

Under gunicorn with several processes set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder so that
``/metrics`` adds up every process (prometheus_client's multiprocess mode); otherwise each process
reports its own numbers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

FRAMES = Counter("frames_total", "Frame messages settled (push or pull), by outcome", ["outcome"])
ERRORS = Counter(
    "push_errors_total", "Push requests not acknowledged, by error class and status", ["error_class", "status"]
)
PULL_NOT_ACKED = Counter("pull_not_acked_total", "Pulled messages nacked or delayed, by error class", ["error_class"])
PULL_HELD = Gauge("pull_messages_held", "Pulled messages held (leased, not yet settled)", multiprocess_mode="livesum")
PULL_HELD_MAX = Gauge("pull_messages_held_max", "Most messages one pull process has held at once",
                      multiprocess_mode="max")
PULL_LEASE_EXTENSIONS = Counter("pull_lease_extensions_total",
                                "Ack deadlines extended by the client's lease manager for held messages")
PULL_READY = Gauge("pull_processes_ready", "Pull processes with their pipeline warmed and subscribed",
                   multiprocess_mode="livesum")
PREDICTIONS = Counter("predict_requests_total", "Front-door requests, by HTTP status", ["status"])
STAGE_SECONDS = Histogram("frame_stage_seconds", "Per-frame latency by stage", ["stage"], buckets=LATENCY_BUCKETS)
REQUEST_SECONDS = Histogram("request_seconds", "Whole request latency, by route", ["route"], buckets=LATENCY_BUCKETS)
IN_FLIGHT = Gauge("requests_in_flight", "Requests admitted and not finished", multiprocess_mode="livesum")


if TYPE_CHECKING:
    from worker.handler import Outcome


def record_outcome(outcome: Outcome) -> None:
    """Count a settled frame and record its stage latencies."""
    FRAMES.labels(outcome=outcome.status).inc()
    observe_stages(outcome.latency_ms)


def observe_stages(latency_ms: dict[str, float]) -> None:
    """Record every stage of a frame's latency breakdown (milliseconds) in the histogram."""
    for stage, ms in latency_ms.items():
        STAGE_SECONDS.labels(stage=stage).observe(ms / 1000)


def render_metrics() -> tuple[bytes, str]:
    """The exposition text and its content type (multiprocess-aware)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
