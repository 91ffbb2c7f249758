"""What each chunk of a job has published, and the job's progress from it (pure).

Usage::

    states = [ChunkState.planned(chunk) for chunk in chunks]              # all pending
    states[2] = states[2].advanced(confirmed=40, confirmed_timestamp_us=..., published=41, decoded=45)
    contiguous_progress(states)            # Progress(frames_confirmed=..., ...): the run from frame 0
    [s.to_record() for s in states]        # the manifest's ``chunks`` (framecontract.manifest.Manifest)
    ChunkState.from_record(record)         # back, for --resume

One mechanism for both kinds of job: a sequential job's heartbeat records ``frames_confirmed``, the run of
confirmed frames from frame 0 (:class:`~producer.progress.ConfirmedPrefix`); a chunked job keeps such a run
per chunk (``confirmed``: frames ``first_frame_index .. first_frame_index + confirmed - 1`` are all confirmed)
and records every chunk's run in the manifest. The job's own ``frames_confirmed`` stays exact: it is the
contiguous prefix over the chunks in order — every complete chunk from chunk 0 on, plus the run of the first
chunk that is not complete. ``--resume`` continues each chunk from its own run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from producer.chunks import Chunk
from producer.progress import Progress

CHUNK_STATES = ("pending", "running", "complete", "stopped", "failed")
FINISHED = frozenset({"complete", "stopped", "failed"})


@dataclass(frozen=True)
class ChunkState:
    """One chunk's progress: as the manifest records it, plus this run's counters."""

    chunk: int
    first_position: int
    """Presentation position of its first frame: where the job was cut (a resume cuts it there again)."""
    first_frame_index: int
    frames: int
    first_timestamp_us: int | None = None
    """``timestamp_us`` of its first published frame (``None`` if it publishes none)."""
    state: str = "pending"
    confirmed: int = 0
    """Its frames ``first_frame_index .. first_frame_index + confirmed - 1`` are all confirmed by Pub/Sub."""
    confirmed_timestamp_us: int | None = None
    """``timestamp_us`` of its frame ``first_frame_index + confirmed - 1``."""
    published: int = 0
    """Its frames published successfully, in every run (at least ``confirmed``)."""
    last_frame_index: int | None = None
    last_timestamp_us: int | None = None
    """The last frame of its confirmed run (``None`` while the run is empty)."""
    decoded: int = 0
    """Frames of its own this run decoded (warm-up frames not counted)."""
    error: str | None = None
    resumed_from: int | None = None
    """This run continued it at ``first_frame_index + resumed_from`` (``None``: from its start, or not run)."""

    @classmethod
    def planned(cls, chunk: Chunk) -> ChunkState:
        """A chunk nothing of which is published yet (``complete`` at once if it publishes no frame)."""
        first_ts = chunk.kept[0][1] if chunk.kept else None
        return cls(chunk.number, chunk.first_position, chunk.first_frame_index, chunk.frames, first_ts,
                   state="complete" if chunk.frames == 0 else "pending")

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    def advanced(self, **changes: Any) -> ChunkState:
        return dataclasses.replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """What the manifest records for the chunk."""
        return {"chunk": self.chunk, "first_position": self.first_position,
                "first_frame_index": self.first_frame_index, "frames": self.frames,
                "first_timestamp_us": self.first_timestamp_us, "state": self.state, "confirmed": self.confirmed,
                "confirmed_timestamp_us": self.confirmed_timestamp_us, "published": self.published,
                "last_frame_index": self.last_frame_index, "last_timestamp_us": self.last_timestamp_us,
                "error": self.error}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChunkState:
        """A chunk as a manifest recorded it (fields it does not know are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


def contiguous_progress(states: Sequence[ChunkState]) -> Progress:
    """The run of confirmed frames from frame 0 over chunks in order (pure).

    >>> a = ChunkState(0, 0, 0, 3, 0, "complete", 3, 200, 3)
    >>> b = ChunkState(1, 3, 3, 3, 300, "running", 1, 300, 2)
    >>> c = ChunkState(2, 6, 6, 3, 600, "complete", 3, 800, 3)
    >>> contiguous_progress([a, b, c])
    Progress(frames_confirmed=4, first_timestamp_us=0, confirmed_timestamp_us=300)
    """
    ordered = sorted(states, key=lambda s: s.chunk)
    confirmed, last_us = 0, None
    first_us = next((s.first_timestamp_us for s in ordered if s.frames), None)
    for state in ordered:
        if state.first_frame_index != confirmed:
            break
        if state.confirmed:
            confirmed, last_us = confirmed + state.confirmed, state.confirmed_timestamp_us
        if state.confirmed < state.frames:
            break
    return Progress(confirmed, first_us if confirmed else None, last_us)


def job_state(states: Sequence[ChunkState], stop_requested: bool) -> str:
    """``complete`` when every chunk is; else ``failed`` if one failed, else ``stopped`` (pure)."""
    if all(s.complete for s in states):
        return "complete"
    if any(s.state == "failed" for s in states):
        return "failed"
    return "stopped" if stop_requested else "failed"


def last_published(states: Sequence[ChunkState]) -> tuple[int | None, int | None]:
    """``(frame_index, timestamp_us)`` of the highest frame confirmed in any chunk (pure)."""
    best = max((s for s in states if s.last_frame_index is not None), key=lambda s: s.last_frame_index or 0,
               default=None)
    return (best.last_frame_index, best.last_timestamp_us) if best else (None, None)
