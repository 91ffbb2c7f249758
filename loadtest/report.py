"""Reports: a markdown table comparing runs and PNG charts like the study's (matplotlib).

Usage::

    python -m loadtest report runs/a runs/b [--out runs/compare]     # → report.md + report.png
    runs = [load_run(Path(p)) for p in paths]
    print(markdown_table(runs))                                      # pure
    plot_runs(runs, Path("report.png"))                              # one column per run

The chart has three rows per run, like Locust's web UI and the study's figures: requests/s and
failures/s; p50 and p95 response time (over the last 10 s; dashed: p95 of good responses only);
users (for the pipeline test: frames published per second).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loadtest.results import RunData

TABLE_HEADER = ("run", "load", "s", "requests", "req/s", "ok/s", "fail %", "p50 ms", "p95 ms", "p99 ms",
                "ok p95 ms", "failures by status", "client")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _client(run: RunData) -> str:
    if not run.client:
        return "–"
    flags = [name for name, key in (("client-bound", "client_bound"), ("host saturated", "host_saturated"))
             if run.client.get(key)]
    return ", ".join(flags) if flags else "ok"


def table_row(run: RunData) -> tuple[str, ...]:
    """The table cells of one run (pure)."""
    t = run.totals
    by_status = ", ".join(f"{status}: {count}" for status, count in t.failures_by_status.items()) or "–"
    return (run.label, run.load, f"{run.duration_s:.0f}", str(t.requests), f"{t.rps:.1f}", f"{t.ok_per_s:.1f}",
            f"{t.failure_percent:.1f}", _ms(t.p50_ms), _ms(t.p95_ms), _ms(t.p99_ms), _ms(t.ok_p95_ms), by_status,
            _client(run))


def markdown_table(runs: Sequence[RunData]) -> str:
    """A markdown table, one row per run (pure). For pipeline runs requests are frames, req/s are
    results/s, ok/s is the sustained frames/s and the percentiles are capture-to-result latency."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "|".join("---" for _ in TABLE_HEADER) + "|"]
    lines += ["| " + " | ".join(table_row(run)) + " |" for run in runs]
    return "\n".join(lines) + "\n"


def markdown_report(runs: Sequence[RunData], chart_name: str | None, command: str | None = None) -> str:
    """A whole report: the table, the chart, each run's client verdict, the command (pure)."""
    parts = ["# Load test report", ""]
    if command:
        parts += ["```sh", command, "```", ""]
    parts += [markdown_table(runs)]
    if chart_name:
        parts += [f"![requests/s, failures/s, response times and users over time]({chart_name})", ""]
    for run in runs:
        if run.client.get("reason"):
            parts.append(f"- **{run.label}** load generator: {run.client['reason']}.")
    return "\n".join(parts).rstrip() + "\n"


def plot_runs(runs: Sequence[RunData], path: Path, dpi: int = 110) -> Path:
    """Write the chart (PNG): one column per run, rows as in the module docstring; same y scales per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = len(runs)
    fig, axes = plt.subplots(3, columns, figsize=(5.2 * columns + 0.6, 7.5), sharex="col", sharey="row",
                             squeeze=False, height_ratios=(3, 3, 1.6))
    for col, run in enumerate(runs):
        t = [p.t_s for p in run.series]
        rate_ax, time_ax, users_ax = axes[0][col], axes[1][col], axes[2][col]
        pipeline = run.kind == "pipeline"
        rate_ax.plot(t, [p.rps for p in run.series], color="tab:green", label="results/s" if pipeline else "requests/s")
        rate_ax.plot(t, [p.failures_per_s for p in run.series], color="tab:red", label="failures/s")
        rate_ax.set_title(run.label, fontsize=10)
        time_ax.plot(t, [_nan(p.p50_ms) for p in run.series], color="tab:purple", label="p50")
        time_ax.plot(t, [_nan(p.p95_ms) for p in run.series], color="tab:orange", label="p95")
        if not pipeline:
            time_ax.plot(t, [_nan(p.ok_p95_ms) for p in run.series], color="tab:orange", linestyle="--",
                         linewidth=1, label="p95 of 200s")
        users_ax.plot(t, [p.users for p in run.series], color="tab:blue",
                      label="frames published/s" if pipeline else "users")
        users_ax.set_xlabel("seconds since start")
        for ax in (rate_ax, time_ax, users_ax):
            ax.grid(True, alpha=0.3)
            ax.legend(loc="upper left", fontsize=8)
        if col == 0:
            rate_ax.set_ylabel("per second")
            time_ax.set_ylabel("response time, ms" if not pipeline else "latency, ms")
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
