"""The bounded read-ahead thread: order, errors in place, bounded look-ahead, stop keeps what was read."""

from __future__ import annotations

import threading
import time

import pytest

from producer.prefetch import Prefetcher


def test_items_come_out_in_order() -> None:
    with Prefetcher(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))


def test_an_error_is_raised_where_it_happened() -> None:
    def items():
        yield 1
        yield 2
        raise OSError("read failed")

    received = []
    with Prefetcher(items(), depth=4) as prefetched, pytest.raises(OSError, match="read failed"):
        for item in prefetched:
            received.append(item)
    assert received == [1, 2]


def test_reading_ahead_is_bounded_by_depth() -> None:
    produced = []

    def items():
        for i in range(1000):
            produced.append(i)
            yield i

    with Prefetcher(items(), depth=4) as prefetched:
        assert next(prefetched) == 0
        time.sleep(0.3)
        # 4 waiting in the queue + 1 being put once there is room + the one handed out
        assert len(produced) <= 6


def test_stop_reading_still_delivers_what_was_read() -> None:
    produced = []
    gate = threading.Event()

    def items():
        for i in range(1000):
            produced.append(i)
            yield i
            if i == 4:
                gate.set()

    with Prefetcher(items(), depth=8) as prefetched:
        gate.wait(5)
        prefetched.stop_reading()
        received = list(prefetched)
    assert received == produced[: len(received)]
    assert 5 <= len(received) < 1000
    assert len(received) == len(produced), "every item produced before the stop is delivered"


def test_close_while_the_producer_waits_for_room() -> None:
    prefetched = Prefetcher(iter(range(1000)), depth=2)
    assert next(prefetched) == 0
    prefetched.close()
    assert list(prefetched) == []
