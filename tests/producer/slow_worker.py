"""A ``--parallel`` worker process whose publishes are delayed: a parallel job that lives long enough to be stopped.

Usage::

    ParallelRun(..., worker_target=slow_worker_main)   # each publish in each worker waits SLOW_WORKER_DELAY_S

Everything but the delay is :func:`producer.parallel.worker_main`. Worker processes are started with ``spawn``,
so the target must be importable: this module.
"""

from __future__ import annotations

from typing import Any

from producer.parallel import worker_main
from tests.producer.slow_producer import slow_down

SLOW_WORKER_DELAY_S = 0.01
"""Per publish: about 100 frames/s per worker process."""


def slow_worker_main(*args: Any) -> None:
    """:func:`worker_main`, every publish delayed by :data:`SLOW_WORKER_DELAY_S`."""
    slow_down(SLOW_WORKER_DELAY_S)
    worker_main(*args)
