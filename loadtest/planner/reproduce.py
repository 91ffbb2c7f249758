"""``python -m loadtest reproduce``: the model against our own measured runs and against the study's table.

Usage::

    python -m loadtest reproduce            # both tables (a few minutes: the study's rows are 1000 users x 300 s)
    python -m loadtest reproduce --own      # only our runs (seconds)
    rows = own_rows(load_profile(), Rules())          # [(run, figure, measured, model same-run, model calibrated)]

**Our runs.** Each ``validation`` entry of the profile is one real run of the local stack (a pipeline
run through Pub/Sub pull, or the front door under Locust). The model of the local stack — its worker
processes, the emulator's measured delivery time, pull flow control or closed-loop users limited to
the measured Locust rate — predicts the run's throughput and latency twice: with the service times
measured *in that run* (does the model's structure hold?) and with those of the profile's
*calibration* entry the planner would use (does a calibration carry over to another run on this
shared machine?). The measured figures come from the run's own client (Locust or the pipeline test),
never from the model's inputs.

**The study.** One number is fitted — the mean per-request service time of the study's server (one
process per instance, model called synchronously, no admission: ``Server.baseline``) on a 1-vCPU
instance — on one row only (:data:`FIT_ROW`), keeping our measured shape; every other row is then
predicted. Two variants: **(a)** the client as configured (1000 users, no wait, Locust processes at
their measured rate: not a bottleneck), fitted on the row's req/s; **(b)** the client limited to the
study's ~300 req/s plateau (field.md attributes it to the single-process Locust client), where req/s
can no longer identify the service time, fitted on the row's instance count instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from loadtest.planner.config import ClosedLoop, LocalStack, OpenLoop, Server, SimConfig
from loadtest.planner.figures import (
    STUDY_ROWS,
    closed_loop_figures,
    format_value,
    percent_error,
    pipeline_figures,
)
from loadtest.planner.model import simulate
from loadtest.planner.profile import Profile, ServiceEntry, provenance_line
from loadtest.planner.rules import Rules
from loadtest.planner.scenarios import LOCAL_FRAME_BUDGET_S, LOCAL_PREDICT_BUDGET_S, scenario_config
from loadtest.scenario import load_scenario
from worker.defaults import DEFAULT_MAX_IN_FLIGHT

PIPELINE_DRAIN_S = 120.0
"""The validation runs' --drain (how long the pipeline test waited for the last results)."""

FIT_ROW = "study-autoscaling"
FIT_FIGURE = {"a": "req/s", "b": "instances"}
FIT_RANGE_MS = (5.0, 3000.0)
FIT_STEPS = 9


# ------------------------------------------------------------------ our runs


def own_config(target: ServiceEntry, service: ServiceEntry, profile: Profile, rules: Rules, seed: int = 1
               ) -> SimConfig:
    """The local stack of ``target``'s run, served with ``service``'s measured times."""
    load = target.load
    stack = LocalStack(target.processes)
    if target.kind == "frame":
        server = Server.worker(service, LOCAL_FRAME_BUDGET_S, max(1, round(target.concurrency_per_process)))
        return SimConfig(load=OpenLoop(1, float(load["rate_fps"])), delivery="pull" if target.delivery == "pull"
                         else "push", target=stack, server=server, duration_s=float(load["duration_s"]),
                         drain_s=PIPELINE_DRAIN_S, seed=seed, rules=rules, delivery_delay=profile.delivery_delay,
                         local_push_window=target.delivery == "push")
    users = ClosedLoop(int(load["users"]), float(load["spawn_rate"]), float(load.get("fps") or 0.0),
                       str(load.get("client", "study")), max_rps=rules.local_client_max_rps)
    server = Server.worker(service, LOCAL_PREDICT_BUDGET_S, DEFAULT_MAX_IN_FLIGHT)
    return SimConfig(load=users, delivery="direct", target=stack, server=server, duration_s=float(load["duration_s"]),
                     seed=seed, rules=rules, rtt_s=profile.http_rtt_s)


def _figures(target: ServiceEntry, config: SimConfig) -> dict[str, float]:
    result = simulate(config)
    if target.kind == "frame":
        f = pipeline_figures(result)
        return {"frames/s": f["frames/s"], "p50 s": f["p50 s"], "p95 s": f["p95 s"]}
    f = closed_loop_figures(result, config.duration_s)
    return {"good/s": f["good/s"], "p50 s": f["median s"], "p95 s": f["p95 s"]}


def _measured(target: ServiceEntry) -> dict[str, float]:
    o = target.observed
    rate = "frames/s" if target.kind == "frame" else "good/s"
    return {rate: float(o["good_per_s"]), "p50 s": float(o["good_p50_ms"]) / 1000,
            "p95 s": float(o["good_p95_ms"]) / 1000}


@dataclass(frozen=True)
class OwnRow:
    run: ServiceEntry
    figure: str
    measured: float
    same_run: float
    calibrated: float
    calibration: ServiceEntry


