"""Cutting a file into keyframe-aligned chunks that publish exactly what the sequential producer publishes (pure).

Usage::

    table = demux(ranges)                                         # producer.demux: packets, no decoding
    frames = plan_frames(table, nominal_fps=10.0, options=options)    # every frame's timestamp, kept or not,
                                                                  # and the frame_index of each kept one
    chunks = cut_chunks(table, frames, target=8)                  # keyframe-aligned, balanced by frames
    chunks[3].first_frame_index, chunks[3].frames                 # known before anything is decoded
    chunks[3].decode_from, chunks[3].decode_to                    # the packets its decoder is fed

Why the result is the sequential producer's, frame for frame:

- **Timestamps.** The sequential producer turns OpenCV's reported time of each frame into ``timestamp_us``
  with :class:`~producer.timestamps.TimestampTracker`, in presentation order. :func:`plan_frames` runs the
  same tracker over the times :meth:`~producer.demux.PacketTable.reported_ms` computes from the packets, so
  every frame gets the same timestamp (the fallback for broken timestamps included).
- **Sampling, bounds, numbering.** ``--fps`` sampling depends on every kept frame before; ``--duration``
  and ``--max-frames`` on the first frame and the count. :func:`plan_frames` runs the producer's own
  :class:`~producer.sampling.TimestampSampler`, bound and :func:`~producer.numbering.number_published` over
  the whole sequence at once, so each chunk knows its ``frame_index`` range before decoding.
- **Pixels.** A chunk owns the frames shown from its keyframe up to the next chunk's keyframe. Its decoder
  starts at the last keyframe decoded before any of them, or one keyframe earlier when that keyframe is not
  a clean start (an open GOP: frames decoded after it but shown before it, or an H.264/HEVC keyframe that
  is not IDR) — the frames before its own are decoded and discarded. It is fed up to the last packet of its
  own frames, so the next keyframe's leading B-frames (shown before it) are decoded with their references.
  Chunk 0 decodes from the first packet, as the sequential producer does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.demux import Packet, PacketTable
from producer.numbering import number_published
from producer.options import JobOptions
from producer.sampling import TimestampSampler
from producer.timestamps import TimestampTracker

CHUNKS_PER_PROCESS = 4
"""A local job is cut into about this many chunks per process: a slow chunk leaves the others work."""
MIN_CHUNK_FRAMES = 25
"""No chunk shorter than this (the warm-up of an open GOP and a decoder's start are per chunk)."""


@dataclass(frozen=True, slots=True)
class PlannedFrame:
    """One frame of the file as the sequential producer would see it."""

    position: int
    """Presentation order among all frames (0, 1, 2, ...): the sequential decoder's position."""
    packet: int
    """Decode-order index of its packet."""
    pts: int
    timestamp_us: int
    frame_index: int | None
    """Its ``frame_index`` if it is published; ``None`` if sampling left it out."""


@dataclass(frozen=True)
class FramePlan:
    """Every frame up to where the sequential producer would stop reading, and which are published."""

    frames: tuple[PlannedFrame, ...]
    published: int
    bound: str | None = None
    """Why reading ends before the end of the file (``--duration``, ``--max-frames``), or ``None``."""


@dataclass(frozen=True)
class Chunk:
    """A keyframe-aligned run of frames, decoded by one decoder, with everything it needs to publish them."""

    number: int
    first_position: int
    end_position: int
    """The frames it owns: positions ``first_position .. end_position - 1``."""
    decode_from: int
    decode_to: int
    """The packets fed to its decoder (decode-order indices, inclusive)."""
    first_frame_index: int
    frames: int
    """Published frames: ``frame_index`` ``first_frame_index .. first_frame_index + frames - 1``."""
    owned_pts: tuple[int, ...]
    """The pts of the frames it owns, in presentation order: what its decoder must output (checked)."""
    kept: tuple[tuple[int, int, int], ...]
    """``(pts, timestamp_us, frame_index)`` of its published frames, in order."""
    packets: tuple[Packet, ...] = field(repr=False)
    """Packets ``decode_from .. decode_to``."""

    @property
    def byte_range(self) -> tuple[int, int]:
        """The bytes of the file its packets lie in: ``[start, end)``."""
        return min(p.pos for p in self.packets), max(p.pos + p.size for p in self.packets)

    @property
    def warm_up_frames(self) -> int:
        """Packets decoded only to prime the decoder (before its keyframe) or for the next chunk's."""
        return len(self.packets) - len(self.owned_pts)

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "first_position": self.first_position, "end_position": self.end_position,
                "decode_from": self.decode_from, "decode_to": self.decode_to,
                "first_frame_index": self.first_frame_index, "frames": self.frames,
                "owned_pts": list(self.owned_pts), "kept": [list(k) for k in self.kept],
                "packets": [list(p) for p in self.packets]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Chunk:
        return cls(int(data["number"]), int(data["first_position"]), int(data["end_position"]),
                   int(data["decode_from"]), int(data["decode_to"]), int(data["first_frame_index"]),
                   int(data["frames"]), tuple(data["owned_pts"]), tuple(tuple(k) for k in data["kept"]),
                   tuple(Packet(*p) for p in data["packets"]))


def plan_frames(table: PacketTable, nominal_fps: float | None, options: JobOptions) -> FramePlan:
    """Timestamps, ``--fps`` sampling, ``--duration``/``--max-frames`` and ``frame_index`` of every frame, as the
    sequential producer decides them (:meth:`producer.job._PublishRun._kept_frames`), from the packets alone."""
    order = table.presentation_order()
    tracker = TimestampTracker(nominal_fps, table.source)
    sampler = TimestampSampler(options.fps)
    duration_us = None if options.duration is None else round(options.duration * 1e6)
    frames: list[tuple[int, int, int, int]] = []  # position, packet, pts, timestamp_us
    kept: list[tuple[int, int]] = []  # (timestamp_us, position) of published frames
    first_us: int | None = None
    bound = None
    for position, packet in enumerate(order):
        timestamp_us = tracker.timestamp_us(position, table.reported_ms(packet))
        first_us = timestamp_us if first_us is None else first_us
        if options.max_frames is not None and len(kept) >= options.max_frames:
            bound = f"--max-frames {options.max_frames} reached"
            break
        if sampler.accept(timestamp_us):
            if duration_us is not None and timestamp_us - first_us >= duration_us:
                bound = f"--duration {options.duration:g} s reached"
                break
            kept.append((timestamp_us, position))
        frames.append((position, packet, table.packets[packet].pts or 0, timestamp_us))
    index_of = {frame.content: frame.frame_index for frame in number_published(kept)}  # the one numbering
    if kept:  # reading stops once the last published frame is read
        frames = frames[: kept[-1][1] + 1]
    return FramePlan(tuple(PlannedFrame(pos, packet, pts, ts, index_of.get(pos)) for pos, packet, pts, ts in frames),
                     len(kept), bound)


def open_gop_keyframes(table: PacketTable) -> frozenset[int]:
    """Keyframes (decode-order indices) a decoder cannot start at cleanly: not IDR, or some later packet is shown
    before them (leading frames that reference the previous GOP) (pure)."""
    packets = table.packets
    suffix_min = math.inf
    leading: set[int] = set()
    for index in range(len(packets) - 1, -1, -1):
        packet = packets[index]
        if packet.key and (not packet.clean or suffix_min < (packet.pts or 0)):
            leading.add(index)
        suffix_min = min(suffix_min, packet.pts or 0)
    return frozenset(leading)


def boundaries_for(frames: Sequence[PlannedFrame], key_positions: Sequence[int], target: int,
                   min_frames: int = MIN_CHUNK_FRAMES) -> list[int]:
    """Where chunks start (presentation positions, the first is 0): at keyframes, about ``len(frames) / target``
    frames apart, none shorter than ``min_frames`` (pure).

    >>> boundaries_for(range(100), [0, 20, 40, 60, 80], target=2, min_frames=10)
    [0, 40]
    >>> boundaries_for(range(795), [0, 250, 500, 750], target=4)
    [0, 250, 500, 750]
    """
    total = len(frames)
    if total == 0:
        return [0]
    candidates = sorted(p for p in set(key_positions) if min_frames <= p <= total - min_frames)
    starts = [0]
    for i in range(1, max(1, target)):
        ideal = total * i / target
        later = [p for p in candidates if p - starts[-1] >= min_frames]
        best = min(later, key=lambda p: (abs(p - ideal), p), default=None)
        if best is not None:
            starts.append(best)
    return starts


def cut_chunks(table: PacketTable, plan: FramePlan, target: int | None = None,
               starts: Sequence[int] | None = None) -> list[Chunk]:
    """The chunks of ``plan``: starting at ``starts`` (positions; e.g. a job's recorded chunks when resuming),
    else about ``target`` keyframe-aligned ones. Chunks after the last frame read are left out."""
    frames = plan.frames
    if starts is None:
        position_of = {packet: n for n, packet in enumerate(table.presentation_order())}
        key_positions = [position_of[k] for k in table.keyframes]
        starts = boundaries_for(frames, key_positions, target or 1)
    starts = [s for s in starts if s < len(frames)] or [0]
    ends = [*starts[1:], len(frames)]
    keyframes = table.keyframes
    unclean = open_gop_keyframes(table)
    chunks = []
    next_index = 0
    for number, (first, end) in enumerate(zip(starts, ends, strict=True)):
        owned = frames[first:end]
        earliest = min(f.packet for f in owned)
        decode_from = 0 if first == 0 else max((k for k in keyframes if k <= earliest), default=0)
        if decode_from in unclean and decode_from > 0:  # an open GOP: prime the decoder from the keyframe before
            decode_from = max((k for k in keyframes if k < decode_from), default=0)
        decode_to = max(f.packet for f in owned)
        kept = tuple((f.pts, f.timestamp_us, f.frame_index) for f in owned if f.frame_index is not None)
        if kept and kept[0][2] != next_index:
            raise AssertionError(f"chunk {number} starts at frame {kept[0][2]}, expected {next_index}")
        chunks.append(Chunk(number, first, end, decode_from, decode_to, next_index, len(kept),
                            tuple(f.pts for f in owned), kept, table.packets[decode_from:decode_to + 1]))
        next_index += len(kept)
    return chunks
