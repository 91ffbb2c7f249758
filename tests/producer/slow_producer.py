"""The producer's command line with every publish delayed: a job that lives long enough to be killed mid-way.

Usage::

    python -m tests.producer.slow_producer SECONDS_PER_FRAME SOURCE [producer options]

Everything but the delay is the real ``python -m producer`` (options, heartbeat, manifest, exit status).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from producer import cli, publishing


def main(argv: list[str]) -> int:
    """Delay each ``FramePublisher.publish`` by ``argv[0]`` seconds, then run the producer with ``argv[1:]``."""
    delay, original = float(argv[0]), publishing.FramePublisher.publish

    def slow_publish(self: publishing.FramePublisher, *args: Any, **kwargs: Any) -> None:
        time.sleep(delay)
        original(self, *args, **kwargs)

    publishing.FramePublisher.publish = slow_publish  # type: ignore[method-assign]
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
