"""Run an iterator a few items ahead in a background thread (bounded), e.g. decode+encode while publishing.

Usage::

    with Prefetcher(encoded_frames(), depth=8) as frames:                 # every-frame: the reader waits
        for item in frames:
            publish(item)
            if stop.requested:
                frames.stop_reading()    # no new items are produced; the ones already made still come out

    with Prefetcher(camera_frames(), depth=8, policy="drop-oldest", max_items=100) as frames:
        ...                              # latest-frame: the reader never waits; frames.dropped counts

    frames.wait_until(lambda p: p.reader_waiting, timeout=10)   # e.g. a test: backpressure reached the reader

OpenCV releases the GIL while it decodes and encodes, so producing the next frames in a
thread overlaps with the Python work of publishing the current one. At most ``depth`` items
wait, so memory stays bounded. With ``policy="block"`` (every frame) the producing thread waits
for room; with ``"drop-oldest"`` (latest frame, for live sources) it never waits: a new item
pushes out the oldest waiting one, and :attr:`Prefetcher.dropped` counts them. ``max_items``
stops producing once that many items will come out (produced minus dropped), so no item is made
that will not be delivered. An exception raised by the iterator is re-raised in the consumer, at
the position where it happened. After :meth:`stop_reading`, a producer stuck in the iterator (a
stalled network read) is given ``stop_grace_s`` before the consumer stops waiting for it.

``should_stop`` is polled by a consumer that waits for an item (every 0.1 s): when it returns
True, reading stops as with :meth:`stop_reading` and ``on_stop`` is called (e.g. to interrupt a
source blocked on the network) — so a stop works even while no item arrives.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

_WAIT_POLL_S = 0.1
DEFAULT_STOP_GRACE_S = 5.0


class _End:
    """Marks the end of the items (normal end, ``stop_reading`` or an error)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterates ``items`` in a daemon thread, at most ``depth`` items ahead of the consumer."""

    def __init__(self, items: Iterator[T], depth: int = 8, name: str = "prefetch",
                 policy: Literal["block", "drop-oldest"] = "block", max_items: int | None = None,
                 stop_grace_s: float = DEFAULT_STOP_GRACE_S, should_stop: Callable[[], bool] | None = None,
                 on_stop: Callable[[], None] | None = None) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        if policy not in ("block", "drop-oldest"):
            raise ValueError(f"unknown policy {policy!r}")
        self._items = items
        self._depth, self._policy, self._max_items = depth, policy, max_items
        self._stop_grace_s = stop_grace_s
        self._should_stop, self._on_stop = should_stop, on_stop
        self._buffer: deque[T | _End] = deque()
        self._cond = threading.Condition()
        self._stop_reading = threading.Event()
        self._stop_requested_at: float | None = None
        self._closed = False
        self._finished = False
        self.produced = 0
        """Items taken from ``items`` and queued (dropped ones included)."""
        self.dropped = 0
        """Items pushed out unconsumed by newer ones (``drop-oldest`` only)."""
        self.abandoned = False
        """True if iteration ended because the producer did not return within the grace period."""
        self.reader_waiting = False
        """True while the reader holds an item and waits for room in the full queue (``block``): backpressure
        has reached it. Cleared when the consumer takes an item."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _limit_reached(self) -> bool:
        with self._cond:
            return self._max_items is not None and self.produced - self.dropped >= self._max_items

    def _run(self) -> None:
        end = _End()
        try:
            while not self._stop_reading.is_set() and not self._limit_reached():
                try:
                    item = next(self._items)
                except StopIteration:
                    break
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            end = _End(exc)
        with self._cond:
            self._buffer.append(end)  # the end marker may exceed depth: it holds no data
            self._cond.notify_all()

    def _put(self, item: T) -> bool:
        """Queue ``item`` by the policy; False if the consumer closed the prefetcher meanwhile."""
        with self._cond:
            if self._policy == "block":
                while len(self._buffer) >= self._depth and not self._closed:
                    if not self.reader_waiting:
                        self.reader_waiting = True
                        self._cond.notify_all()
                    self._cond.wait(_WAIT_POLL_S)
            elif len(self._buffer) >= self._depth:
                self._buffer.popleft()
                self.dropped += 1
            if self._closed:
                return False
            self._buffer.append(item)
            self.produced += 1
            self._cond.notify_all()
            return True

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        self._poll_stop()
        with self._cond:
            while not self._finished and not self._buffer:
                stop_at = self._stop_requested_at
                if stop_at is not None and time.monotonic() - stop_at > self._stop_grace_s:
                    self._finished = self.abandoned = True
                    break
                self._cond.wait(_WAIT_POLL_S)
                if self._should_stop is not None and not self._stop_reading.is_set():
                    self._cond.release()  # the callbacks may take other locks
                    try:
                        self._poll_stop()
                    finally:
                        self._cond.acquire()
            if self._finished:
                raise StopIteration
            item = self._buffer.popleft()
            self.reader_waiting = False
            self._cond.notify_all()
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def _poll_stop(self) -> None:
        if self._should_stop is not None and not self._stop_reading.is_set() and self._should_stop():
            self.stop_reading()

    def wait_until(self, predicate: Callable[[Prefetcher[T]], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate(self)`` holds, checked each time the queue changes; False if ``timeout`` passed.

        ``prefetcher.wait_until(lambda p: p.reader_waiting, 10)``: for monitors and tests, which can then
        wait for a state instead of sleeping.
        """
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)

    def stop_reading(self) -> None:
        """Produce no new items; those already produced are still returned, then iteration ends."""
        if not self._stop_reading.is_set():
            self._stop_requested_at = time.monotonic()
            self._stop_reading.set()
            if self._on_stop is not None:
                self._on_stop()

    def close(self) -> None:
        """Stop the thread and drop whatever is queued; waits (up to the grace period) for the item in progress."""
        self.stop_reading()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(self._stop_grace_s)
        self._finished = True

    @property
    def reading(self) -> bool:
        """True while the producing thread is running."""
        return self._thread.is_alive()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
