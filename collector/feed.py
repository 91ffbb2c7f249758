"""New results of a running job, listed by time: each ``<kind>/<shard>/`` folder from a moving lower bound.

Usage::

    feed = ResultFeed(store, "demo")          # detections/ and errors/ of jobs/demo/, 16 shards each
    for result in feed.poll(since_us=t):      # NewResult(kind, frame_index, timestamp_us, name, size), new ones
        ...
    feed.requests, feed.objects_listed        # what the polls cost so far

Names sort by time inside each ``<kind>/<shard>/`` folder (framecontract.layout), so a poll asks every
folder only for the names from ``since_us`` on (``startOffset``), at most ``page_size`` of them: 32 list
requests whatever the job's length. ``follow`` passes the timestamp of the last frame it wrote, less
max-delay: workers finish frames out of order, so a folder's newest name is no cursor (a frame finished
later may sort before it); listing from behind the watermark finds those, and a result of a frame
already given up (late). Names already handed on are remembered while they are at or after
``since_us`` (then forgotten), so each result is handed on once; a poll transfers the names of the
reorder window plus what is new, not the job.

Results become visible in time order within a folder but not across folders, so when a folder's page
is full (more may follow) the poll keeps, from every folder, only names up to that page's last name
(:func:`take_up_to_frontier`); the rest is listed again next time. A job followed long after it
started therefore comes in as a run of full polls, in time order, with memory bounded by
``32 × page_size`` names per poll.

Only detections and error records are listed (a frame is processed when its detections exist; the
annotated JPEG's name follows from the frame's). Measured against listing the whole job each poll:
docs/collector.md ("What a poll costs").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from collector.errors import CollectorError
from collector.store import JobStore, checked_job_id
from framecontract.layout import SHARDS, ResultName, frame_stem, job_prefix, parse_result_name

FEED_KINDS = ("detections", "errors")
PAGE_SIZE = 1000
"""Names per folder per poll (one Cloud Storage list page)."""
_FIELDS = "items(name,size),nextPageToken"


@dataclass(frozen=True, slots=True)
class NewResult:
    """A detections object or error record seen for the first time."""

    kind: str
    frame_index: int
    timestamp_us: int
    name: str
    size: int


@dataclass(frozen=True)
class FolderPage:
    """What one folder's listing returned: parsed names in name order, and whether more may follow."""

    results: tuple[NewResult, ...]
    full: bool


def take_up_to_frontier(pages: Mapping[str, FolderPage]) -> list[NewResult]:
    """The results a poll may hand on, in time order. Pure.

    When some folder's page is full, names after the earliest last-name of the full pages (by
    ``(timestamp_us, frame_index)``) are held back — listed again next poll — so results are handed on in
    time order across folders. The full page with that earliest last name is handed on whole, so every
    poll makes progress.
    """
    ends = [(p.results[-1].timestamp_us, p.results[-1].frame_index) for p in pages.values() if p.full and p.results]
    frontier = min(ends) if ends else None
    taken = [r for page in pages.values() for r in page.results
             if frontier is None or (r.timestamp_us, r.frame_index) <= frontier]
    taken.sort(key=lambda r: (r.timestamp_us, r.frame_index, r.kind))
    return taken


@dataclass
class ResultFeed:
    """Polls a job's result folders for names from a lower bound on, handing each name on once."""

    store: JobStore
    job_id: str
    page_size: int = PAGE_SIZE
    kinds: Sequence[str] = FEED_KINDS
    seen: dict[str, int] = field(default_factory=dict)
    """Names handed on, with their timestamps (forgotten once below ``since_us``)."""
    requests: int = 0
    objects_listed: int = 0

    def __post_init__(self) -> None:
        prefix = job_prefix(checked_job_id(self.job_id))
        self.folders = [f"{prefix}{kind}/{shard}/" for kind in self.kinds for shard in SHARDS]
        self._pool = ThreadPoolExecutor(max_workers=max(self.store.download_workers, 1),
                                        thread_name_prefix="collector-feed")

    def poll(self, since_us: int | None = None) -> list[NewResult]:
        """One round over every folder from ``since_us`` on: the results not handed on before, in time order."""
        if since_us is not None:
            self.seen = {name: ts for name, ts in self.seen.items() if ts >= since_us}
        start = None if since_us is None else frame_stem(max(since_us, 0), 0)
        pages = dict(zip(self.folders, self._pool.map(lambda f: self._list_folder(f, start), self.folders),
                         strict=True))
        self.requests += len(self.folders)
        self.objects_listed += sum(len(p.results) for p in pages.values())
        taken = [r for r in take_up_to_frontier(pages) if r.name not in self.seen]
        self.seen.update((r.name, r.timestamp_us) for r in taken)
        return taken

    def _list_folder(self, folder: str, start: str | None) -> FolderPage:
        try:
            blobs = self.store.client.list_blobs(
                self.store.bucket_name, prefix=folder, start_offset=None if start is None else folder + start,
                max_results=self.page_size, fields=_FIELDS,
            )
            listed = [(b.name, int(b.size or 0)) for b in blobs]
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CollectorError(f"cannot list gs://{self.store.bucket_name}/{folder}: {message}") from None
        results = []
        for name, size in listed:
            parsed = parse_result_name(name)
            if parsed is not None and parsed.job_id == self.job_id:
                results.append(_new(parsed, size))
        return FolderPage(tuple(results), len(listed) >= self.page_size)  # a full page: maybe more

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _new(parsed: ResultName, size: int) -> NewResult:
    return NewResult(parsed.kind, parsed.frame_index, parsed.timestamp_us, parsed.name, size)
