"""``/metrics`` under gunicorn in multiprocess mode: a killed worker process's live gauges leave with it.

A real gunicorn (``worker.gunicorn_conf``, one process, the stack's command line) on the storage
emulator, with ``PROMETHEUS_MULTIPROC_DIR`` set as the local stack and the image set it. Clients keep
front-door requests in flight; the worker process is stopped (SIGSTOP) at a moment its gauge file
says requests are in flight, then killed with SIGKILL. gunicorn starts a new process; once the
clients are done, ``requests_in_flight`` must be 0 — the dead process's requests are not in flight
anywhere — while its counters still count (issue 16).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from deploy.emulators import ManagedProcess, free_port, spawn, wait_http_ok
from deploy.local import gunicorn_has_control_socket
from deploy.stack_config import StackConfig, gunicorn_command
from framecontract.endpoints import METRICS_PATH, PREDICT_PATH, READY_PATH
from framecontract.settings import Settings

CLIENTS = 6
DEADLINE_S = 120


@pytest.fixture
def gunicorn(gcs_settings: Settings, tmp_path: Path) -> Iterator[tuple[ManagedProcess, str, Path]]:
    """(gunicorn master, its URL, the multiprocess metrics dir)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ) | gcs_settings.to_env() | {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "WORKER_PUSH_AUTH": "off", "PYTHONUNBUFFERED": "1",
    }
    command = gunicorn_command(sys.executable, StackConfig(workers=1, port=port), port,
                               no_control_socket=gunicorn_has_control_socket())
    master = spawn("gunicorn", command, tmp_path / "gunicorn.log", env=env, cwd=Path(__file__).parents[2], url=url)
    try:
        wait_http_ok(master, url + READY_PATH, timeout=90)
        yield master, url, metrics_dir
    finally:
        master.stop()


def worker_pids(master: ManagedProcess) -> list[int]:
    return [p.pid for p in psutil.Process(master.pid).children()]


def wait_for(condition, what: str, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        threading.Event().wait(0.05)  # poll the condition, not a guess of how long it takes
    pytest.fail(f"timed out waiting for {what}")


def collected(metrics_dir: Path, name: str, labels: dict[str, str] | None = None) -> float:
    """A metric's value straight from the multiprocess files (what /metrics would add up)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    return sum(s.value for family in registry.collect() for s in family.samples
               if s.name == name and (labels is None or s.labels == labels))


def scraped(url: str, name: str) -> float:
    text = requests.get(url + METRICS_PATH, timeout=10).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name)


def test_a_killed_worker_process_leaves_no_requests_in_flight(gunicorn, vtest_jpeg) -> None:
    master, url, metrics_dir = gunicorn
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                with contextlib.suppress(requests.RequestException):  # the killed process's connections reset
                    session.post(url + PREDICT_PATH, data=vtest_jpeg, headers={"Content-Type": "image/jpeg"},
                                 timeout=30)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        (victim,) = worker_pids(master)

        def stopped_with_requests_in_flight() -> tuple[float, float] | None:
            os.kill(victim, signal.SIGSTOP)
            held = collected(metrics_dir, "requests_in_flight")
            answered = collected(metrics_dir, "predict_requests_total", {"status": "200"})
            if held and answered:
                return held, answered
            os.kill(victim, signal.SIGCONT)
            return None

        held, answered = wait_for(stopped_with_requests_in_flight,
                                  "the worker process to hold a request, having answered one")
        os.kill(victim, signal.SIGKILL)
        (replacement,) = wait_for(lambda: [p for p in worker_pids(master) if p != victim] or None,
                                  "gunicorn to replace the killed process")
        wait_http_ok(master, url + READY_PATH, timeout=90)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert held >= 1 and replacement != victim
    assert scraped(url, "requests_in_flight") == 0, f"the dead process's {held:g} requests still count"
    assert scraped(url, "predict_requests_total") >= answered >= 1, "its counters still count"
