"""The worker's HTTP paths: what Pub/Sub pushes to, what probes and clients call.

Usage::

    push_endpoint = worker_url + PUSH_PATH          # the push subscription's endpoint
    wait_http_ok(worker_url + READY_PATH)
"""

from __future__ import annotations

PUSH_PATH = "/pubsub/push"
"""Pub/Sub push endpoint (wrapped JSON envelope)."""
PREDICT_PATH = "/predict"
"""The HTTP front door (the study's ``POST`` of a base64 image)."""
HEALTH_PATH = "/healthz"
"""Liveness: the process answers."""
READY_PATH = "/readyz"
"""Readiness: pipeline built and warmed, storage reachable (503 with the reason otherwise)."""
METRICS_PATH = "/metrics"
"""Prometheus exposition."""
