"""Status, waiting and the job list: the imperative side of ``collector status|wait|jobs``.

Usage::

    status = job_status(store, "demo", stale_after_s=60)        # manifest + one listing
    status, outcome = wait_for_job(store, "demo", timeout_s=600, poll_s=2)   # "done", "timed out" or "stale"
    rows = list_jobs(store)                                      # one listing of jobs/
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Literal

from tqdm import tqdm

from collector.deadletters import DeadLetterError, DeadLetterReader
from collector.plan import UNREADABLE_MANIFEST, JobStatus, parse_listing, summarise_status
from collector.store import JobStore, UnreadableManifestError, checked_job_id

WaitOutcome = Literal["done", "timed out", "stale"]


def job_status(store: JobStore, job_id: str, now: dt.datetime | None = None,
               stale_after_s: float | None = None, dead_letters: DeadLetterReader | None = None,
               dead_letters_when_final: bool = False) -> JobStatus:
    """The status of one job; CollectorError for a bad id or unknown job.

    With ``dead_letters``, a job with holes has its dead letters read (without consuming them) and
    its holes split into dead-lettered and missing; ``dead_letters_when_final``: only once the
    manifest is final (``wait`` polls: while the producer runs, holes are mostly frames in flight).
    A dead-letter subscription that cannot be read is reported in ``dead_letter_problem``.
    """
    job_id = checked_job_id(job_id)
    manifest = store.require_manifest(job_id)
    listing = parse_listing(job_id, store.list_job(job_id))
    now = now or dt.datetime.now(dt.UTC)
    status = summarise_status(manifest, listing, now, stale_after_s=stale_after_s)
    if dead_letters is None or not status.missing or (dead_letters_when_final and status.published is None):
        return status
    try:
        letters = dead_letters.for_job(job_id)
    except DeadLetterError as exc:
        return dataclasses.replace(status, dead_letter_subscription=dead_letters.subscription_path,
                                   dead_letter_problem=str(exc))
    status = summarise_status(manifest, listing, now, stale_after_s=stale_after_s, dead_letters=letters)
    return dataclasses.replace(status, dead_letter_subscription=dead_letters.subscription_path)


def wait_for_job(
    store: JobStore,
    job_id: str,
    timeout_s: float | None = None,
    poll_s: float = 2.0,
    progress: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    stale_after_s: float | None = None,
    dead_letters: DeadLetterReader | None = None,
) -> tuple[JobStatus, WaitOutcome]:
    """Poll until the job is done (manifest final, every published frame processed, failed or dead-lettered).

    Returns ``(last status, outcome)``: ``done``; ``timed out`` when ``timeout_s`` ran out; ``stale`` as
    soon as the manifest says ``running`` but its producer has written no heartbeat for
    ``stale_after_s`` (default: the job's threshold) — it will not finish by itself. The progress bar
    (stderr) counts finished frames against the published total, or against the highest index seen
    while the producer is still running.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    bar = tqdm(
        total=0,
        unit="frame",
        desc=f"wait {job_id}",
        file=sys.stderr,
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
    )
    try:
        while True:
            status = job_status(store, job_id, stale_after_s=stale_after_s, dead_letters=dead_letters,
                                dead_letters_when_final=True)
            bar.total = status.published if status.published is not None else status.seen
            bar.n = status.processed + status.errors + len(status.dead_lettered)
            bar.set_postfix_str(f"{status.state}, {status.errors} errors", refresh=False)
            bar.refresh()
            if status.done:
                return status, "done"
            if status.stale:
                return status, "stale"
            if deadline is not None and time.monotonic() >= deadline:
                return status, "timed out"
            pause = poll_s if deadline is None else max(min(poll_s, deadline - time.monotonic()), 0.0)
            sleep(pause)
    finally:
        bar.close()


def list_jobs(store: JobStore, now: dt.datetime | None = None, stale_after_s: float | None = None) -> list[JobStatus]:
    """Every job in the bucket with its status, from one listing of ``jobs/`` plus one manifest each.

    A job whose manifest is unreadable is listed with the state ``manifest unreadable``; the others go on.
    """
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for job_id, objects in sorted(store.list_all_jobs().items()):
        listing = parse_listing(job_id, objects)
        try:
            manifest = store.read_manifest(job_id) if listing.has_manifest else None
        except UnreadableManifestError:
            rows.append(dataclasses.replace(summarise_status(None, listing, now), state=UNREADABLE_MANIFEST))
            continue
        rows.append(summarise_status(manifest, listing, now, stale_after_s=stale_after_s))
    return rows
