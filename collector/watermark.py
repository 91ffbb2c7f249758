"""The reorder watermark of ``collector follow``: results arrive in any order, leave in timestamp order. Pure.

Usage::

    mark = Watermark(max_delay_s=2.0, capacity=200)
    mark.know(published=120, now=t)                  # the manifest: frames 0..119 exist
    late = mark.offer(index, timestamp_us, payload, now=t)   # a result was listed; [] or [Late(...)]
    for event in mark.advance(now=t):                # Emitted / Missing, strictly in order
        ...
    mark.done(expected=120)                          # every frame accounted for

Frames are numbered ``0..N-1`` in publishing order (docs/contract.md), and their timestamps rise
with the index, so the next frame due is always ``next_index``. The rules:

- **Emit** the frame at ``next_index`` as soon as it is there: every earlier frame is then emitted
  or reported missing.
- **Give up on a hole** (report it :class:`Missing`) once it has been waited for ``max_delay_s``.
  The wait for index ``k`` starts at the first moment something said ``k`` exists: a result with a
  higher index arrived (the earliest arrival still held), or — when no later result is held — the
  manifest counted ``k`` (``know``) *and* no result at all has arrived since; the later of those two
  moments, so a job whose workers are behind its producer is not called missing while results keep
  coming.
- **Bounded memory**: at most ``capacity`` results are held; one more gives up the hole in front at
  once (``reason="window full"``). With results arriving at the frame rate, each held result leaves
  within ``max_delay_s`` of its arrival, so the window holds about ``max_delay_s × fps`` of them.
- **Never out of order**: a result for an index already passed (reported missing, or a second copy)
  is :class:`Late` and never emitted; so is one whose timestamp is not after the last emitted one.

Nothing here reads a clock or the bucket: ``now`` (monotonic seconds) is always given, which is what
the property tests (tests/collector/test_watermark.py) drive.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

MissingReason = Literal["timed out", "window full"]
LateReason = Literal["after its slot was given up", "duplicate", "timestamp not after the previous frame's"]


@dataclass(frozen=True, slots=True)
class Emitted:
    """The next frame in order, with how long it was held."""

    frame_index: int
    timestamp_us: int
    payload: Any
    arrived_at: float
    emitted_at: float


@dataclass(frozen=True, slots=True)
class Missing:
    """A frame given up on: reported in its place in the order, with no timestamp."""

    frame_index: int
    reason: MissingReason
    waited_s: float


@dataclass(frozen=True, slots=True)
class Late:
    """A result that came after its place in the order had passed: counted and logged, never emitted."""

    frame_index: int
    timestamp_us: int
    reason: LateReason
    arrived_at: float


Event = Emitted | Missing | Late


@dataclass(slots=True)
class _Held:
    timestamp_us: int
    payload: Any
    arrived_at: float


@dataclass
class Watermark:
    """Reorders results by frame index within a bounded delay and a bounded window (see the module doc)."""

    max_delay_s: float
    capacity: int = 1024
    next_index: int = 0
    last_timestamp_us: int | None = None
    held: dict[int, _Held] = field(default_factory=dict)
    emitted: int = 0
    missing: int = 0
    late: int = 0
    _arrivals: deque[tuple[float, int]] = field(default_factory=deque)
    """(arrival time, index) in arrival order; entries below ``next_index`` are dropped from the front lazily."""
    _known: deque[tuple[int, float]] = field(default_factory=deque)
    """(bound, since): from ``since`` on, indices below ``bound`` were known to exist (bounds rise)."""
    _last_arrival_at: float | None = None

    def __post_init__(self) -> None:
        if not self.max_delay_s > 0:
            raise ValueError(f"max_delay_s must be more than 0, got {self.max_delay_s!r}")
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity!r}")

    def know(self, published: int, now: float) -> None:
        """The manifest says frames ``0..published-1`` exist (``frames_published``, or ``frames_confirmed``)."""
        top = self._known[-1][0] if self._known else 0
        if published > max(top, self.next_index):
            self._known.append((published, now))

    def offer(self, frame_index: int, timestamp_us: int, payload: Any, now: float) -> list[Event]:
        """A result arrived: held for :meth:`advance`, or :class:`Late` at once.

        When holding it would exceed ``capacity``, what :meth:`advance` gives at ``now`` is returned too
        (the hole in front given up as ``window full``), so the window never holds more than ``capacity``.
        """
        if frame_index < self.next_index:
            self.late += 1
            return [Late(frame_index, timestamp_us, "after its slot was given up", now)]
        if frame_index in self.held:
            self.late += 1
            return [Late(frame_index, timestamp_us, "duplicate", now)]
        self._last_arrival_at = now
        self.held[frame_index] = _Held(timestamp_us, payload, now)
        self._arrivals.append((now, frame_index))
        if len(self._arrivals) > 2 * self.capacity + 16:  # drop entries of results already gone
            self._arrivals = deque(sorted((h.arrived_at, i) for i, h in self.held.items()))
        return self.advance(now) if len(self.held) > self.capacity else []

    def advance(self, now: float) -> list[Event]:
        """Everything that can leave by ``now``, in order: emitted frames, holes given up, out-of-order results."""
        events: list[Event] = []
        while True:
            head = self.held.pop(self.next_index, None)
            if head is not None:
                if self.last_timestamp_us is not None and head.timestamp_us <= self.last_timestamp_us:
                    self.late += 1
                    events.append(Late(self.next_index, head.timestamp_us, "timestamp not after the previous frame's",
                                       head.arrived_at))
                else:
                    self.emitted += 1
                    self.last_timestamp_us = head.timestamp_us
                    events.append(Emitted(self.next_index, head.timestamp_us, head.payload, head.arrived_at, now))
                self._step()
                continue
            since = self.waiting_since()
            if since is None:
                return events
            full = len(self.held) > self.capacity
            if not full and now - since < self.max_delay_s:
                return events
            self.missing += 1
            events.append(Missing(self.next_index, "window full" if full else "timed out", max(now - since, 0.0)))
            self._step()

    def waiting_since(self) -> float | None:
        """Since when the frame at ``next_index`` (absent) is known to exist; ``None`` if it is not known to."""
        while self._arrivals and self._arrivals[0][1] < self.next_index:
            self._arrivals.popleft()
        if self._arrivals:
            return self._arrivals[0][0]
        while self._known and self._known[0][0] <= self.next_index:
            self._known.popleft()
        if not self._known:
            return None
        since = self._known[0][1]
        return max(since, self._last_arrival_at) if self._last_arrival_at is not None else since

    def _step(self) -> None:
        self.next_index += 1

    def done(self, expected: int) -> bool:
        """Every one of ``expected`` frames has been emitted or given up, and nothing is held."""
        return self.next_index >= expected and not self.held

    def flush(self, now: float) -> list[Event]:
        """At the end: what is still held (indices beyond the expected count, which should not exist), in order."""
        events: list[Event] = []
        while self.held:
            self.next_index = min(self.held)
            events.extend(self.advance(now))
        return events

    @property
    def size(self) -> int:
        """Results held now (the window's memory)."""
        return len(self.held)
