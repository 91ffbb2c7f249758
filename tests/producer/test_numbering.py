"""frame_index is given in one place (:func:`producer.numbering.number_published`): the frames that are
published are numbered 0..N-1 in publish order, whatever ``--fps`` sampling and ``latest-frame``
(drop-oldest) backpressure decided. Property tests over arbitrary timestamps, rates and drops."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.numbering import PublishedFrame, number_published
from producer.prefetch import Prefetcher
from producer.sampling import TimestampSampler, sampled
from tests.producer.helpers import WAIT_S

timestamps_us = st.builds(
    lambda start, steps: list(itertools.accumulate(steps, initial=start)),
    st.integers(0, 2 * 10**15),  # stream clocks start near 0, wall clocks near 1.8e15 µs
    st.lists(st.integers(1, 400_000), max_size=60),  # strictly increasing, any spacing up to 0.4 s
)
sample_rates = st.one_of(st.none(), st.floats(0.2, 240.0, allow_nan=False, allow_infinity=False))


def kept_by_sampling(stamps: Sequence[int], fps: float | None) -> list[int]:
    """The timestamps ``--fps`` sampling keeps, as the job decides it."""
    return list(sampled(stamps, TimestampSampler(fps), timestamp_of=lambda ts: ts))


def jpeg_of(timestamp_us: int) -> str:
    """Stands for the encoded frame taken at ``timestamp_us`` (tells frames apart)."""
    return f"jpeg@{timestamp_us}"


def assert_numbered(published: Sequence[PublishedFrame[str]], expected_timestamps: Sequence[int]) -> None:
    """Indices 0..N-1 in publish order; each frame keeps its own timestamp and content."""
    assert [frame.frame_index for frame in published] == list(range(len(published)))
    assert [frame.timestamp_us for frame in published] == list(expected_timestamps)
    assert all(frame.content == jpeg_of(frame.timestamp_us) for frame in published)


@given(stamps=timestamps_us, fps=sample_rates, data=st.data())
def test_published_frames_are_numbered_0_to_n_minus_1_whatever_was_skipped_or_dropped(
    stamps: list[int], fps: float | None, data: st.DataObject
) -> None:
    kept = kept_by_sampling(stamps, fps)
    dropped = data.draw(st.lists(st.booleans(), min_size=len(kept), max_size=len(kept)), label="dropped")
    survivors = [ts for ts, gone in zip(kept, dropped, strict=True) if not gone]

    published = list(number_published((ts, jpeg_of(ts)) for ts in survivors))

    assert_numbered(published, survivors)
    assert len(published) == len(kept) - sum(dropped), "a dropped frame never consumes an index"


def drop_oldest_spec(kept: Sequence[int], depth: int, wanted: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """What a drop-oldest queue of ``depth`` must deliver when, after reading frame i, the publisher takes
    up to ``wanted[i]`` frames: ``(delivered, dropped, taken)`` — the policy as documented, step by step."""
    queue: deque[int] = deque()
    delivered: list[int] = []
    dropped: list[int] = []
    taken: list[int] = []
    for timestamp, want in zip(kept, wanted, strict=True):
        if len(queue) == depth:
            dropped.append(queue.popleft())  # the oldest waiting frame makes room; the newest is kept
        queue.append(timestamp)
        take = min(want, len(queue))
        delivered += [queue.popleft() for _ in range(take)]
        taken.append(take)
    return delivered + list(queue), dropped, taken


class SteppedSource(Iterator[tuple[int, str]]):
    """Frames the test hands to the prefetcher's reader one at a time.

    :meth:`read_one` lets the reader take one frame and returns once that frame is in the queue (the
    reader asks for the next frame only after queueing the previous one); :meth:`end` ends the source.
    So the test, not the scheduler, decides how reading and publishing interleave.
    """

    def __init__(self, frames: Iterable[tuple[int, str]]) -> None:
        self._frames = iter(frames)
        self._may_read = threading.Semaphore(0)
        self._queued = threading.Semaphore(0)
        self._asked = False

    def __next__(self) -> tuple[int, str]:
        if self._asked:
            self._queued.release()  # asked again: the previous frame is queued
        self._asked = True
        self._may_read.acquire()
        return next(self._frames)

    def read_one(self) -> None:
        self._may_read.release()
        assert self._queued.acquire(timeout=WAIT_S), "the reader did not queue the frame"

    def end(self) -> None:
        self._may_read.release()


@settings(deadline=None, max_examples=60)
@given(stamps=timestamps_us, fps=sample_rates, depth=st.integers(1, 8), data=st.data())
def test_drop_oldest_backpressure_never_costs_an_index(
    stamps: list[int], fps: float | None, depth: int, data: st.DataObject
) -> None:
    """The job's own pieces in the job's order: sampling → read-ahead queue (drop-oldest) → numbering."""
    kept = kept_by_sampling(stamps, fps)
    wanted = data.draw(st.lists(st.integers(0, depth), min_size=len(kept), max_size=len(kept)),
                       label="frames published after each read")
    delivered, dropped, taken = drop_oldest_spec(kept, depth, wanted)

    source = SteppedSource((ts, jpeg_of(ts)) for ts in kept)
    published: list[PublishedFrame[str]] = []
    with Prefetcher(source, depth=depth, policy="drop-oldest") as queue:
        numbered = number_published(queue)
        for take in taken:
            source.read_one()
            published += itertools.islice(numbered, take)  # never more than are waiting: no wait here
        source.end()
        published += numbered

    assert_numbered(published, delivered)
    assert queue.dropped == len(dropped) == len(kept) - len(published)
    assert not set(dropped) & {frame.timestamp_us for frame in published}
    if kept:
        assert published[-1].timestamp_us == kept[-1], "the newest frame is never the one dropped"
