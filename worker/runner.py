"""One pipeline per process, shared by the push endpoint and the front door, with admission by time.

Usage::

    runner = PipelineRunner(pipeline, max_in_flight=128)
    with runner.admit(budget_s=10):                       # TransientError(429, Retry-After) if the wait won't fit
        frame = runner.process(jpeg, 10, ImageLimits.for_push())   # TransientError(503) if it cannot start in time

The pipeline runs one frame at a time (one inference thread per model instance); requests wait for
it in arrival order. A request is admitted while the wait it can expect — the requests already
admitted times the measured service time — fits its latency budget; beyond that it is refused at
once with 429 and a ``Retry-After`` computed from the queue (when the wait would fit again). A
request that still cannot start within its budget (the estimate was wrong, or the machine slowed
down) is refused with 503, never processed late. So the CPU goes to frames that will be answered in
time, not to refusing a retry storm: a client that sends again the moment it is refused (the
study's Locust users) finds a place in the queue instead of another refusal. ``max_in_flight`` is
only a safety cap on requests held at once (threads); the budget is what bounds the wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.defaults import DEFAULT_MAX_IN_FLIGHT
from worker.errors import TransientError
from worker.frames import ImageLimits, ProcessedFrame, process_frame
from worker.metrics import IN_FLIGHT

INITIAL_SERVICE_S = 0.05
"""Service time assumed before the first frame is measured."""
SERVICE_EWMA_WEIGHT = 0.2
"""Weight of the newest measurement in the service-time estimate."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The admission decision for one request (pure): admit, or refuse with when to come back."""

    admit: bool
    expected_wait_s: float
    retry_after_s: int = 0


def decide_admission(held: int, service_s: float, budget_s: float, max_held: int) -> Admission:
    """Admit a request that would wait ``held x service_s`` if that fits ``budget_s`` (and ``held < max_held``).

    ``Retry-After`` is when the queue will have drained enough for a new request to fit, rounded up,
    at least 1 s.

    >>> decide_admission(held=3, service_s=0.05, budget_s=10, max_held=128)
    Admission(admit=True, expected_wait_s=0.15, retry_after_s=0)
    >>> decide_admission(held=400, service_s=0.05, budget_s=10, max_held=1000)
    Admission(admit=False, expected_wait_s=20.0, retry_after_s=11)
    """
    expected = held * service_s
    if held < max_held and expected + service_s <= budget_s:
        return Admission(True, round(expected, 3))
    over_budget = expected + service_s - budget_s
    over_cap = (held - max_held + 1) * service_s
    return Admission(False, round(expected, 3), max(1, math.ceil(max(over_budget, over_cap))))


def updated_service_s(estimate: float, measured: float, weight: float = SERVICE_EWMA_WEIGHT) -> float:
    """Exponentially weighted service time.

    >>> round(updated_service_s(0.05, 0.10), 3)
    0.06
    """
    return (1 - weight) * estimate + weight * measured


class PipelineRunner:
    """Serialises pipeline runs; admits requests while their expected wait fits their budget."""

    def __init__(self, pipeline: Any, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.pipeline = pipeline
        self.max_in_flight = max_in_flight
        self.service_s = INITIAL_SERVICE_S
        self._clock = clock
        self._held = 0
        self._last_departure: float | None = None
        self._state = threading.Lock()
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return str(getattr(self.pipeline, "model_name", "unknown"))

    def _observe_departure(self, started: float) -> None:
        """Update the service time from a frame leaving the pipeline.

        With a backlog, the time since the previous departure is the real time per request here: it
        includes what the pipeline's own run leaves out (decoding, encoding, storage, the HTTP work of
        the requests around it, other processes on the same cores). Without one, that interval
        includes idle time, so the frame's own run time is used instead.
        """
        now = self._clock()
        with self._state:
            backlog = self._held > 1 and self._last_departure is not None and self._last_departure > started - 60
            measured = now - self._last_departure if backlog and self._last_departure is not None else now - started
            self.service_s = updated_service_s(self.service_s, max(measured, now - started))
            self._last_departure = now

    @property
    def held(self) -> int:
        """Requests admitted and not finished (waiting or running)."""
        return self._held

    @contextmanager
    def admit(self, budget_s: float) -> Iterator[Admission]:
        """Hold a place in the queue, or raise 429 with ``Retry-After`` at once."""
        with self._state:
            decision = decide_admission(self._held, self.service_s, budget_s, self.max_in_flight)
            if decision.admit:
                self._held += 1
        if not decision.admit:
            raise TransientError(
                f"worker is busy: a new request would wait about {decision.expected_wait_s:.1f} s, over its "
                f"{budget_s:g} s budget ({self._held} requests ahead)",
                status=429, retry_after_s=decision.retry_after_s)
        IN_FLIGHT.inc()
        try:
            yield decision
        finally:
            IN_FLIGHT.dec()
            with self._state:
                self._held -= 1

    def process(
        self,
        data: bytes,
        budget_s: float,
        limits: ImageLimits | None = None,
        expected_size: tuple[int, int] | None = None,
    ) -> ProcessedFrame:
        """Decode, run the pipeline, encode; 503 if the pipeline cannot start within ``budget_s``.

        Only the pipeline itself is serialised: decoding and encoding overlap another request's
        inference. ``latency_ms["queue"]`` is the time spent waiting for the pipeline; the time it
        holds the pipeline, or under a backlog the time between departures, updates the service-time
        estimate admission uses.
        """
        deadline = self._clock() + budget_s

        def run_exclusively(image: np.ndarray, timings: dict[str, float]) -> dict[str, Any]:
            waiting = self._clock()
            if not self._lock.acquire(timeout=max(deadline - waiting, 0.001)):
                raise TransientError(f"frame could not start within its {budget_s:g} s budget", retry_after_s=2)
            try:
                started = self._clock()
                timings["queue"] = (started - waiting) * 1000
                return self.pipeline.run(image, timings=timings)
            finally:
                self._lock.release()
                self._observe_departure(started)

        return process_frame(data, run_exclusively, limits or ImageLimits.for_push(), expected_size)
