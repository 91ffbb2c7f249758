"""A run's results in one shape, whether from Locust's CSV files or from the pipeline load test.

Usage::

    data = load_run(Path("runs/local-study-short-20261128T120000Z"))   # reads run.json + CSVs
    data.totals.ok_per_s, data.totals.failures_by_kind, data.totals.ok_p95_ms   # goodput first
    data.totals.refusals_by_kind                  # {"429": 40}: refusals a retry-after client honoured
    data.series[0].ok_per_s, data.series[0].by_kind   # per second: good answers/s, {"429": 812.0, ...}

    series, totals = locust_results(history_rows, stats_rows, failure_rows)   # pure, from csv rows
    series, totals = pipeline_results(frames, rate_fps)                       # pure, from FrameLatency

**Goodput** (``ok_per_s``) is good answers per second: 200s with a valid body (the locustfile names
them ``/predict``; anything else gets another name). Failures are counted **by kind**: the status
code (``429``, ``503``), ``200 bad body``, and for requests with no answer ``timeout``, ``conn
closed``, ``conn reset``, ``conn refused``, ``conn error`` (:func:`loadtest.checks.failure_kind`).
A 429/503 that a ``retry-after`` client honoured (``/predict [refused 429]``) is a *refusal*, kept
apart from the failures. Latency is reported for the good answers (``ok_p50_ms`` ...) and, as
before, over all answers (``p50_ms`` ...).

Locust's files (``--csv PREFIX --csv-full-history``): ``PREFIX_stats_history.csv`` (one row per
second per request name + ``Aggregated``; with full history the percentiles are over the last 10 s),
``PREFIX_stats.csv`` (totals per request name) and ``PREFIX_failures.csv`` (failures by message; the
locustfile starts every message with ``HTTP <status>``).
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framecontract.endpoints import PREDICT_PATH
from loadtest.checks import BAD_BODY, failure_kind
from loadtest.profiles import REFUSED_PREFIX

CSV_PREFIX = "locust"
AGGREGATED = "Aggregated"
WINDOW_S = 10
"""Percentiles over time are over the last 10 s, as Locust's own (CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW)."""


@dataclass(frozen=True)
class Point:
    """One second of a run: users (or offered frames/s), rates, and response-time percentiles (ms).

    ``ok_per_s`` / ``ok_p50_ms`` / ``ok_p95_ms`` are about the good answers; ``by_kind`` is the rate
    of every other kind of answer (``{"429": 812.0, "conn closed": 3.0, "refused 429": 40.0}``).
    """

    t_s: int
    users: float
    rps: float
    failures_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    ok_p95_ms: float | None = None
    ok_per_s: float = 0.0
    ok_p50_ms: float | None = None
    by_kind: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    """Whole-run numbers: counts, rates, percentiles (ms) over all requests and over good ones.

    ``requests`` = ``ok`` + ``failures`` + the refusals; ``ok_per_s`` is the goodput.
    """

    requests: int
    failures: int
    rps: float
    ok_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    ok_p50_ms: float | None
    ok_p95_ms: float | None
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    ok: int = 0
    ok_p99_ms: float | None = None
    refusals_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def failure_percent(self) -> float:
        return 100.0 * self.failures / self.requests if self.requests else 0.0

    @property
    def refusals(self) -> int:
        return sum(self.refusals_by_kind.values())


@dataclass(frozen=True)
class RunData:
    """Everything the report needs about one run."""

    label: str
    kind: str
    """``http`` (Locust) or ``pipeline``."""
    load: str
    """Human description of the offered load: ``200 users`` or ``5 frames/s``."""
    duration_s: float
    series: list[Point]
    totals: Totals
    client: dict[str, Any] = field(default_factory=dict)
    """The load generator's CPU verdict (:mod:`loadtest.cpu`)."""
    run_dir: Path | None = None
    server: str = "worker"
    """What answered: ``worker`` (our /predict, or the pipeline's workers) or ``baseline``."""
    profile: str = "study"
    """The client profile (``study``, ``retry-after``); ``pipeline`` for the pipeline load test."""


# ------------------------------------------------------------------ Locust CSV (pure on rows)


def _num(value: str | None) -> float | None:
    if value is None or value.strip() in ("", "N/A"):
        return None
    return float(value)


