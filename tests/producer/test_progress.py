"""What Pub/Sub has confirmed (the run a resume continues from) and the heartbeat thread, without I/O."""

from __future__ import annotations

import logging
import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.progress import ConfirmedPrefix, Heartbeat, Progress
from tests.producer.helpers import WAIT_S


@given(order=st.permutations(range(40)), failed=st.sets(st.integers(0, 39), max_size=3))
def test_the_confirmed_run_ends_at_the_first_frame_not_confirmed(order: list[int], failed: set[int]) -> None:
    confirmed = ConfirmedPrefix()
    for index in range(40):
        confirmed.sent(index, index * 100)
    settled: set[int] = set()
    for index in order:  # futures resolve in any order
        confirmed.settled(index, ok=index not in failed)
        settled.add(index)
        run = confirmed.snapshot().frames_confirmed
        assert all(i in settled and i not in failed for i in range(run)), "a frame not confirmed was counted"
        assert run == 40 or run in failed or run not in settled, "the run stopped before a frame not confirmed"
    expected = min(failed, default=40)
    last = (expected - 1) * 100 if expected else None
    assert confirmed.snapshot() == Progress(expected, 0 if expected else None, last)


def test_a_resumed_job_counts_on_from_where_it_started() -> None:
    confirmed = ConfirmedPrefix(next_index=412, first_timestamp_us=0, confirmed_timestamp_us=41_100_000)
    assert confirmed.snapshot() == Progress(412, 0, 41_100_000)
    confirmed.sent(412, 41_200_000)
    confirmed.sent(413, 41_300_000)
    confirmed.settled(413, ok=True)
    assert confirmed.snapshot() == Progress(412, 0, 41_100_000)
    confirmed.settled(412, ok=True)
    assert confirmed.snapshot() == Progress(414, 0, 41_300_000)


def test_nothing_confirmed_yet() -> None:
    confirmed = ConfirmedPrefix()
    confirmed.sent(0, 5)
    assert confirmed.snapshot() == Progress(0, None, None)
    confirmed.settled(0, ok=False)
    confirmed.sent(1, 10)
    confirmed.settled(1, ok=True)
    assert confirmed.snapshot() == Progress(0, None, None)


def test_callbacks_from_many_threads() -> None:
    confirmed = ConfirmedPrefix()
    for index in range(2000):
        confirmed.sent(index, index)
    order = list(range(2000))
    random.Random(5).shuffle(order)
    threads = [threading.Thread(target=lambda part=order[k::4]: [confirmed.settled(i, True) for i in part])
               for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert confirmed.snapshot() == Progress(2000, 0, 1999)


def test_the_heartbeat_beats_until_stopped_and_survives_a_failing_beat(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    enough = threading.Event()

    def beat() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise OSError("storage down")
        if len(calls) >= 4:
            enough.set()

    with caplog.at_level(logging.WARNING, logger="producer.progress"), Heartbeat(0.01, beat) as heartbeat:
        assert enough.wait(WAIT_S)
    after_stop = len(calls)
    assert heartbeat.beats == after_stop - 1  # the failed one is not counted
    assert "heartbeat not written (OSError: storage down); retrying every 0.01 s" in caplog.text
    assert "heartbeat written again" in caplog.text
    assert not heartbeat._thread.is_alive() and len(calls) == after_stop  # stopped: no beat after stop()


def test_stop_waits_for_the_beat_in_progress() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_beat() -> None:
        started.set()
        release.wait(WAIT_S)
        finished.set()

    heartbeat = Heartbeat(0.01, slow_beat).start()
    assert started.wait(WAIT_S)
    stopper = threading.Thread(target=heartbeat.stop)
    stopper.start()
    assert not finished.is_set()
    release.set()
    stopper.join(WAIT_S)
    assert finished.is_set() and not stopper.is_alive()


def test_a_heartbeat_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        Heartbeat(0, lambda: None)
