"""Pure planning: a job's object listing → per-frame results, timeline order, gaps, duplicates, status.

Usage::

    listing = parse_listing("demo", objects)                 # objects: ListedObject from one listing
    timeline = plan_timeline(listing, expected=manifest.frames_published if manifest.is_final else None)
    status = summarise_status(manifest, listing, now=datetime.now(UTC))   # stale_after_s=... overrides the job's
    format_ranges([0, 1, 2, 5, 7, 8])                         # '0-2, 5, 7-8'

Nothing here does I/O: :mod:`collector.store` produces the :class:`ListedObject` values and
:mod:`collector.reassemble` acts on the :class:`Timeline`.

Rules (see docs/contract.md): a frame is *processed* when its detections object exists; it has
*failed* when it has an error record and no detections; it is *dead-lettered* when it has neither and
Pub/Sub moved its message to the dead-letter topic (:mod:`collector.deadletters`, given to the planner
as ``dead_letters``); every other published index is *missing* (not yet processed, or lost). With a
final manifest the expected indices are exactly ``range(frames_published)``; while the producer is
still running only the indices below the highest one seen can be called missing. A ``running`` job
whose producer has written no heartbeat for its stale threshold
(:meth:`framecontract.manifest.Manifest.stale_after_s`) is *stale*: the producer is gone and the job
will not finish unless it is resumed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from collector.deadletters import DeadLetter
from framecontract.layout import job_prefix, manifest_name, parse_result_name
from framecontract.manifest import Manifest

RECENT_RATE_WINDOW_S = 30.0
"""How far back ``status`` looks for the current processing rate (used for the ETA)."""
UNREADABLE_MANIFEST = "manifest unreadable"
"""The state ``collector jobs`` shows for a job whose manifest exists but is not a valid manifest."""


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object from a bucket listing: all the planner needs to know about it."""

    name: str
    size: int = 0
    updated: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ListedFrame:
    """What exists in the bucket for one (frame_index, timestamp_us)."""

    frame_index: int
    timestamp_us: int
    image: ListedObject | None = None
    detections: ListedObject | None = None
    error: ListedObject | None = None

    @property
    def is_processed(self) -> bool:
        """The contract's definition: the detections object exists."""
        return self.detections is not None

    @property
    def is_failed(self) -> bool:
        """An error record and no detections."""
        return self.error is not None and self.detections is None

    @property
    def is_done(self) -> bool:
        """Processed or failed: nothing more will happen to this frame."""
        return self.is_processed or self.is_failed

    @property
    def finished_at(self) -> dt.datetime | None:
        """When the frame's final object (detections, else error record) was written."""
        final = self.detections or self.error
        return final.updated if final is not None else None

    def object_names(self) -> list[str]:
        """Names of the objects that exist for this frame."""
        return [o.name for o in (self.image, self.detections, self.error) if o is not None]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """One frame index seen under more than one timestamp (cannot happen by design)."""

    frame_index: int
    kept_timestamp_us: int
    other_timestamps_us: tuple[int, ...]
    names: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "frame_index": self.frame_index,
            "kept_timestamp_us": self.kept_timestamp_us,
            "other_timestamps_us": list(self.other_timestamps_us),
            "objects": list(self.names),
        }


@dataclass(frozen=True)
class JobListing:
    """A job's results, one :class:`ListedFrame` per frame index (duplicates set aside)."""

    job_id: str
    frames: dict[int, ListedFrame]
    duplicates: tuple[Duplicate, ...] = ()
    unrecognised: tuple[str, ...] = ()
    """Names under the job's prefix that are neither the manifest nor a result object."""
    payloads: int = 0
    """Claim-checked input objects (inputs, not results; counted only)."""
    has_manifest: bool = False

    @property
    def processed(self) -> list[ListedFrame]:
        return [f for f in self.frames.values() if f.is_processed]

    @property
    def failed(self) -> list[ListedFrame]:
        return [f for f in self.frames.values() if f.is_failed]

    @property
    def in_flight(self) -> list[ListedFrame]:
        """Frames with an annotated image but no detections or error record yet."""
        return [f for f in self.frames.values() if not f.is_done]

    @property
    def highest_index(self) -> int | None:
        return max(self.frames) if self.frames else None


def _preference(result: ListedFrame) -> tuple[int, int]:
    """Which of several results of one index to keep: complete first, then the earliest timestamp."""
    rank = 0 if (result.is_processed and result.image) else 1 if result.is_processed else 2 if result.is_failed else 3
    return rank, result.timestamp_us


