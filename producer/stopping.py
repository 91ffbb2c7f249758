"""Clean stops: SIGINT/SIGTERM ask the job to stop after the frame in hand.

Usage::

    stop = StopRequest()
    with stop_on_signals(stop):
        for frame in frames:
            publish(frame)
            if stop.requested:
                break

The first SIGINT (Ctrl-C) or SIGTERM (Cloud Run, Kubernetes, ``kill``) only sets the flag: the
job publishes the frame it has already read, flushes what is pending and writes a ``stopped``
manifest. A second signal raises :class:`KeyboardInterrupt` to abort the flush.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """A thread-safe "please stop" flag with the reason it was raised."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.signal_number: int | None = None

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self, reason: str, signal_number: int | None = None) -> None:
        """Ask the job to stop; the first reason wins."""
        if not self._event.is_set():
            self.reason, self.signal_number = reason, signal_number
            self._event.set()


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """While active, SIGINT/SIGTERM set ``stop`` (a second one aborts). No-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signal_number: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signal_number).name
        if stop.requested:
            raise KeyboardInterrupt(f"second {name}: aborting")
        log.warning("%s received: stopping after the current frame and flushing pending publishes "
                    "(send it again to abort)", name)
        stop.request(f"{name} received", signal_number)

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
