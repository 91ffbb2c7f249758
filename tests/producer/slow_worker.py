"""``--parallel`` worker processes for tests: publishes delayed, or held until the job is stopped.

Usage::

    ParallelRun(..., worker_target=slow_worker_main)    # each publish in each worker waits SLOW_WORKER_DELAY_S
    ParallelRun(..., worker_target=gated_worker_main)   # each worker publishes GATE_AFTER frames, then holds its
                                                        # next publish until the job is stopped

Everything else is :func:`producer.parallel.worker_main`. Worker processes are started with ``spawn``, so the
target must be importable: this module. The gated worker makes "stopped part-way" certain however fast or slow
the machine is: no chunk can finish before the stop.
"""

from __future__ import annotations

from typing import Any

from producer import publishing
from producer.parallel import worker_main
from tests.producer.slow_producer import slow_down

SLOW_WORKER_DELAY_S = 0.01
"""Per publish: about 100 frames/s per worker process."""
GATE_AFTER = 12
"""Publishes each gated worker makes before it waits for the stop."""


def slow_worker_main(*args: Any) -> None:
    """:func:`worker_main`, every publish delayed by :data:`SLOW_WORKER_DELAY_S`."""
    slow_down(SLOW_WORKER_DELAY_S)
    worker_main(*args)


def gated_worker_main(worker: int, job: Any, tasks: Any, events: Any, stop: Any) -> None:
    """:func:`worker_main`; after :data:`GATE_AFTER` publishes, each further one first waits for ``stop``."""
    original = publishing.FramePublisher.publish
    made = 0

    def gated_publish(self: publishing.FramePublisher, *args: Any, **kwargs: Any) -> None:
        nonlocal made
        made += 1
        if made > GATE_AFTER:
            stop.wait()
        original(self, *args, **kwargs)

    publishing.FramePublisher.publish = gated_publish  # type: ignore[method-assign]
    worker_main(worker, job, tasks, events, stop)