def own_rows(profile: Profile, rules: Rules, seed: int = 1) -> list[OwnRow]:
    rows = []
    for target in (e for e in profile.entries if e.role == "validation"):
        calibration = profile.service(target.kind, target.concurrency_per_process)
        same = _figures(target, own_config(target, target, profile, rules, seed))
        calibrated = _figures(target, own_config(target, calibration, profile, rules, seed))
        for name, measured in _measured(target).items():
            rows.append(OwnRow(target, name, measured, same[name], calibrated[name], calibration))
    return rows


def _load_text(entry: ServiceEntry) -> str:
    if entry.kind == "frame":
        return f"{entry.load['rate_fps']:g} frames/s, {entry.delivery}, {entry.processes} processes"
    return f"{entry.load['users']} users ({entry.load.get('client', 'study')}), {entry.processes} processes"


def own_table(rows: list[OwnRow]) -> str:
    lines = ["| run (measured) | load | figure | measured | model, the run's own service times | error | "
             "model, calibration service times | error |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.run.source} | {_load_text(r.run)} | {r.figure} | {format_value(r.figure, r.measured)} | "
                     f"{format_value(r.figure, r.same_run)} | {percent_error(r.figure, r.same_run, r.measured)} | "
                     f"{format_value(r.figure, r.calibrated)} ({r.calibration.source}) | "
                     f"{percent_error(r.figure, r.calibrated, r.measured)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the study


def study_figures(name: str, service_ms: float, variant: str, profile: Profile, rules: Rules, seed: int = 1
                  ) -> dict[str, float]:
    config, _ = scenario_config(load_scenario(name), profile, rules, "baseline", service_ms, seed)
    if variant == "b":
        config = dataclasses.replace(config, load=dataclasses.replace(config.load,  # type: ignore[type-var]
                                                                     max_rps=rules.study_client_max_rps))
    return closed_loop_figures(simulate(config), config.duration_s)


def fit_service_ms(variant: str, profile: Profile, rules: Rules, seed: int = 1,
                   say: Callable[[str], None] = lambda _: None) -> tuple[float, dict[str, float]]:
    """The mean service time (ms) that makes the model's :data:`FIT_ROW` figure match the study's (bisection on
    a log scale; req/s falls and the instance count rises with the service time)."""
    figure = FIT_FIGURE[variant]
    target = STUDY_ROWS[FIT_ROW][figure]
    rising = figure == "instances"
    low, high = math.log(FIT_RANGE_MS[0]), math.log(FIT_RANGE_MS[1])
    best: tuple[float, float, dict[str, float]] = (math.inf, 0.0, {})
    for _ in range(FIT_STEPS):
        mid = (low + high) / 2
        figures = study_figures(FIT_ROW, math.exp(mid), variant, profile, rules, seed)
        value = figures[figure]
        say(f"  fit ({variant}): {math.exp(mid):.1f} ms -> {figure} {value:.1f} (study {target:g})")
        if abs(value - target) < best[0]:
            best = (abs(value - target), math.exp(mid), figures)
        if (value < target) == rising:
            low = mid
        else:
            high = mid
    return best[1], best[2]


def study_table(results: dict[str, dict[str, dict[str, float]]], fits: dict[str, float]) -> str:
    lines = ["| row | figure | study | model (a) | error | model (b) | error |", "|---|---|---|---|---|---|---|"]
    for row, figures in STUDY_ROWS.items():
        for figure, study in figures.items():
            fitted = " (fitted)" if row == FIT_ROW else ""
            cells = []
            for variant in ("a", "b"):
                model = results[variant][row][figure]
                mark = " **fit**" if row == FIT_ROW and figure == FIT_FIGURE[variant] else ""
                cells += [format_value(figure, model) + mark, percent_error(figure, model, study)]
            lines.append(f"| {row}{fitted} | {figure} | {format_value(figure, study)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"fitted mean service time per request: (a) {fits['a']:.0f} ms on {FIT_ROW}'s {FIT_FIGURE['a']}; "
                 f"(b) {fits['b']:.0f} ms on its {FIT_FIGURE['b']}, client limited to the study's ~300 req/s")
    return "\n".join(lines) + "\n"


def run_reproduce(args: argparse.Namespace, profile: Profile, rules: Rules) -> int:
    import sys

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    print(provenance_line(profile))
    if not args.study:
        rows = own_rows(profile, rules, args.seed)
        print("\nour runs (local stack, 2 cores):\n")
        print(own_table(rows), end="")
    if not args.own:
        fits: dict[str, float] = {}
        results: dict[str, dict[str, dict[str, float]]] = {}
        for variant in ("a", "b"):
            say(f"fitting variant ({variant}) on {FIT_ROW} ...")
            fits[variant], fitted = fit_service_ms(variant, profile, rules, args.seed, say)
            results[variant] = {FIT_ROW: fitted}
            for row in STUDY_ROWS:
                if row != FIT_ROW:
                    say(f"  {row} ({variant}) ...")
                    results[variant][row] = study_figures(row, fits[variant], variant, profile, rules, args.seed)
        print("\nthe study's table (field.md), the study's server design in the model:\n")
        print(study_table(results, fits), end="")
    return 0
