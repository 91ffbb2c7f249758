"""gunicorn settings for the worker, the same locally and on Cloud Run.

Usage::

    gunicorn -c python:worker.gunicorn_conf "worker.app:create_app()"

Layout (see :func:`serving_layout`): one process per CPU (``WEB_CONCURRENCY`` overrides), each with
one pipeline and one inference thread, and ``WORKER_MAX_IN_FLIGHT + SPARE_THREADS`` gthread
threads: requests are admitted while their expected wait fits their budget (worker.runner), up to
``WORKER_MAX_IN_FLIGHT`` held at once; each admitted request waits on its thread. The spare threads
answer health checks and ``/metrics`` while busy and refuse excess requests (429 + ``Retry-After``,
before their bodies are parsed) instead of leaving them queued for a free thread.

Environment: ``PORT`` (8080), ``HOST`` (0.0.0.0), ``WEB_CONCURRENCY`` (CPUs),
``WORKER_MAX_IN_FLIGHT`` (128), ``GUNICORN_TIMEOUT`` (0 = none, as Cloud Run recommends: the
request timeout is Cloud Run's).
"""

from __future__ import annotations

import os

from worker.defaults import DEFAULT_MAX_IN_FLIGHT

SPARE_THREADS = 4


def serving_layout(cpus: int, max_in_flight: int, processes: int | None = None) -> tuple[int, int]:
    """(gunicorn worker processes, threads per process) for ``cpus`` and the admission bound.

    >>> serving_layout(cpus=2, max_in_flight=2)
    (2, 6)
    """
    if cpus < 1 or max_in_flight < 1:
        raise ValueError("cpus and max_in_flight must be >= 1")
    return (processes or cpus), max_in_flight + SPARE_THREADS


_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_processes = int(os.environ["WEB_CONCURRENCY"]) if os.environ.get("WEB_CONCURRENCY") else None
workers, threads = serving_layout(_cpus, int(os.environ.get("WORKER_MAX_IN_FLIGHT", str(DEFAULT_MAX_IN_FLIGHT))),
                                  _processes)
worker_class = "gthread"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "0"))
graceful_timeout = 20
keepalive = 75  # longer than Cloud Run's and load balancers' idle timeouts
accesslog = None  # the app logs one structured line per request


def child_exit(server: object, worker: object) -> None:
    """gunicorn hook, in the master, when a worker process has exited or been killed.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) each process's live gauges (``requests_in_flight``)
    are its own files, which ``/metrics`` adds up; a dead process's are removed here, or its last values
    would count forever. Its counters and histograms stay.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
