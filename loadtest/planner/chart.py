"""Charts of simulations (matplotlib, PNG): instances, latency and backlog over time, and the cost/latency trade-off.

Usage::

    plot_plan(outcome, request, Path("plan.png"))              # the planner's chart
    plot_runs({"model": result}, Path("simulate.png"))           # one or more simulations over time
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from loadtest.planner.config import SimResult
from loadtest.planner.plan import PlanOutcome, PlanRequest, describe


def _figure(rows: int, cols: int, size: tuple[float, float]):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(rows, cols, figsize=size, squeeze=False)


def _over_time(axes, label: str, result: SimResult, style: str = "-") -> None:  # type: ignore[no-untyped-def]
    t = [s.t_s for s in result.timeline]
    axes[0].plot(t, [s.instances for s in result.timeline], style, label=label)
    axes[1].plot(t, [s.latency_p95_s if s.latency_p95_s is not None else math.nan for s in result.timeline], style,
                 label=f"{label}: p95")
    axes[1].plot(t, [s.latency_p50_s if s.latency_p50_s is not None else math.nan for s in result.timeline], ":",
                 label=f"{label}: p50")
    axes[2].plot(t, [s.backlog for s in result.timeline], style, label=label)


def _label_time_axes(axes, warmup_s: float) -> None:  # type: ignore[no-untyped-def]
    for ax, title in zip(axes, ("instances (not counting idle ones kept warm)", "capture-to-result latency (s)",
                                "backlog in Pub/Sub (frames)"), strict=True):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("simulated time (s)")
        ax.grid(alpha=0.3)
        if warmup_s:
            ax.axvspan(0, warmup_s, color="0.9", zorder=0)
    axes[1].set_yscale("log")


def plot_plan(outcome: PlanOutcome, request: PlanRequest, path: Path) -> Path:
    """Instances, latency and backlog over time for the recommendation (and the best of the other mode), and
    cost per hour against p95 latency for every candidate, the target as a line."""
    plt, fig, axes = _figure(2, 2, (12, 8))
    time_axes = [axes[0][0], axes[0][1], axes[1][0]]
    shown = []
    if outcome.best is not None:
        shown.append(outcome.best)
    for row in outcome.rows:  # the cheapest meeting row of the other mode, dashed
        if row.meets and all(row.candidate.mode != s.candidate.mode for s in shown):
            shown.append(row)
    for row, style in zip(shown, ("-", "--"), strict=False):
        _over_time(time_axes, f"{describe(row.candidate)} ({row.billing})", outcome.results[row.candidate], style)
    _label_time_axes(time_axes, request.warmup_s)
    for ax in time_axes:
        if ax.lines:
            ax.legend(fontsize=6)
    trade = axes[1][1]
    for mode, colour in (("push", "tab:blue"), ("pull", "tab:orange")):
        rows = [r for r in outcome.rows if r.candidate.mode == mode and math.isfinite(r.p95_s)]
        trade.scatter([r.p95_s for r in rows], [r.cost_per_h for r in rows], s=18, color=colour, label=mode,
                      alpha=0.7)
    if outcome.best is not None and math.isfinite(outcome.best.p95_s):
        trade.scatter([outcome.best.p95_s], [outcome.best.cost_per_h], s=160, marker="*", color="gold",
                      edgecolor="black", label="cheapest meeting the target", zorder=5)
    if request.slo_p95_s:
        trade.axvline(request.slo_p95_s, color="tab:red", linestyle=":", label="p95 target")
    trade.set_xscale("log")
    trade.set_xlabel("p95 capture-to-result latency (s)")
    trade.set_ylabel("$ per hour (Cloud Run + Pub/Sub + writes)")
    trade.set_title("every candidate: cost against latency", fontsize=9)
    trade.grid(alpha=0.3)
    trade.legend(fontsize=7)
    fig.suptitle(f"{request.cameras} cameras x {request.fps:g} frames/s = {request.rate:g} frames/s"
                 + (f", p95 target {request.slo_p95_s:g} s" if request.slo_p95_s else ""), fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_runs(results: Mapping[str, SimResult], path: Path, warmup_s: float = 0.0) -> Path:
    """Instances, latency and backlog over time for each labelled simulation."""
    plt, fig, axes = _figure(1, 3, (15, 4))
    time_axes = list(axes[0])
    for (label, result), style in zip(results.items(), ("-", "--", "-.", ":"), strict=False):
        _over_time(time_axes, label, result, style)
    _label_time_axes(time_axes, warmup_s)
    for ax in time_axes:
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
