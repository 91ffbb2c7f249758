"""One pipeline per process, shared by the push endpoint and the front door, with admission control.

Usage::

    runner = PipelineRunner(pipeline, max_in_flight=2)
    with runner.admit():                          # TransientError(429) at once when full
        frame = runner.process(jpeg, 30, ImageLimits.for_push())  # TransientError(503) if it cannot start in time

The pipeline runs one frame at a time (one inference thread per model instance). ``admit`` bounds
how many requests may wait for it: beyond ``max_in_flight`` a request is refused immediately with
429 and ``Retry-After`` instead of queueing until a timeout, so Cloud Run and Pub/Sub send it to
another instance or back off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from worker.errors import TransientError
from worker.frames import ImageLimits, ProcessedFrame, process_frame
from worker.metrics import IN_FLIGHT


class PipelineRunner:
    """Serialises pipeline runs and bounds the requests waiting for them."""

    def __init__(self, pipeline: Any, max_in_flight: int = 2) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.pipeline = pipeline
        self.max_in_flight = max_in_flight
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return str(getattr(self.pipeline, "model_name", "unknown"))

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of ``max_in_flight`` slots, or raise 429 at once."""
        if not self._slots.acquire(blocking=False):
            raise TransientError(
                f"worker is at capacity ({self.max_in_flight} requests in flight)", status=429, retry_after_s=1
            )
        IN_FLIGHT.inc()
        try:
            yield
        finally:
            IN_FLIGHT.dec()
            self._slots.release()

    def process(
        self,
        data: bytes,
        budget_s: float,
        limits: ImageLimits | None = None,
        expected_size: tuple[int, int] | None = None,
    ) -> ProcessedFrame:
        """Decode, run the pipeline, encode; 503 if the pipeline cannot start within ``budget_s``.

        Only the pipeline itself is serialised: decoding and encoding overlap another request's
        inference. ``latency_ms["queue"]`` is the time spent waiting for the pipeline.
        """
        deadline = time.perf_counter() + budget_s

        def run_exclusively(image: np.ndarray, timings: dict[str, float]) -> dict[str, Any]:
            waiting = time.perf_counter()
            if not self._lock.acquire(timeout=max(deadline - waiting, 0.001)):
                raise TransientError(f"frame could not start within its {budget_s:g} s budget", retry_after_s=2)
            try:
                timings["queue"] = (time.perf_counter() - waiting) * 1000
                return self.pipeline.run(image, timings=timings)
            finally:
                self._lock.release()

        return process_frame(data, run_exclusively, limits or ImageLimits.for_push(), expected_size)