def parse_listing(job_id: str, objects: Iterable[ListedObject]) -> JobListing:
    """Group one listing of ``jobs/<job>/`` into per-frame results.

    Result names are parsed with :func:`framecontract.layout.parse_result_name`; names of another
    job, unknown names and stray files end up in ``unrecognised``. An index that appears under
    two timestamps is a duplicate: the most complete result is kept (then the earliest), the rest
    is reported.
    """
    prefix, manifest = job_prefix(job_id), manifest_name(job_id)
    by_key: dict[tuple[int, int], dict[str, ListedObject]] = defaultdict(dict)
    unrecognised: list[str] = []
    payloads = 0
    has_manifest = False
    for obj in objects:
        if obj.name == manifest:
            has_manifest = True
            continue
        parsed = parse_result_name(obj.name)
        if parsed is None or parsed.job_id != job_id or not obj.name.startswith(prefix):
            unrecognised.append(obj.name)
            continue
        if parsed.kind == "payloads":
            payloads += 1
            continue
        by_key[(parsed.frame_index, parsed.timestamp_us)][parsed.kind] = obj

    candidates: dict[int, list[ListedFrame]] = defaultdict(list)
    for (index, timestamp), kinds in by_key.items():
        candidates[index].append(
            ListedFrame(index, timestamp, kinds.get("frames"), kinds.get("detections"), kinds.get("errors"))
        )
    frames: dict[int, ListedFrame] = {}
    duplicates: list[Duplicate] = []
    for index in sorted(candidates):
        ranked = sorted(candidates[index], key=_preference)
        frames[index] = ranked[0]
        if len(ranked) > 1:
            names = tuple(sorted(n for r in ranked for n in r.object_names()))
            duplicates.append(
                Duplicate(index, ranked[0].timestamp_us, tuple(sorted(r.timestamp_us for r in ranked[1:])), names)
            )
    return JobListing(job_id, frames, tuple(duplicates), tuple(sorted(unrecognised)), payloads, has_manifest)


def expected_frame_count(manifest: Manifest | None) -> int | None:
    """``frames_published`` once the manifest is final; ``None`` while the producer may still publish."""
    if manifest is None or not manifest.is_final:
        return None
    return manifest.frames_published


SlotKind = Literal["frame", "error", "missing", "dead-lettered"]


@dataclass(frozen=True, slots=True)
class Slot:
    """One position of the output timeline: a frame to show, an error record, or a hole."""

    frame_index: int
    timestamp_us: int | None
    kind: SlotKind
    result: ListedFrame | None = None
    dead_letter: DeadLetter | None = None
    """For a ``dead-lettered`` slot: the dead letter (its timestamp is the frame's)."""


@dataclass(frozen=True)
class Timeline:
    """The reassembly plan: slots in output order plus everything the report must say."""

    slots: tuple[Slot, ...]
    expected: int | None
    missing: tuple[int, ...]
    errors: tuple[int, ...]
    unexpected: tuple[int, ...] = ()
    """Indices at or beyond ``frames_published`` (should not exist); kept in the video, reported."""
    dead_lettered: tuple[int, ...] = ()
    """Indices with no result whose message Pub/Sub dead-lettered (not in ``missing``)."""
    images_missing: tuple[int, ...] = ()
    """Processed frames whose annotated JPEG is not there (cannot happen: the worker writes it first)."""
    duplicates: tuple[Duplicate, ...] = ()

    @property
    def frame_slots(self) -> int:
        return sum(1 for s in self.slots if s.kind == "frame")


