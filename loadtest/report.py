"""Reports: one markdown table comparing runs and one PNG chart, goodput first (matplotlib).

Usage::

    python -m loadtest report runs/a runs/b [--out runs/compare]     # → report.md + report.png
    runs = [load_run(Path(p)) for p in paths]
    print(markdown_table(runs))                                      # pure
    plot_runs(runs, Path("report.png"))                              # one column per run, side by side

The table, one row per run (e.g. the baseline and our /predict under the same scenario), reads left
to right in order of importance: **good answers/s** (200s with a valid body per second), then what
went wrong **by kind** (status codes, ``200 bad body``, ``timeout``, ``conn closed``, ``conn reset``,
``conn refused``; refusals a ``retry-after`` client honoured apart from failures), then the
**latency of the good answers** (p50/p95/p99), then the load generator's verdict. Under the table,
each run's goodput relative to the first run's.

The chart has one column per run with the same y scales per row: good answers/s (the headline);
every other kind of answer per second, one line per kind; latency of the good answers (p50, p95 over
the last 10 s); users (for the pipeline test: frames published per second).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadtest.results import RunData

TABLE_HEADER = ("run", "server", "client", "load", "s", "good/s", "requests", "good", "refused (Retry-After)",
                "failures", "failures by kind", "good p50 ms", "good p95 ms", "good p99 ms", "load generator")
KIND_COLOURS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _client(run: RunData) -> str:
    if not run.client:
        return "–"
    flags = [name for name, key in (("client-bound", "client_bound"), ("host saturated", "host_saturated"))
             if run.client.get(key)]
    return ", ".join(flags) if flags else "ok"


def _percent(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f} %" if total else "–"


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {count}" for kind, count in counts.items()) or "–"


def table_row(run: RunData) -> tuple[str, ...]:
    """The table cells of one run (pure)."""
    t = run.totals
    refused = f"{t.refusals} ({_percent(t.refusals, t.requests)}; {_kinds(t.refusals_by_kind)})" if t.refusals else "–"
    return (run.label, run.server, run.profile, run.load, f"{run.duration_s:.0f}", f"{t.ok_per_s:.1f}",
            str(t.requests), f"{t.ok} ({_percent(t.ok, t.requests)})", refused,
            f"{t.failures} ({_percent(t.failures, t.requests)})", _kinds(t.failures_by_kind),
            _ms(t.ok_p50_ms), _ms(t.ok_p95_ms), _ms(t.ok_p99_ms), _client(run))


def markdown_table(runs: Sequence[RunData]) -> str:
    """A markdown table, one row per run (pure). For pipeline runs requests are frames, good/s is the
    sustained frames/s and the percentiles are capture-to-result latency."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "|".join("---" for _ in TABLE_HEADER) + "|"]
    lines += ["| " + " | ".join(table_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


def goodput_ratios(runs: Sequence[RunData]) -> str | None:
    """``good answers/s relative to <first run>: b 1.52×, c 0.48×`` (pure); None for fewer than 2 runs."""
    if len(runs) < 2:
        return None
    first = runs[0]
    if first.totals.ok_per_s <= 0:
        return f"good answers/s relative to {first.label}: – (it had no good answers)"
    parts = [f"{run.label} **{run.totals.ok_per_s / first.totals.ok_per_s:.2f}×**" for run in runs[1:]]
    return f"good answers/s relative to {first.label} ({first.totals.ok_per_s:.1f}/s): " + ", ".join(parts)


def markdown_report(runs: Sequence[RunData], chart_name: str | None, command: str | None = None) -> str:
    """A whole report: the command, the table, goodput ratios, the chart, each run's client verdict (pure)."""
    parts = ["# Load test report", ""]
    if command:
        parts += ["```sh", command, "```", ""]
    parts += [markdown_table(runs)]
    ratios = goodput_ratios(runs)
    if ratios:
        parts += [ratios, ""]
    if chart_name:
        parts += [f"![good answers/s and other answers by kind, latency of good answers, users]({chart_name})", ""]
    for run in runs:
        if run.client.get("reason"):
            parts.append(f"- **{run.label}** load generator: {run.client['reason']}.")
    return "\n".join(parts).rstrip() + "\n"


def chart_kinds(runs: Sequence[RunData]) -> list[str]:
    """Every kind of non-good answer in any run's series, in a stable order (pure): one colour each."""
    return sorted({kind for run in runs for point in run.series for kind in point.by_kind})


def plot_runs(runs: Sequence[RunData], path: Path, dpi: int = 110) -> Path:
    """Write the chart (PNG): one column per run, rows as in the module docstring; same y scales per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = chart_kinds(runs)
    colours = {kind: KIND_COLOURS[i % len(KIND_COLOURS)] for i, kind in enumerate(kinds)}
    columns = len(runs)
    fig, axes = plt.subplots(4, columns, figsize=(5.2 * columns + 0.6, 9.5), sharex="col", sharey="row",
                             squeeze=False, height_ratios=(3, 2.4, 3, 1.4))
    for col, run in enumerate(runs):
        t = [p.t_s for p in run.series]
        good_ax, other_ax, time_ax, users_ax = (axes[row][col] for row in range(4))
        pipeline = run.kind == "pipeline"
        good_ax.plot(t, [p.ok_per_s for p in run.series], color="tab:green", linewidth=2,
                     label="results/s" if pipeline else "good answers/s")
        good_ax.set_title(f"{run.label}\n{run.server}, {run.profile} client: {run.totals.ok_per_s:.1f} good/s",
                          fontsize=9)
        run_kinds = [kind for kind in kinds if any(kind in p.by_kind for p in run.series)]
        for kind in run_kinds:
            other_ax.plot(t, [p.by_kind.get(kind, 0.0) for p in run.series], color=colours[kind], linewidth=1.2,
                          label=f"{kind}/s")
        if not run_kinds:
            other_ax.text(0.5, 0.5, "no failures or refusals", transform=other_ax.transAxes, ha="center",
                          va="center", fontsize=8, color="tab:gray")
        time_ax.plot(t, [_nan(p.ok_p50_ms) for p in run.series], color="tab:purple", label="p50 of good answers")
        time_ax.plot(t, [_nan(p.ok_p95_ms) for p in run.series], color="tab:orange", label="p95 of good answers")
        users_ax.plot(t, [p.users for p in run.series], color="tab:blue",
                      label="frames published/s" if pipeline else "users")
        users_ax.set_xlabel("seconds since start")
        for ax in (good_ax, other_ax, time_ax, users_ax):
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper left", fontsize=7)
        if col == 0:
            good_ax.set_ylabel("good answers/s")
            other_ax.set_ylabel("other answers/s")
            time_ax.set_ylabel("latency of good, ms")
            users_ax.set_ylabel("load")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def write_report(runs: Sequence[RunData], out_dir: Path, command: str | None = None,
                 chart_name: str = "report.png") -> tuple[Path, Path]:
    """Write ``report.png`` and ``report.md`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chart = plot_runs(runs, out_dir / chart_name)
    report = out_dir / "report.md"
    report.write_text(markdown_report(runs, chart.name, command))
    return report, chart
