"""What Pub/Sub has confirmed, and the heartbeat that writes it into the manifest.

Usage::

    confirmed = ConfirmedPrefix()                  # or ConfirmedPrefix(next_index=412, ...) when resuming
    confirmed.sent(7, 700_000)                     # before publishing frame 7
    confirmed.settled(7, ok=True)                  # from the publish future's callback (any thread)
    confirmed.snapshot()                           # Progress(frames_confirmed=..., ...): frames before it are all in

    with Heartbeat(5.0, lambda: store.write_heartbeat(manifest.beat(*confirmed.snapshot()))):
        publish_everything()                       # beat() runs every 5 s in a thread until the block ends

Publish futures resolve out of order (batches go in parallel), so "how many frames are published" is
not one counter: :class:`ConfirmedPrefix` keeps the longest run of frames from the start (or from
where a resumed job started) whose publishes all succeeded. A frame sent but not confirmed — in
flight, failed, or lost with a killed process — stops the run, so a job resumed from
``frames_confirmed`` never skips a frame that was not published; it may publish again a few that
were (confirmed after the last heartbeat), which the contract's deterministic object names make
harmless. A job cut into chunks (issue 17) keeps one prefix per chunk.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Progress:
    """Frames ``0..frames_confirmed-1`` are confirmed; the first one's and the last one's timestamps."""

    frames_confirmed: int
    first_timestamp_us: int | None
    confirmed_timestamp_us: int | None


class ConfirmedPrefix:
    """The longest run of confirmed publishes from ``next_index`` on; thread-safe.

    >>> c = ConfirmedPrefix()
    >>> for i in range(3): c.sent(i, i * 100)
    >>> c.settled(1, ok=True); c.snapshot().frames_confirmed      # frame 0 is still in flight
    0
    >>> c.settled(0, ok=True); c.snapshot()
    Progress(frames_confirmed=2, first_timestamp_us=0, confirmed_timestamp_us=100)
    """

    def __init__(self, next_index: int = 0, first_timestamp_us: int | None = None,
                 confirmed_timestamp_us: int | None = None) -> None:
        self._lock = threading.Lock()
        self._next = next_index
        self._first_us = first_timestamp_us
        self._last_us = confirmed_timestamp_us
        self._pending: dict[int, int] = {}
        """Sent, not yet settled: frame_index → timestamp_us (bounded by Pub/Sub flow control)."""
        self._ahead: dict[int, int] = {}
        """Confirmed beyond a frame still pending: frame_index → timestamp_us."""
        self._broken_at: int | None = None
        """The first frame whose publish failed: the run can never pass it."""

    def sent(self, frame_index: int, timestamp_us: int) -> None:
        """Frame ``frame_index`` is about to be published (call before ``publish``)."""
        with self._lock:
            self._pending[frame_index] = timestamp_us

    def settled(self, frame_index: int, ok: bool) -> None:
        """The publish of ``frame_index`` succeeded (``ok``) or failed."""
        with self._lock:
            timestamp_us = self._pending.pop(frame_index, None)
            if timestamp_us is None:
                return
            if not ok:
                self._broken_at = min(frame_index, self._broken_at if self._broken_at is not None else frame_index)
                self._ahead = {i: t for i, t in self._ahead.items() if i < self._broken_at}
                return
            if self._broken_at is not None and frame_index >= self._broken_at:
                return
            self._ahead[frame_index] = timestamp_us
            while self._next in self._ahead:
                self._last_us = self._ahead.pop(self._next)
                if self._next == 0:
                    self._first_us = self._last_us
                self._next += 1

    def snapshot(self) -> Progress:
        """The confirmed run so far."""
        with self._lock:
            return Progress(self._next, self._first_us if self._next else None, self._last_us)


class Heartbeat:
    """Calls ``beat()`` every ``interval_s`` seconds in a daemon thread, until :meth:`stop`.

    A failing beat is logged (once per streak) and retried at the next interval: a heartbeat that
    cannot be written must not stop a job that is publishing fine. :meth:`stop` waits for a beat in
    progress, so nothing the thread writes can land after what the caller writes next.
    """

    def __init__(self, interval_s: float, beat: Callable[[], None], name: str = "heartbeat") -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._beat = beat
        self._stopped = threading.Event()
        self._failing = False
        self.beats = 0
        """Beats written so far (tests wait on it)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self._beat()
            except Exception as exc:  # logged; the next beat tries again
                if not self._failing:
                    log.warning("heartbeat not written (%s: %s); retrying every %g s",
                                type(exc).__name__, exc, self.interval_s)
                self._failing = True
            else:
                if self._failing:
                    log.warning("heartbeat written again")
                self._failing = False
                self.beats += 1

    def stop(self) -> None:
        """No more beats; returns once a beat in progress has finished."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
