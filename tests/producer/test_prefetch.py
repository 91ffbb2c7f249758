"""The bounded read-ahead thread: order, errors in place, bounded look-ahead, stop keeps what was read,
drop-oldest, max_items, stops while the source stalls.

No test sleeps: each one waits for the state it needs (an event set by the source, or the read-ahead's
own state through ``Prefetcher.wait_until``), so it passes on behaviour, never on timing. A wait that
ends on its timeout is a failure.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import pytest

from producer.prefetch import Prefetcher
from tests.producer.helpers import WAIT_S


def counted(numbers: Iterator[int], asked: list[int]) -> Iterator[int]:
    """``numbers``, recording in ``asked`` each one the reader takes."""
    for number in numbers:
        asked.append(number)
        yield number


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
    asked: list[int] = []
    with Prefetcher(counted(iter(range(1000)), asked), depth=4) as prefetched:
        assert next(prefetched) == 0
        assert prefetched.wait_until(lambda p: p.reader_waiting, WAIT_S), "the reader never waited for room"
        # 1 handed out + 4 waiting in the queue + 1 held by the reader until there is room
        assert asked == list(range(6))
        assert next(prefetched) == 1
        assert prefetched.wait_until(lambda p: p.reader_waiting, WAIT_S)
        assert asked == list(range(7)), "one taken, one more read"


def test_stop_reading_still_delivers_what_was_read() -> None:
    asked: list[int] = []
    with Prefetcher(counted(iter(range(1000)), asked), depth=8) as prefetched:
        assert prefetched.wait_until(lambda p: p.reader_waiting, WAIT_S)
        prefetched.stop_reading()
        received = list(prefetched)
    assert received == asked == list(range(9)), "the 8 queued and the one in hand are delivered, nothing more read"


def test_close_while_the_reader_waits_for_room() -> None:
    prefetched = Prefetcher(iter(range(1000)), depth=2)
    assert next(prefetched) == 0
    assert prefetched.wait_until(lambda p: p.reader_waiting, WAIT_S)
    prefetched.close()
    assert list(prefetched) == []
    assert not prefetched.reading, "the reader thread ended"


def test_drop_oldest_keeps_the_newest_and_counts_the_drops() -> None:
    all_read = threading.Event()

    def numbers():
        yield from range(100)
        all_read.set()  # asked for more after the last one: all 100 are queued or dropped

    with Prefetcher(numbers(), depth=5, policy="drop-oldest") as items:
        assert all_read.wait(WAIT_S)
        received = list(items)
    assert received == [95, 96, 97, 98, 99]
    assert (items.produced, items.dropped) == (100, 95)


def test_max_items_counts_delivered_items_not_drops() -> None:
    asked: list[int] = []
    dropping = threading.Event()

    def numbers():
        for number in counted(itertools.count(), asked):
            if number == 13:
                dropping.set()  # 13 read and none taken: with depth 3, 10 of them dropped already
            yield number

    with Prefetcher(numbers(), depth=3, policy="drop-oldest", max_items=4) as items:
        assert dropping.wait(WAIT_S), "the reader stopped before 4 items would come out"
        received = list(items)
    assert len(received) == 4 and received == sorted(received)
    assert items.produced - items.dropped == 4 and items.dropped >= 10
    assert len(asked) == items.produced, "nothing read that was not queued"


def test_max_items_with_block_reads_nothing_extra() -> None:
    asked: list[int] = []
    with Prefetcher(counted(iter(range(1000)), asked), depth=3, max_items=4) as items:
        assert items.wait_until(lambda p: p.reader_waiting, WAIT_S)  # queue full, the 4th item in hand
        assert list(items) == [0, 1, 2, 3]
    assert (items.produced, items.dropped) == (4, 0)
    assert asked == [0, 1, 2, 3]


def test_should_stop_ends_a_wait_for_a_source_that_sends_nothing() -> None:
    stalled = threading.Event()
    interrupted = threading.Event()

    def items():
        yield 1
        stalled.set()
        interrupted.wait(WAIT_S)  # a network read that never returns, until on_stop interrupts it

    armed = threading.Event()
    polls = itertools.count()

    def should_stop() -> bool:
        # polled by the consumer only: once armed, the first poll is at the start of next(), the
        # second one from inside its wait for an item that does not come — that one says stop
        return armed.is_set() and next(polls) >= 1

    with Prefetcher(items(), depth=2, should_stop=should_stop, on_stop=interrupted.set) as prefetched:
        assert next(prefetched) == 1
        assert stalled.wait(WAIT_S)
        armed.set()
        assert list(prefetched) == []
        assert interrupted.is_set(), "on_stop interrupted the stalled source (before close() would)"


def test_a_source_stuck_past_the_grace_period_is_abandoned() -> None:
    stuck = threading.Event()
    released = threading.Event()

    def items():
        yield 1
        stuck.set()
        released.wait(WAIT_S)  # ignores the stop
        yield 2

    prefetched = Prefetcher(items(), depth=2, stop_grace_s=0.3)
    assert next(prefetched) == 1
    assert stuck.wait(WAIT_S)
    prefetched.stop_reading()
    assert list(prefetched) == [], "item 2 never comes: the consumer stops waiting after the grace period"
    assert prefetched.abandoned
    released.set()
    prefetched.close()
