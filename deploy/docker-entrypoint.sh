#!/bin/sh
# The worker image's entrypoint: gunicorn with the worker's own settings (worker/gunicorn_conf.py).
#
# Usage: docker run -e PORT=8080 -e WEB_CONCURRENCY=2 -e WORKER_MAX_IN_FLIGHT=15 IMAGE   # serve the worker
#        docker run IMAGE ls -l /opt/frame-fanout/models                                # any other command
#
# worker/gunicorn_conf.py reads PORT (Cloud Run sets it; 8080), WEB_CONCURRENCY (processes; default one
# per CPU), WORKER_MAX_IN_FLIGHT (requests admitted per process; threads = that + 4 spare) and GUNICORN_TIMEOUT
# (0: Cloud Run's request timeout governs). WORKER_APP overrides the WSGI app. /metrics adds up all
# processes through PROMETHEUS_MULTIPROC_DIR, which must be an empty folder: a fresh one is made here.
set -eu

if [ "$#" -gt 0 ]; then
    exec "$@"
fi

if [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    PROMETHEUS_MULTIPROC_DIR="$(mktemp -d "${TMPDIR:-/tmp}/metrics.XXXXXX")"
    export PROMETHEUS_MULTIPROC_DIR
fi

exec gunicorn \
    --config python:worker.gunicorn_conf \
    --worker-tmp-dir /dev/shm \
    --no-control-socket \
    "${WORKER_APP:-worker.app:create_app()}"
