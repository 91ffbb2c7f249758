"""The producer's command line with every publish delayed: a job that lives long enough to be killed mid-way.

Usage::

    python -m tests.producer.slow_producer SECONDS_PER_FRAME SOURCE [producer options]

Everything but the delay is the real ``python -m producer`` (options, heartbeat, manifest, exit status).
The delay reaches ``--parallel``'s worker processes too: they are started with ``spawn``, which imports this
module again in each of them, and the patch is applied at import from :data:`DELAY_VARIABLE`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from producer import cli, publishing

DELAY_VARIABLE = "SLOW_PRODUCER_DELAY_S"


def slow_down(delay: float) -> None:
    """Delay each ``FramePublisher.publish`` by ``delay`` seconds in this process."""
    original = publishing.FramePublisher.publish

    def slow_publish(self: publishing.FramePublisher, *args: Any, **kwargs: Any) -> None:
        time.sleep(delay)
        original(self, *args, **kwargs)

    publishing.FramePublisher.publish = slow_publish  # type: ignore[method-assign]


if os.environ.get(DELAY_VARIABLE) and __name__ != "__main__":  # a spawned worker process
    slow_down(float(os.environ[DELAY_VARIABLE]))


def main(argv: list[str]) -> int:
    """Delay each publish by ``argv[0]`` seconds (here and in worker processes), then run the producer."""
    os.environ[DELAY_VARIABLE] = argv[0]
    slow_down(float(argv[0]))
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
