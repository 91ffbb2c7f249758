"""``python -m loadtest``: run scenarios, report on runs, the pipeline load test, validate scenarios.

Usage::

    python -m loadtest run SCENARIO --host URL [--users N --spawn-rate R --duration S] [--out runs/]
    python -m loadtest run SCENARIO --host http://127.0.0.1:8000 --server baseline   # a running baseline
    python -m loadtest local SCENARIO [--workers 2] [--chart PNG]     # own local stack, run, report, stop
    python -m loadtest local SCENARIO --baseline                      # the baseline first, then the stack; one report
    python -m loadtest baseline [--port 8000]                         # the study's server design with our model
    python -m loadtest report RUN [RUN...] [--out DIR]
    python -m loadtest pipeline --rate FPS --duration S [--workers 2 | --use-stack] [--out runs/]
    python -m loadtest validate [SCENARIO...]                         # all of loadtest/scenarios/ by default
    python -m loadtest flags SCENARIO                                 # its `python -m deploy.gcp` flags
    python -m loadtest plan --cameras 40 --fps 5 [--slo-p95 2s]       # the planner (loadtest.planner.cli):
    python -m loadtest simulate|reproduce|calibrate ...               # model, validation, calibration

SCENARIO is a name in loadtest/scenarios/ (``study-autoscaling``) or a path to a YAML file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtest.checks import SERVERS
from loadtest.planner.cli import COMMANDS as PLANNER_COMMANDS
from loadtest.planner.cli import add_commands as add_planner_commands
from loadtest.profiles import CLIENT_PROFILES
from loadtest.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    gcp_flags,
    load_scenario,
    with_overrides,
    worker_env,
)

LOCAL_SCENARIO_TIMEOUT_S = 90.0


def _say(message: str) -> None:
    print(message, flush=True)


def _add_load_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", help="scenario name (loadtest/scenarios/NAME.yml) or YAML path")
    parser.add_argument("--users", type=int, help="override load.users")
    parser.add_argument("--spawn-rate", type=float, help="override load.spawn_rate (users started per second)")
    parser.add_argument("--duration", type=int, help="override load.duration_s (seconds)")
    parser.add_argument("--fps", type=float, help="override load.fps (requests/s per user; 0 = no wait)")
    parser.add_argument("--image", help="override load.image (asset name or image path)")
    parser.add_argument("--client", choices=CLIENT_PROFILES,
                        help="override load.client: study (no wait) or retry-after (honours Retry-After)")
    parser.add_argument("--processes", type=int, help="Locust processes (default: the scenario's, 'auto')")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="parent of the run folder (default runs/)")
    parser.add_argument("--label", help="name of the run in reports (default: the run folder's name)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario against a host with Locust (headless, CSV, report)")
    _add_load_overrides(run)
    run.add_argument("--host", required=True, help="base URL of the front door, e.g. https://x.run.app")
    run.add_argument("--server", choices=SERVERS, default="worker",
                     help="what answers at --host: worker (our /predict, default) or baseline (stores nothing)")

    local = sub.add_parser("local", help="start a local stack, run a scenario against it, report, stop it")
    _add_load_overrides(local)
    local.add_argument("--workers", type=int, help="gunicorn worker processes (default: the scenario's, or 2)")
    local.add_argument("--chart", type=Path, help="also copy the run's chart (PNG) to this path")
    local.add_argument("--baseline", action="store_true",
                       help="first run the scenario against the baseline server (python -m loadtest baseline), "
                            "then against the local stack, one after the other; one report with both")

    baseline = sub.add_parser("baseline", help="the study's server design (FastAPI, 1 Uvicorn worker, model "
                                               "called synchronously) with our model; serves until SIGINT/SIGTERM")
    baseline.add_argument("--port", type=int, default=8000, help="port to listen on (0: a free one; default 8000)")
    baseline.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    baseline.add_argument("--pipeline", type=Path, help="PeekingDuck pipeline file (default worker/pipeline.yml)")

    report = sub.add_parser("report", help="charts (PNG) and a markdown table from one or more run folders")
    report.add_argument("runs", nargs="+", type=Path)
    report.add_argument("--out", type=Path, help="output folder (default: the run folder, or runs/compare-<time>)")
    report.add_argument("--chart-name", default="report.png")

    pipe = sub.add_parser("pipeline", help="frames through Pub/Sub at a target rate; capture-to-result latency")
    pipe.add_argument("--rate", type=float, required=True, help="frames per second to publish")
    pipe.add_argument("--duration", type=float, required=True, help="seconds to publish for")
    pipe.add_argument("--image", default="dog", help="asset name or image path (default dog)")
    pipe.add_argument("--workers", type=int, default=2, help="worker processes of the stack it starts")
    pipe.add_argument("--use-stack", action="store_true", help="use the running stack of `deploy.local up`")
    pipe.add_argument("--drain", type=float, default=60.0, help="seconds to wait for results after publishing")
    pipe.add_argument("--out", type=Path, default=Path("runs"))
    pipe.add_argument("--label")

    validate = sub.add_parser("validate", help="check scenario files; every problem with its key")
    validate.add_argument("scenarios", nargs="*")

    flags = sub.add_parser("flags", help="the python -m deploy.gcp flags and worker env of a scenario")
    flags.add_argument("scenario")
    add_planner_commands(sub)
    return parser


def _scenario(args: argparse.Namespace) -> Any:
    scenario = load_scenario(args.scenario)
    return with_overrides(scenario, users=args.users, spawn_rate=args.spawn_rate, duration_s=args.duration,
                          fps=args.fps, image=args.image, client=args.client)


@contextlib.contextmanager
def own_stack(workers: int, extra_env: dict[str, str], keep_logs_in: list[Path], mode: str = "push") -> Iterator[Any]:
    """A fresh local stack on free 127.0.0.1 ports in a temp dir; always stopped and removed.

    ``mode`` is the stack's frame delivery: ``push`` (the default here: the front door's load tests
    then share the machine with no idle pull workers) or ``pull`` (frames through Pub/Sub).

    Its workers' logs (``workers.log``; in pull mode also ``pull-workers.log``) are copied into each folder the
    caller appended to ``keep_logs_in`` meanwhile.
    """
    from deploy.local import start_stack, stop_stack
    from deploy.stack_config import PULL_WORKERS, WORKERS, StackConfig

    stack_dir = Path(tempfile.mkdtemp(prefix="loadtest-stack-"))
    config = StackConfig(workers=workers, mode=mode, port=None, pubsub_port=None, storage_port=None,
                         stack_dir=stack_dir, extra_env=extra_env, ready_timeout=LOCAL_SCENARIO_TIMEOUT_S)
    _say(f"starting a local stack ({workers} worker processes) in {stack_dir} ...")
    handle = start_stack(config, say=_say)
    try:
        yield handle
    finally:
        _say("stopping the local stack ...")
        stop_stack(handle, say=_say)
        for name, copy_as in ((WORKERS, "workers.log"), (PULL_WORKERS, "pull-workers.log")):
            log = handle.processes[name].log_path if name in handle.processes else None
            for folder in keep_logs_in:
                if log is not None and log.exists() and folder.is_dir():
                    shutil.copyfile(log, folder / copy_as)
        shutil.rmtree(stack_dir, ignore_errors=True)


def cmd_run(args: argparse.Namespace) -> int:
    from loadtest.runner import execute, plan_run

    plan = plan_run(_scenario(args), args.host, args.out, processes=args.processes, server=args.server)
    data = execute(plan, say=_say, label=args.label)
    _say(f"report: {plan.run_dir / 'report.md'}  ({data.totals.ok_per_s:.1f} good answers/s, "
         f"{data.totals.requests} requests, {data.totals.failure_percent:.1f} % failures)")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    from loadtest.report import goodput_ratios, markdown_table, write_report
    from loadtest.runner import execute, plan_run, run_dir_name

    scenario = _scenario(args)
    workers = args.workers or scenario.deploy.workers or 2
    started = dt.datetime.now(dt.UTC)
    runs = []
    if args.baseline:  # first, alone on the machine: the baseline server, then the stack (never both at once)
        runs.append(run_baseline(scenario, args))
    keep: list[Path] = []
    with own_stack(workers, worker_env(scenario.deploy), keep) as handle:
        plan = plan_run(scenario, handle.settings.worker_url, args.out, processes=args.processes)
        keep.append(plan.run_dir)
        label = f"{args.label}: our /predict" if args.label and args.baseline else args.label
        if args.baseline and not label:
            label = f"our /predict, {workers} worker processes"
        runs.append(execute(plan, say=_say, label=label))
    chart = plan.run_dir / "report.png"
    if len(runs) > 1:
        out = args.out / run_dir_name(f"compare-{scenario.name}", started)
        command = "python -m loadtest " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
        report, chart = write_report(runs, out, command=command)
        _say(f"comparison: {report} and {chart}")
    if args.chart:
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(chart, args.chart)
        _say(f"chart copied to {args.chart}")
    print(markdown_table(runs), end="")
    ratios = goodput_ratios(runs)
    if ratios:
        print(ratios)
    for data in runs:
        _say(f"run folder: {data.run_dir}  ({data.totals.ok_per_s:.1f} good answers/s, {data.totals.requests} "
             f"requests, {data.totals.failure_percent:.1f} % failures)")
    return 0


def run_baseline(scenario: Any, args: argparse.Namespace) -> Any:
    """The scenario against the baseline server (started on a free port, stopped after); the run's data."""
    from loadtest.baseline import baseline_server
    from loadtest.runner import execute, plan_run

    with tempfile.TemporaryDirectory(prefix="loadtest-baseline-") as tmp:
        log = Path(tmp) / "baseline.log"
        plan = None
        try:
            with baseline_server(log, say=_say) as url:
                plan = plan_run(scenario, url, args.out, processes=args.processes, server="baseline")
                label = f"{args.label}: baseline" if args.label else "baseline: FastAPI, 1 Uvicorn worker"
                return execute(plan, say=_say, label=label)
        finally:  # the server has stopped: its whole log goes into the run folder
            if plan is not None and plan.run_dir.is_dir() and log.exists():
                shutil.copyfile(log, plan.run_dir / "baseline.log")


