"""``python -m loadtest simulate SCENARIO``: a load-test scenario run in the model, beside what the study saw.

Usage::

    python -m loadtest simulate study-1cpu-concurrency-30                       # our worker, measured service
    python -m loadtest simulate study-1cpu-concurrency-30 --server baseline --service-ms 170   # the study's server
    config = scenario_config(load_scenario("local-study-short"), profile, Rules())   # pure: scenario → SimConfig

A scenario's load becomes closed-loop users (its ``users``, ``spawn_rate``, ``fps``, ``client``; the
Locust processes' measured limit of ``local_client_max_rps`` requests/s each), its
deploy settings a Cloud Run service (``cloud-run``: concurrency, min/max instances, CPU, memory, startup
boost, ``startup_delay_s``) or the local stack (``local``: ``workers`` processes on one machine). The
server is our worker (processes per vCPU, admission by time with the front door's budget and
``deploy.gcp``'s per-process admission slots) with the profile's measured per-request service time,
or ``--server baseline``: the study's design, one process per instance and no admission, with the
same measured shape scaled to ``--service-ms``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from deploy.gcp.options import DeployOptions
from loadtest.planner.config import ClosedLoop, CloudRun, LocalStack, Server, SimConfig, SimResult
from loadtest.planner.figures import STUDY_ROWS, closed_loop_figures, failures_by_kind, format_value, percent_error
from loadtest.planner.model import simulate
from loadtest.planner.plan import startup_for
from loadtest.planner.profile import Profile, ServiceEntry, provenance_line
from loadtest.planner.rules import Rules
from loadtest.scenario import Scenario, load_scenario, with_overrides
from worker.defaults import DEFAULT_MAX_IN_FLIGHT


def _worker_default(name: str) -> float:
    """A default of the worker's own configuration (``worker.app.WorkerConfig``), read rather than restated."""
    from worker.app import WorkerConfig

    return float(next(f.default for f in dataclasses.fields(WorkerConfig) if f.name == name))


LOCAL_PREDICT_BUDGET_S = _worker_default("predict_budget_s")
"""The worker's default WORKER_PREDICT_BUDGET_S (10 s): the front door's budget on the local stack."""
LOCAL_FRAME_BUDGET_S = _worker_default("frame_budget_s")
"""The worker's default WORKER_FRAME_BUDGET_S (30 s): a frame's budget on the local stack."""


def memory_gib(memory: str) -> float:
    return int(memory[:-2]) / (1024 if memory.endswith("Mi") else 1)


def locust_processes(scenario: Scenario) -> int:
    """Locust processes of a run (docs/loadtest.md): the scenario's number, or ``auto``: one against this
    machine, else one per 100 users (the load generator's cores are not known here, so not capped)."""
    if isinstance(scenario.load.processes, int):
        return scenario.load.processes
    return 1 if scenario.deploy.target == "local" else max(1, math.ceil(scenario.load.users / 100))


def scenario_config(scenario: Scenario, profile: Profile, rules: Rules, server_kind: str = "worker",
                    service_ms: float | None = None, seed: int = 1) -> tuple[SimConfig, ServiceEntry]:
    """The model of a scenario (see the module docstring) and the service entry it uses."""
    d, load = scenario.deploy, scenario.load
    users = ClosedLoop(load.users, load.spawn_rate, load.fps, load.client,
                       max_rps=rules.local_client_max_rps * locust_processes(scenario))
    if d.target == "local":
        processes = d.workers or 2
        target: CloudRun | LocalStack = LocalStack(processes)
        budget, max_held, startup = LOCAL_PREDICT_BUDGET_S, DEFAULT_MAX_IN_FLIGHT, 0.0
        per_process = load.users / processes
    else:
        options = DeployOptions(project="planner-check", region="europe-west1", cpu=str(d.cpu), memory=str(d.memory),
                                concurrency=d.concurrency or 80, min_instances=d.min_instances or 0,
                                max_instances=d.max_instances or 100, cpu_boost=d.cpu_boost,
                                startup_delay=d.startup_delay_s)
        target = CloudRun(int(d.cpu or 1), memory_gib(str(d.memory)), options.concurrency, options.min_instances,
                          options.max_instances, cpu_boost=d.cpu_boost, startup_delay_s=d.startup_delay_s)
        budget, max_held = options.predict_budget_s, options.in_flight_per_process
        startup = startup_for(profile, int(d.cpu or 1), d.cpu_boost, d.startup_delay_s, rules)
        per_process = max_held if server_kind == "worker" else options.concurrency
    entry = profile.service("request", per_process)
    lock, outside, cpu = entry.lock, entry.outside, entry.cpu
    if service_ms is not None:
        factor = service_ms / 1000 / lock.mean_s
        lock, cpu = lock.scaled(factor), cpu.scaled(factor)
    if server_kind == "baseline":
        server = Server.baseline(lock, outside, cpu)
    else:
        server = dataclasses.replace(Server.worker(entry, budget, max_held), lock=lock, cpu=cpu)
    config = SimConfig(load=users, delivery="direct", target=target, server=server, startup_s=startup,
                       duration_s=load.duration_s, seed=seed, rules=rules, rtt_s=profile.http_rtt_s)
    return config, entry


def figures_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    names = list(rows[0][1])
    lines = ["| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, figures in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(figures[n]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.0f}"


def run_scenario(args: argparse.Namespace, profile: Profile, rules: Rules) -> int:
    scenario = with_overrides(load_scenario(args.scenario), users=args.users, duration_s=args.duration)
    config, entry = scenario_config(scenario, profile, rules, args.server, args.service_ms, args.seed)
    result: SimResult = simulate(config)
    figures = closed_loop_figures(result, config.duration_s)
    server = ("the study's design (1 process per instance, no admission)" if args.server == "baseline"
              else "our worker (admission by time)")
    service = f"{config.server.lock.mean_s * 1000:.1f} ms mean per request"
    print(f"simulate {scenario.name}: {scenario.load.users} users ({scenario.load.client} client), "
          f"{scenario.load.duration_s} s; {server}, {service}; seed {args.seed}")
    print(provenance_line(profile, entry))
    print()
    print(figures_table([(f"model: {scenario.name}", figures)]), end="")
    kinds = failures_by_kind(result)
    print(f"\nanswers other than good, by kind: {', '.join(f'{k}: {v}' for k, v in kinds.items()) or 'none'}")
    print(f"the study saw: {scenario.study or '— (not a study experiment)'}")
    if scenario.name in STUDY_ROWS:
        print("\n| figure | the study | model | difference |\n|---|---|---|---|")
        for name, study in STUDY_ROWS[scenario.name].items():
            print(f"| {name} | {format_value(name, study)} | {format_value(name, figures[name])} | "
                  f"{percent_error(name, figures[name], study)} |")
    if args.chart:
        from loadtest.planner.chart import plot_runs

        print(f"chart: {plot_runs({scenario.name: result}, Path(args.chart))}")
    return 0
