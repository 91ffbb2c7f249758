"""Run an iterator a few items ahead in a background thread (bounded), e.g. decode+encode while publishing.

Usage::

    with Prefetcher(encoded_frames(), depth=8) as frames:
        for item in frames:
            publish(item)
            if stop.requested:
                frames.stop_reading()    # no new items are produced; the ones already made still come out

OpenCV releases the GIL while it decodes and encodes, so producing the next frames in a
thread overlaps with the Python work of publishing the current one. At most ``depth`` items
wait in the queue, so memory stays bounded. An exception raised by the iterator is re-raised
in the consumer, at the position where it happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Generic, TypeVar

T = TypeVar("T")

_PUT_POLL_S = 0.1


class _End:
    """Marks the end of the items (normal end, ``stop_reading`` or an error)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetcher(Generic[T]):
    """Iterates ``items`` in a daemon thread, at most ``depth`` items ahead of the consumer."""

    def __init__(self, items: Iterator[T], depth: int = 8, name: str = "prefetch") -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self._items = items
        self._queue: queue.Queue[T | _End] = queue.Queue(maxsize=depth)
        self._stop_reading = threading.Event()
        self._closed = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = _End()
        try:
            while not self._stop_reading.is_set():
                try:
                    item = next(self._items)
                except StopIteration:
                    break
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the consumer
            end = _End(exc)
        self._put(end)

    def _put(self, item: T | _End) -> bool:
        """Queue ``item``, waiting for room; False if the consumer closed the prefetcher meanwhile."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=_PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, _End):
            self._finished = True
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def stop_reading(self) -> None:
        """Produce no new items; those already produced are still returned, then iteration ends."""
        self._stop_reading.set()

    def close(self) -> None:
        """Stop the thread and drop whatever is queued; waits for the item being produced."""
        self._stop_reading.set()
        self._closed.set()
        self._thread.join()
        self._finished = True

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
