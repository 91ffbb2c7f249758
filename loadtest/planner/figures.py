"""The figures a load test reports, computed from a simulation the same way (pure).

Usage::

    figures = closed_loop_figures(result, duration_s=60)    # good/s, req/s, failures %, p50/p95 s, instances ...
    figures = pipeline_figures(result)                       # sustained frames/s, p50/p95 capture-to-result
    error(model=63.0, measured=61.3)                         # +0.028: relative error of the model

Closed loop (the front door, Locust): **good/s** = good answers received during the run / its
duration; **req/s** = every answer / duration; **failures %** = answers that are neither good nor a
refusal the client honoured; latency percentiles of the good answers; **first responses** = the median
time to a good answer of the requests sent in the first :data:`FIRST_S` seconds; **peak failures %** = the
highest failure share in any :data:`WINDOW_S`-second window; **instances** = the most instances
serving or starting at once. Pipeline (frames through Pub/Sub, as ``loadtest.results.pipeline_results``):
sustained frames/s = results / (last result - first capture); latency percentiles over every frame.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from loadtest.planner.config import SimResult

FIRST_S = 10.0
"""'First responses': requests sent in the first 10 s (the study's 1000 users start at 100/s: 10 s)."""
WINDOW_S = 10.0
"""Window of the peak failure share (docs/loadtest.md's percentiles over time use 10 s windows too)."""

STUDY_ROWS: dict[str, dict[str, float]] = {
    "study-single-instance": {"failures %": 83, "p95 s": 12},
    "study-autoscaling": {"failures %": 0, "req/s": 300, "p95 s": 6, "instances": 13},
    "study-startup-delay": {"peak failures % (10 s)": 8},
    "study-min-instances-0": {"first responses s": 10},
    "study-min-instances-5": {"first responses s": 1},
    "study-2cpu-concurrency-100": {"failures %": 8, "req/s": 120, "instances": 38, "median s": 8},
    "study-1cpu-concurrency-30": {"failures %": 0, "req/s": 300, "instances": 86, "median s": 2},
}
"""The study's published table (field.md; the scenario files' ``study`` lines), as numbers."""


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q * 100)) if values else math.nan


def closed_loop_figures(result: SimResult, duration_s: float) -> dict[str, float]:
    requests = result.requests
    good = [answered - sent for sent, answered, kind in requests if kind == "ok"]
    failed = [r for r in requests if r[2] != "ok" and not r[2].startswith("refused")]
    first = [answered - sent for sent, answered, kind in requests if sent < FIRST_S and kind == "ok"]
    peak_share = 0.0
    bins: dict[int, Counter[str]] = {}
    for _, answered, kind in requests:
        outcome = "ok" if kind == "ok" or kind.startswith("refused") else "failed"
        bins.setdefault(int(answered // WINDOW_S), Counter())[outcome] += 1
    for counts in bins.values():
        total = counts.total()
        if total:
            peak_share = max(peak_share, counts["failed"] / total)
    return {
        "good/s": len(good) / duration_s,
        "req/s": len(requests) / duration_s,
        "failures %": 100.0 * len(failed) / len(requests) if requests else math.nan,
        "peak failures % (10 s)": 100.0 * peak_share,
        "median s": _percentile(good, 0.5),
        "p95 s": _percentile(good, 0.95),
        "first responses s": _percentile(first, 0.5),
        "instances": result.peak_instances,
    }


def failures_by_kind(result: SimResult) -> dict[str, int]:
    counts = Counter(kind for *_, kind in result.requests if kind != "ok")
    return dict(counts.most_common())


def pipeline_figures(result: SimResult, first_capture_s: float = 0.0) -> dict[str, float]:
    latencies = result.frame_latencies_s
    last = float(result.last_result_s) if result.results else math.nan
    span = last - first_capture_s
    return {
        "frames/s": result.results / span if span > 0 else math.nan,
        "p50 s": float(np.percentile(latencies, 50)) if len(latencies) else math.nan,
        "p95 s": result.frame_latency_s(0.95),
    }


def error(model: float, measured: float) -> float:
    """Relative error of the model: (model - measured) / measured; NaN when there is nothing to compare."""
    if measured is None or model is None or math.isnan(model) or math.isnan(measured) or measured == 0:
        return math.nan
    return (model - measured) / measured


def format_value(figure: str, value: float) -> str:
    """A figure's value for a table: times in ms below 1 s, else seconds; counts and rates with one decimal."""
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞"
    if figure.endswith(" s"):
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.1f}"


def percent_error(figure: str, model: float, measured: float) -> str:
    """Relative error in %, or for a percentage figure the difference in points (a 0 % has no relative error)."""
    if model is None or measured is None or math.isnan(model) or math.isnan(measured):
        return "–"
    if figure.endswith("%"):
        return f"{model - measured:+.0f} pt"
    if math.isinf(model):
        return "∞"
    value = error(model, measured)
    return "–" if math.isnan(value) else f"{value * 100:+.0f} %"