def plan_timeline(listing: JobListing, expected: int | None, holes_in: range | None = None,
                  dead_letters: Mapping[int, DeadLetter] | None = None) -> Timeline:
    """Order a job's frames for output: by (timestamp, index), holes placed by index.

    ``expected`` is the number of published frames (``None`` while unknown: then the holes are the
    indices below the highest one seen). ``holes_in`` narrows where holes are looked for (a listing of
    part of the job: only between the indices it covers). A processed frame becomes a ``frame`` slot, a failed one an
    ``error`` slot, a hole whose message is in ``dead_letters`` (by frame index) a ``dead-lettered`` slot at
    its own timestamp, anything else with an index below ``expected`` a ``missing`` slot. A missing index
    sorts right after the nearest known index below it (its timestamp is unknown), so holes at the
    start, middle and end land where they belong.
    """
    known: dict[int, Slot] = {}
    images_missing: list[int] = []
    for index, result in listing.frames.items():
        if result.is_processed and result.image is not None:
            known[index] = Slot(index, result.timestamp_us, "frame", result)
        elif result.is_failed:
            known[index] = Slot(index, result.timestamp_us, "error", result)
        elif result.is_processed:
            images_missing.append(index)
    highest = listing.highest_index
    upper = expected if expected is not None else (highest + 1 if highest is not None else 0)
    candidates = range(upper) if holes_in is None else range(max(holes_in.start, 0), min(holes_in.stop, upper))
    holes = [i for i in candidates if i not in known]
    dead_letters = dead_letters or {}
    dead = [i for i in holes if i in dead_letters]
    for index in dead:
        letter = dead_letters[index]
        known[index] = Slot(index, letter.timestamp_us, "dead-lettered", dead_letter=letter)
    missing = [i for i in holes if i not in dead_letters]
    unexpected = sorted(i for i in listing.frames if expected is not None and i >= expected)

    keyed = [((s.timestamp_us, s.frame_index, 0), s) for s in known.values()]
    known_sorted = sorted(known)
    for index in missing:
        below = _nearest_below(known_sorted, index)
        anchor_ts = known[below].timestamp_us if below is not None else -1
        keyed.append(((anchor_ts, index, 1), Slot(index, None, "missing")))
    slots = tuple(slot for _, slot in sorted(keyed, key=lambda item: item[0]))
    return Timeline(
        slots=slots,
        expected=expected,
        missing=tuple(missing),
        errors=tuple(sorted(i for i, s in known.items() if s.kind == "error")),
        unexpected=tuple(unexpected),
        dead_lettered=tuple(dead),
        images_missing=tuple(sorted(images_missing)),
        duplicates=listing.duplicates,
    )


def _nearest_below(sorted_indices: Sequence[int], index: int) -> int | None:
    """The largest element of ``sorted_indices`` below ``index`` (binary search)."""
    lo, hi = 0, len(sorted_indices)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_indices[mid] < index:
            lo = mid + 1
        else:
            hi = mid
    return sorted_indices[lo - 1] if lo > 0 else None