def by_count(counts: Counter[str]) -> dict[str, int]:
    """Kinds with their counts, most frequent first (ties by name)."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def name_kind(name: str) -> str | None:
    """The kind of answer a Locust request name stands for (pure): ``ok`` for ``/predict``, ``429`` for
    ``/predict [HTTP 429]``, ``200 bad body`` for ``[HTTP 200]``, ``refused 429`` for ``[refused 429]``,
    ``timeout`` for ``[timeout]`` (older runs' ``[HTTP 0]``: ``conn error``); ``None`` for other names."""
    if name == PREDICT_PATH:
        return "ok"
    prefix = PREDICT_PATH + " ["
    if not (name.startswith(prefix) and name.endswith("]")):
        return None
    inner = name[len(prefix):-1]
    if inner.startswith("HTTP "):
        status = inner.removeprefix("HTTP ")
        return {"200": BAD_BODY, "0": "conn error"}.get(status, status)
    return inner


def locust_results(history: Sequence[dict[str, str]], stats: Sequence[dict[str, str]],
                   failures: Sequence[dict[str, str]]) -> tuple[list[Point], Totals]:
    """Per-second series (from the history rows) and totals, from Locust's CSV rows (pure).

    Good answers are the ``/predict`` row; refusals the ``/predict [refused NNN]`` rows; failures are
    counted by kind from the failures CSV (their messages carry the kind, :func:`failure_kind`).
    Goodput = good answers / the run's span (Locust's ``Requests/s`` of ``Aggregated`` is requests / span).
    """
    by_second: dict[int, dict[str, dict[str, str]]] = {}
    for row in history:
        by_second.setdefault(int(row["Timestamp"]), {})[row["Name"]] = row
    agg = [r for r in history if r["Name"] == AGGREGATED]
    start = int(agg[0]["Timestamp"]) if agg else 0
    series = []
    for r in agg:
        rows = by_second.get(int(r["Timestamp"]), {})
        good = rows.get(PREDICT_PATH)
        by_kind: dict[str, float] = {}
        for name, row in rows.items():
            kind = name_kind(name)
            if kind is not None and kind != "ok":
                by_kind[kind] = by_kind.get(kind, 0.0) + float(row["Requests/s"])
        series.append(Point(
            t_s=int(r["Timestamp"]) - start, users=float(r["User Count"]), rps=float(r["Requests/s"]),
            failures_per_s=float(r["Failures/s"]), p50_ms=_num(r["50%"]), p95_ms=_num(r["95%"]),
            ok_p95_ms=_num(good["95%"]) if good else None,
            ok_per_s=float(good["Requests/s"]) - float(good["Failures/s"]) if good else 0.0,
            ok_p50_ms=_num(good["50%"]) if good else None, by_kind=dict(sorted(by_kind.items())),
        ))
    total = next((r for r in stats if r["Name"] == AGGREGATED), None)
    ok = next((r for r in stats if r["Name"] == PREDICT_PATH), None)
    by_kind_total: Counter[str] = Counter()
    for row in failures:
        by_kind_total[failure_kind(row["Error"])] += int(row["Occurrences"])
    refusals: Counter[str] = Counter()
    for row in stats:
        kind = name_kind(row["Name"])
        if kind and kind.startswith(REFUSED_PREFIX) and int(row["Request Count"]):
            refusals[kind.removeprefix(REFUSED_PREFIX)] += int(row["Request Count"])
    if total is None:
        return series, Totals(0, 0, 0.0, 0.0, None, None, None, None, None, by_count(by_kind_total))
    requests, failed = int(total["Request Count"]), int(total["Failure Count"])
    rps = float(total["Requests/s"])
    ok_count = int(ok["Request Count"]) - int(ok["Failure Count"]) if ok else 0
    totals = Totals(
        requests=requests, failures=failed, rps=rps,
        ok_per_s=rps * ok_count / requests if requests else 0.0,
        p50_ms=_num(total["50%"]), p95_ms=_num(total["95%"]), p99_ms=_num(total["99%"]),
        ok_p50_ms=_num(ok["50%"]) if ok_count else None, ok_p95_ms=_num(ok["95%"]) if ok_count else None,
        failures_by_kind=by_count(by_kind_total), ok=ok_count,
        ok_p99_ms=_num(ok["99%"]) if ok_count else None, refusals_by_kind=by_count(refusals),
    )
    return series, totals


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts (empty list if the file is missing)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ pipeline frames (pure)


@dataclass(frozen=True)
class FrameLatency:
    """One published frame: capture time, publish time, and when its result object was created.

    ``outcome`` is ``ok`` (detections stored), ``error-record`` or ``missing`` (nothing stored in time).
    """

    frame_index: int
    captured_us: int
    result_us: int | None
    outcome: str

    @property
    def latency_ms(self) -> float | None:
        return None if self.result_us is None else (self.result_us - self.captured_us) / 1000.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def pipeline_results(frames: Sequence[FrameLatency], rate_fps: float) -> tuple[list[Point], Totals]:
    """Per-second series (by result time; latency percentiles over the last 10 s) and totals.

    Sustained frames/s (``ok_per_s``) = stored results / (last result − first capture): equal to the
    offered rate when the workers keep up, their capacity when they do not.
    """
    if not frames:
        return [], Totals(0, 0, 0.0, 0.0, None, None, None, None, None)
    start_us = min(f.captured_us for f in frames)
    done = [f for f in frames if f.result_us is not None]
    ok = [f for f in done if f.outcome == "ok"]
    end_us = max([f.result_us for f in done if f.result_us is not None] + [max(f.captured_us for f in frames)])
    seconds = int((end_us - start_us) // 1_000_000) + 1
    published_by_s = Counter(int((f.captured_us - start_us) // 1_000_000) for f in frames)
    ok_by_s: dict[int, list[float]] = {}
    failed_by_s: dict[int, Counter[str]] = {}
    for f in done:
        second = int((f.result_us - start_us) // 1_000_000)  # type: ignore[operator]
        if f.outcome == "ok":
            ok_by_s.setdefault(second, []).append(f.latency_ms)  # type: ignore[arg-type]
        else:
            failed_by_s.setdefault(second, Counter())[f.outcome] += 1
    series = []
    for second in range(seconds):
        window = [lat for s in range(max(0, second - WINDOW_S + 1), second + 1) for lat in ok_by_s.get(s, [])]
        failed = failed_by_s.get(second, Counter())
        series.append(Point(
            t_s=second, users=float(published_by_s.get(second, 0)),
            rps=float(len(ok_by_s.get(second, [])) + failed.total()),
            failures_per_s=float(failed.total()),
            p50_ms=percentile(window, 0.5), p95_ms=percentile(window, 0.95), ok_p95_ms=percentile(window, 0.95),
            ok_per_s=float(len(ok_by_s.get(second, []))), ok_p50_ms=percentile(window, 0.5),
            by_kind={kind: float(count) for kind, count in sorted(failed.items())},
        ))
    latencies = [f.latency_ms for f in ok if f.latency_ms is not None]
    span_s = (end_us - start_us) / 1_000_000 if done else 0.0
    failures = Counter(f.outcome for f in frames if f.outcome != "ok")
    totals = Totals(
        requests=len(frames), failures=sum(failures.values()),
        rps=round(len(done) / span_s, 3) if span_s else 0.0,
        ok_per_s=round(len(ok) / span_s, 3) if span_s else 0.0,
        p50_ms=percentile(latencies, 0.5), p95_ms=percentile(latencies, 0.95), p99_ms=percentile(latencies, 0.99),
        ok_p50_ms=percentile(latencies, 0.5), ok_p95_ms=percentile(latencies, 0.95),
        failures_by_kind=by_count(failures), ok=len(ok), ok_p99_ms=percentile(latencies, 0.99),
    )
    return series, totals


def write_frames_csv(frames: Iterable[FrameLatency], path: Path) -> None:
    """``frames.csv`` of a pipeline run."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["frame_index", "captured_us", "result_us", "outcome", "latency_ms"])
        for f in frames:
            writer.writerow([f.frame_index, f.captured_us, "" if f.result_us is None else f.result_us, f.outcome,
                             "" if f.latency_ms is None else f"{f.latency_ms:.3f}"])


def read_frames_csv(path: Path) -> list[FrameLatency]:
    return [FrameLatency(int(r["frame_index"]), int(r["captured_us"]),
                        int(r["result_us"]) if r["result_us"] else None, r["outcome"])
            for r in read_csv_rows(path)]


# ------------------------------------------------------------------ a run folder


class RunFolderError(ValueError):
    """A folder that is not a complete run."""


def load_run(run_dir: Path) -> RunData:
    """Read ``run.json`` and the CSV files of a run folder (written by ``loadtest run`` / ``pipeline``)."""
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise RunFolderError(f"{run_dir}: no run.json (not a run folder written by `python -m loadtest run`)")
    meta = json.loads(meta_path.read_text())
    if meta.get("kind") == "pipeline":
        rate = float(meta["rate_fps"])
        series, totals = pipeline_results(read_frames_csv(run_dir / "frames.csv"), rate)
        load = f"{rate:g} frames/s"
        profile = "pipeline"
    else:
        prefix = run_dir / CSV_PREFIX
        history = read_csv_rows(Path(f"{prefix}_stats_history.csv"))
        if not history:
            raise RunFolderError(f"{run_dir}: {CSV_PREFIX}_stats_history.csv is missing or empty")
        series, totals = locust_results(history, read_csv_rows(Path(f"{prefix}_stats.csv")),
                                        read_csv_rows(Path(f"{prefix}_failures.csv")))
        load = f"{meta['load']['users']} users" + (f" at {meta['load']['fps']:g}/s" if meta["load"].get("fps") else "")
        profile = str(meta["load"].get("client", "study"))
    duration = float(series[-1].t_s - series[0].t_s + 1) if series else 0.0
    return RunData(label=meta.get("label") or run_dir.name, kind=meta.get("kind", "http"), load=load,
                   duration_s=duration, series=series, totals=totals, client=meta.get("client", {}), run_dir=run_dir,
                   server=str(meta.get("server", "worker")), profile=profile)