def cmd_baseline(args: argparse.Namespace) -> int:
    from loadtest.baseline import serve

    return serve(args.host, args.port, args.pipeline, say=_say)


def cmd_report(args: argparse.Namespace) -> int:
    from loadtest.report import write_report
    from loadtest.results import load_run

    runs = [load_run(path) for path in args.runs]
    out = args.out or (args.runs[0] if len(args.runs) == 1 else
                       Path("runs") / f"compare-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}")
    command = "python -m loadtest " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    report, chart = write_report(runs, out, command=command, chart_name=args.chart_name)
    print(report.read_text(), end="")
    _say(f"wrote {report} and {chart}")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    from framecontract.settings import load_settings
    from loadtest.checks import load_image
    from loadtest.pipeline import PipelinePlan, run_pipeline
    from loadtest.runner import run_dir_name

    now = dt.datetime.now(dt.UTC)
    plan = PipelinePlan(rate_fps=args.rate, duration_s=args.duration, image=load_image(args.image),
                        run_dir=args.out / run_dir_name(f"pipeline-{args.rate:g}fps", now), drain_timeout_s=args.drain)
    if args.use_stack:
        settings = load_settings()
        if not settings.pubsub_emulator_host or not settings.storage_emulator_host:
            raise ScenarioError("--use-stack needs a local stack (python -m deploy.local up); none is configured")
        run_pipeline(settings, plan, say=_say, label=args.label)
        return 0
    with own_stack(args.workers, {}, [plan.run_dir], mode="pull") as handle:
        run_pipeline(handle.settings, plan, say=_say, label=args.label)
    _say(f"run folder: {plan.run_dir}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    specs = args.scenarios or sorted(str(p) for p in SCENARIO_DIR.glob("*.yml"))
    bad = 0
    for spec in specs:
        try:
            scenario = load_scenario(spec)
        except ScenarioError as exc:
            bad += 1
            print(exc, file=sys.stderr)
            continue
        print(f"ok  {scenario.name}: {scenario.load.users} users ({scenario.load.client} client), "
              f"{scenario.load.duration_s} s, "
              f"{scenario.deploy.target} {shlex.join(gcp_flags(scenario.deploy))}")
    return 1 if bad else 0


def cmd_flags(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    print(shlex.join(gcp_flags(scenario.deploy)))
    for key, value in worker_env(scenario.deploy).items():
        print(f"# worker env: {key}={value}", file=sys.stderr)
    return 0


COMMANDS = {"run": cmd_run, "local": cmd_local, "report": cmd_report, "pipeline": cmd_pipeline,
            "validate": cmd_validate, "flags": cmd_flags, "baseline": cmd_baseline, **PLANNER_COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    try:
        return COMMANDS[args.command](args)
    except (ScenarioError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
