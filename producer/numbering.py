"""``frame_index``: the one place published frames are numbered (pure).

Usage::

    with Prefetcher(encoded_frames, depth=8, policy="drop-oldest") as ready:   # (timestamp_us, jpeg)
        for frame in number_published(ready):
            publish(frame.frame_index, frame.timestamp_us, frame.content)

The contract's main invariant (docs/contract.md) lives here and nowhere else: the frames that are
published get ``frame_index`` 0, 1, 2, ... N-1 in publish order, contiguous, each with the timestamp
it was decoded with. A frame gets its index only when it is taken to be published, after everything
that may leave it out has decided: ``--fps`` sampling, ``--duration``/``--max-frames``, and
``latest-frame`` backpressure dropping the oldest frames waiting. So a frame that is left out never
consumes an index, and the collector's expected set is exactly ``range(frames_published)``. Every
source (files, image folders, live streams, webcams) is published through this function.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PublishedFrame(Generic[T]):
    """A frame about to be published: its ``frame_index``, its timestamp and its content (the JPEG)."""

    frame_index: int
    timestamp_us: int
    content: T


def number_published(frames: Iterable[tuple[int, T]], start: int = 0) -> Iterator[PublishedFrame[T]]:
    """Number ``(timestamp_us, content)`` pairs in the order they are published: 0, 1, 2, ...

    ``start`` > 0 only for a resumed job, whose frames before ``start`` were published by the run it
    continues (:mod:`producer.resume` replays the same decode and sampling and leaves them out).

    >>> [(f.frame_index, f.timestamp_us) for f in number_published([(0, "a"), (400_000, "b")])]
    [(0, 0), (1, 400000)]
    """
    for frame_index, (timestamp_us, content) in enumerate(frames, start):
        yield PublishedFrame(frame_index, timestamp_us, content)