def to_ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse integers into inclusive ``(first, last)`` runs: ``[1, 2, 3, 7]`` → ``[(1, 3), (7, 7)]``."""
    runs: list[tuple[int, int]] = []
    for value in sorted(set(indices)):
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def plural(count: int, noun: str) -> str:
    """``'1 error record'``, ``'2 error records'``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_ranges(indices: Iterable[int], max_runs: int | None = 12) -> str:
    """Human form of a set of indices: ``'0-2, 5, 7-8'``; ``'none'`` when empty.

    With more than ``max_runs`` runs the rest is summarised: ``'0, 2, 4 … (+3 more runs, 10 indices in all)'``.
    """
    runs = to_ranges(indices)
    if not runs:
        return "none"
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[: max_runs or len(runs)])
    if max_runs is not None and len(runs) > max_runs:
        total = sum(b - a + 1 for a, b in runs)
        text += f" … (+{len(runs) - max_runs} more runs, {total} indices in all)"
    return text


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, from its manifest and one listing."""

    job_id: str
    state: str
    published: int | None
    """``frames_published`` once the manifest is final, else ``None`` (still publishing)."""
    seen: int
    """Highest frame index seen + 1: a lower bound on what has been published."""
    processed: int
    errors: int
    in_flight: int
    missing: tuple[int, ...]
    duplicates: int
    rate_fps: float | None
    """Average over the span between the first and the last finished frame."""
    recent_rate_fps: float | None
    """Frames finished in the last :data:`RECENT_RATE_WINDOW_S` seconds, per second."""
    eta_s: float | None
    first_finished_at: dt.datetime | None
    last_finished_at: dt.datetime | None
    done: bool
    """The manifest is final and every published frame is processed, failed or dead-lettered."""
    stale: bool = False
    """The manifest says ``running`` but its producer has been silent past ``stale_after_s``."""
    heartbeat_at: str | None = None
    """The producer's last heartbeat (as written in the manifest); ``None`` for older producers."""
    heartbeat_age_s: float | None = None
    stale_after_s: float | None = None
    """The threshold used (the flag, else the job's); ``None`` when the manifest has no heartbeat."""
    confirmed: int = 0
    """Frames ``0..confirmed-1`` confirmed by Pub/Sub at the last heartbeat (the manifest's ``frames_confirmed``)."""
    dead_lettered: tuple[DeadLetter, ...] = ()
    """Frames without a result whose message Pub/Sub dead-lettered (not counted in ``missing``)."""
    dead_letter_subscription: str | None = None
    """Where dead letters were looked for; ``None``: not looked for (none configured, or no holes)."""
    dead_letter_problem: str | None = None
    """Why the dead letters could not be read (then every hole is reported as missing)."""

    @property
    def producer(self) -> str:
        """``finished``, ``stale``, ``running`` or ``none`` (no manifest)."""
        if self.state in ("no manifest", UNREADABLE_MANIFEST):
            return "none"
        if self.stale:
            return "stale"
        return "running" if self.state == "running" else "finished"

    @property
    def at_least(self) -> int:
        """A lower bound on the frames published: the highest index seen + 1, or the confirmed frames."""
        return max(self.seen, self.confirmed)

    def silence_line(self) -> str:
        """``producer stale: no heartbeat for 42 s (last at 2026-11-28T12:00:00.000000Z)``."""
        return f"producer stale: no heartbeat for {self.heartbeat_age_s or 0:.0f} s (last at {self.heartbeat_at})"

    @property
    def remaining(self) -> int | None:
        if self.published is None:
            return None
        return max(self.published - self.processed - self.errors - len(self.dead_lettered), 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "published": self.published,
            "seen": self.seen,
            "processed": self.processed,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "missing": format_ranges(self.missing, max_runs=None) if self.missing else "",
            "missing_count": len(self.missing),
            "dead_lettered": [d.to_dict() for d in self.dead_lettered],
            "dead_lettered_count": len(self.dead_lettered),
            "dead_letter_subscription": self.dead_letter_subscription,
            "dead_letter_problem": self.dead_letter_problem,
            "remaining": self.remaining,
            "duplicates": self.duplicates,
            "rate_fps": self.rate_fps,
            "recent_rate_fps": self.recent_rate_fps,
            "eta_s": self.eta_s,
            "first_finished_at": _iso(self.first_finished_at),
            "last_finished_at": _iso(self.last_finished_at),
            "done": self.done,
            "producer": self.producer,
            "stale": self.stale,
            "heartbeat_at": self.heartbeat_at,
            "heartbeat_age_s": self.heartbeat_age_s,
            "stale_after_s": self.stale_after_s,
            "frames_confirmed": self.confirmed,
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None


def summarise_status(
    manifest: Manifest | None,
    listing: JobListing,
    now: dt.datetime,
    window_s: float = RECENT_RATE_WINDOW_S,
    stale_after_s: float | None = None,
    dead_letters: Mapping[int, DeadLetter] | None = None,
) -> JobStatus:
    """Counts, holes, rate, ETA and producer liveness of a job. Pure: ``now`` is given.

    The rate comes from the ``updated`` times of the detections objects and error records. The ETA
    uses the recent rate (falling back to the average while the job is younger than the window) and
    is ``None`` while the number of published frames is unknown or nothing is finishing. A running
    job is ``stale`` when its heartbeat is older than ``stale_after_s`` (default: the job's own
    threshold, :meth:`~framecontract.manifest.Manifest.stale_after_s`). A hole whose message is in
    ``dead_letters`` is dead-lettered, not missing, and counts as finished.
    """
    expected = expected_frame_count(manifest)
    timeline = plan_timeline(listing, expected, dead_letters=dead_letters)
    dead = tuple(s.dead_letter for s in timeline.slots if s.dead_letter is not None)
    done_frames = [f for f in listing.frames.values() if f.is_done and (expected is None or f.frame_index < expected)]
    processed = sum(1 for f in done_frames if f.is_processed)
    errors = sum(1 for f in done_frames if f.is_failed)
    times = sorted(t for t in (f.finished_at for f in done_frames) if t is not None)
    first, last = (times[0], times[-1]) if times else (None, None)
    rate = None
    if len(times) >= 2 and (span := (times[-1] - times[0]).total_seconds()) > 0:
        rate = (len(times) - 1) / span
    recent = None
    if times:
        age = (now - times[0]).total_seconds()
        window = min(window_s, age) if age > 0 else 0.0
        if window > 0:
            since = now - dt.timedelta(seconds=window)
            recent = sum(1 for t in times if t >= since) / window
    remaining = None if expected is None else max(expected - processed - errors - len(dead), 0)
    eta = None
    if remaining == 0:
        eta = 0.0
    elif remaining is not None and recent:
        eta = remaining / recent
    state = manifest.state if manifest is not None else "no manifest"
    highest = listing.highest_index
    return JobStatus(
        job_id=listing.job_id,
        state=state,
        published=expected,
        seen=(highest + 1) if highest is not None else 0,
        processed=processed,
        errors=errors,
        in_flight=len(listing.in_flight),
        missing=timeline.missing,
        duplicates=len(listing.duplicates),
        rate_fps=rate,
        recent_rate_fps=recent,
        eta_s=eta,
        first_finished_at=first,
        last_finished_at=last,
        done=expected is not None and remaining == 0,
        stale=manifest is not None and manifest.producer_silence_s(now, stale_after_s) is not None,
        heartbeat_at=manifest.heartbeat_at if manifest is not None else None,
        heartbeat_age_s=manifest.heartbeat_age_s(now) if manifest is not None else None,
        stale_after_s=manifest.stale_after_s(stale_after_s) if manifest is not None else None,
        confirmed=manifest.frames_confirmed if manifest is not None and not manifest.is_final else 0,
        dead_lettered=tuple(sorted(dead, key=lambda d: d.frame_index)),
    )


def format_status(status: JobStatus) -> str:
    """The human form of :class:`JobStatus` (what ``collector status`` prints)."""
    if status.published is not None:
        published = str(status.published)
    elif status.stale:
        published = f"unknown (producer stale; at least {status.at_least})"
    else:
        published = f"unknown (producer still running; at least {status.at_least})"
    total = status.published or status.seen
    pct = f" ({100.0 * status.processed / total:.1f}%)" if total else ""
    missing_label = "missing" if status.published is not None else "not yet done"
    lines = [f"job        {status.job_id}", f"state      {status.state}"]
    if status.state == "running" and status.heartbeat_at is not None:
        confirmed = f"; {plural(status.confirmed, 'frame')} confirmed by Pub/Sub"
        if status.stale:
            lines.append(f"producer   stale: no heartbeat for {status.heartbeat_age_s or 0:.0f} s "
                         f"(last at {status.heartbeat_at}){confirmed}")
        else:
            lines.append(f"producer   heartbeat {status.heartbeat_age_s or 0:.0f} s ago{confirmed}")
    lines += [
        f"published  {published}",
        f"processed  {status.processed}{pct}",
        f"errors     {status.errors}",
        f"in flight  {status.in_flight}",
        f"{missing_label:<10} {len(status.missing)}" + (f": {format_ranges(status.missing)}" if status.missing else ""),
    ]
    if status.dead_lettered:
        indices = [d.frame_index for d in status.dead_lettered]
        attempts = sorted({d.delivery_attempts for d in status.dead_lettered if d.delivery_attempts})
        after = f"after {'/'.join(map(str, attempts))} delivery attempts; " if attempts else ""
        lines.append(f"dead-lettered {len(indices)}: {format_ranges(indices)} (Pub/Sub gave up on them {after}"
                     f"kept in {status.dead_letter_subscription}; they are not retried unless published again)")
    if status.dead_letter_problem:
        lines.append(f"dead letters not read: {status.dead_letter_problem}")
    if status.duplicates:
        lines.append(f"duplicates {status.duplicates} (cannot happen by design; see `collector reassemble` report)")
    if status.rate_fps is not None or status.recent_rate_fps is not None:
        avg = f"{status.rate_fps:.2f} frames/s" if status.rate_fps is not None else "n/a"
        recent = f"{status.recent_rate_fps:.2f} frames/s" if status.recent_rate_fps is not None else "n/a"
        lines.append(f"rate       {avg} average, {recent} recently")
    else:
        lines.append("rate       n/a (fewer than two finished frames)")
    if status.done:
        lines.append("eta        done")
    elif status.stale:
        lines.append("eta        none: the producer is gone (a file or image-folder job continues with "
                     f"'python -m producer SOURCE --resume {status.job_id}')")
    elif status.eta_s is not None:
        lines.append(f"eta        {status.eta_s:.0f} s")
    elif status.published is None:
        lines.append("eta        unknown until the producer finishes")
    else:
        lines.append("eta        unknown (nothing finished recently)")
    return "\n".join(lines)


DEFAULT_FPS = 10.0


def output_fps(manifest: Manifest | None, timeline: Timeline) -> tuple[float, str]:
    """The frame rate of the reassembled video and where it came from.

    The published frames' rate: ``sample_fps`` when the producer sampled, else ``source_fps``; for
    sources without a rate (image folders, some streams) the median gap between the timestamps of
    consecutive indices; else :data:`DEFAULT_FPS`.
    """
    if manifest is not None:
        if manifest.sample_fps and manifest.sample_fps > 0:
            return float(manifest.sample_fps), "manifest sample_fps"
        if manifest.source_fps and manifest.source_fps > 0:
            return float(manifest.source_fps), "manifest source_fps"
    stamps = {s.frame_index: s.timestamp_us for s in timeline.slots if s.timestamp_us is not None}
    gaps = sorted(stamps[i + 1] - stamps[i] for i in stamps if i + 1 in stamps and stamps[i + 1] > stamps[i])
    if gaps:
        return 1_000_000 / gaps[len(gaps) // 2], "median timestamp gap"
    return DEFAULT_FPS, "default"
