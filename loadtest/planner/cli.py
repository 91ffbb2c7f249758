"""The planner's subcommands of ``python -m loadtest``: plan, simulate, reproduce, calibrate.

Usage::

    python -m loadtest plan --cameras 40 --fps 5 [--slo-p95 2s] [--cpu 1 2 4] [--concurrency 4 8] [--mode push pull]
                            [--min-instances 0 5] [--max-instances 100] [--sweep] [--chart plan.png] [--set RULE=VALUE]
    python -m loadtest plan --rules                          # every constant of the model with its source
    python -m loadtest simulate study-1cpu-concurrency-30 [--server baseline --service-ms 170]
    python -m loadtest reproduce [--own | --study]           # the validation tables of docs/planner.md
    python -m loadtest calibrate RUN... [--validate RUN...] [--delivery-from RUN] [--startup] [--out PROFILE]

``add_commands(subparsers)`` registers them; :data:`COMMANDS` maps each name to its handler.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from loadtest.planner.profile import DEFAULT_PROFILE, Profile, load_profile, provenance_line
from loadtest.planner.rules import PRICES_CHECKED, Rules, changed, rules_table, with_overrides

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
CLOUD_RUN_CPUS = (1, 2, 4, 6, 8)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_seconds(flag: str, text: str) -> float:
    """``2s``, ``500ms``, ``1.5``, ``2m``, ``1h`` → seconds; ValueError naming the flag otherwise.

    >>> parse_seconds("--slo-p95", "500ms"), parse_seconds("--slo-p95", "2")
    (0.5, 2.0)
    """
    match = DURATION.match(text)
    if not match or float(match[1]) <= 0:
        raise ValueError(f"{flag} {text!r}: expected a positive duration like 2s, 500ms or 1.5")
    factor = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[match[2]]
    return float(match[1]) * factor


def _rules(args: argparse.Namespace) -> Rules:
    return with_overrides(Rules(), args.set or [])


def _profile(args: argparse.Namespace) -> Profile:
    return load_profile(args.profile)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", type=Path, default=None,
                        help="calibration profile (default loadtest/planner/profiles/local-2core.json)")
    parser.add_argument("--set", action="append", metavar="RULE=VALUE",
                        help="override one of the model's constants (plan --rules lists them); repeatable")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1): same seed, same result")


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    plan = sub.add_parser("plan", help="simulate Cloud Run settings for N cameras; the cheapest meeting a p95 target")
    plan.add_argument("--cameras", type=int, help="cameras (each sends --fps frames/s)")
    plan.add_argument("--fps", type=float, help="frames per second per camera")
    plan.add_argument("--slo-p95", "--latency-p95", dest="slo_p95", metavar="S",
                      help="p95 capture-to-result target, e.g. 2s or 500ms (default: none, every frame done)")
    plan.add_argument("--mode", nargs="+", choices=("push", "pull"), default=["push", "pull"])
    plan.add_argument("--cpu", nargs="+", type=int, default=[1, 2, 4], help="vCPUs per instance to consider")
    plan.add_argument("--concurrency", nargs="+", type=int,
                      help="push: concurrency values to consider (default: 1, 2, 4, 8 per process)")
    plan.add_argument("--min-instances", nargs="+", type=int, default=[0], help="push: min instances to consider")
    plan.add_argument("--max-instances", type=int, default=100, help="push: max instances (default 100)")
    plan.add_argument("--no-cpu-boost", dest="cpu_boost", action="store_false", help="push: without startup boost")
    plan.add_argument("--duration", default="600s", help="simulated time (default 600s)")
    plan.add_argument("--warmup", default="60s", help="first part not measured: cold start (default 60s)")
    plan.add_argument("--frame-bytes", type=int, help="JPEG bytes per frame (default: the profile's measured image)")
    plan.add_argument("--sweep", action="store_true", help="show every candidate, not the best per mode and CPU")
    plan.add_argument("--chart", type=Path, default=Path("plan.png"), help="PNG to write (default plan.png)")
    plan.add_argument("--rules", action="store_true", help="print every rule with its value and source, and exit")
    _common(plan)

    simulate = sub.add_parser("simulate", help="a scenario of loadtest/scenarios/ in the model, beside the study")
    simulate.add_argument("scenario", help="scenario name or YAML path")
    simulate.add_argument("--server", choices=("worker", "baseline"), default="worker",
                          help="our worker (default) or the study's design (one process, no admission)")
    simulate.add_argument("--service-ms", type=float,
                          help="mean per-request service time in ms (keeps the measured shape; e.g. the study's)")
    simulate.add_argument("--users", type=int, help="override load.users")
    simulate.add_argument("--duration", type=int, help="override load.duration_s")
    simulate.add_argument("--chart", type=Path, help="also write instances/latency over time (PNG)")
    _common(simulate)

    reproduce = sub.add_parser("reproduce", help="the model against our own runs and the study's table")
    group = reproduce.add_mutually_exclusive_group()
    group.add_argument("--own", action="store_true", help="only our own runs")
    group.add_argument("--study", action="store_true", help="only the study's table")
    _common(reproduce)

    calibrate = sub.add_parser("calibrate", help="record measured service times, startup and memory into a profile")
    calibrate.add_argument("runs", nargs="*", type=Path, help="run folders to calibrate from")
    calibrate.add_argument("--validate", nargs="+", type=Path, default=[],
                           help="run folders kept for `reproduce` to predict (never used by the model)")
    calibrate.add_argument("--delivery-from", type=Path, help="a light pipeline run: the emulator's delivery time")
    calibrate.add_argument("--startup", action="store_true", help="measure startup and memory (a few s per run)")
    calibrate.add_argument("--repeats", type=int, default=3, help="startup runs per core count (default 3)")
    calibrate.add_argument("--cores", type=int, help="cores of the machine the runs were made on (default: this one)")
    calibrate.add_argument("--out", type=Path, default=DEFAULT_PROFILE, help="profile to write")


# ------------------------------------------------------------------ plan


def plan_request(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from loadtest.planner.plan import PlanRequest

    if args.cameras is None or args.fps is None:
        raise ValueError("plan needs --cameras and --fps (or --rules)")
    if args.cameras < 1:
        raise ValueError(f"--cameras {args.cameras}: must be at least 1")
    if not 0 < args.fps <= 120:
        raise ValueError(f"--fps {args.fps:g}: must be > 0 and <= 120")
    for cpu in args.cpu:
        if cpu not in CLOUD_RUN_CPUS:
            raise ValueError(f"--cpu {cpu}: Cloud Run instances have 1, 2, 4, 6 or 8 vCPUs")
    for concurrency in args.concurrency or ():
        if not 1 <= concurrency <= 1000:
            raise ValueError(f"--concurrency {concurrency}: must be 1..1000 (Cloud Run's limit)")
    if not 1 <= args.max_instances <= 1000:
        raise ValueError(f"--max-instances {args.max_instances}: must be 1..1000")
    for minimum in args.min_instances:
        if not 0 <= minimum <= args.max_instances:
            raise ValueError(f"--min-instances {minimum}: must be 0..--max-instances ({args.max_instances})")
    duration = parse_seconds("--duration", args.duration)
    warmup = parse_seconds("--warmup", args.warmup) if args.warmup not in ("0", "0s") else 0.0
    if warmup >= duration:
        raise ValueError(f"--warmup {args.warmup}: must be shorter than --duration {args.duration}")
    if args.frame_bytes is not None and args.frame_bytes < 1:
        raise ValueError(f"--frame-bytes {args.frame_bytes}: must be at least 1")
    slo = parse_seconds("--slo-p95", args.slo_p95) if args.slo_p95 else None
    return PlanRequest(
        cameras=args.cameras, fps=args.fps, slo_p95_s=slo,
        modes=tuple(dict.fromkeys(args.mode)), cpus=tuple(dict.fromkeys(args.cpu)),
        concurrency=tuple(dict.fromkeys(args.concurrency)) if args.concurrency else None,
        min_instances=tuple(dict.fromkeys(args.min_instances)), max_instances=args.max_instances,
        cpu_boost=args.cpu_boost, duration_s=duration, warmup_s=warmup, seed=args.seed,
        frame_bytes=args.frame_bytes, rules=_rules(args))


def rules_line(rules: Rules) -> str:
    overrides = changed(rules)
    text = ", ".join(f"{k}={v:g}" for k, v in overrides.items()) if overrides else "none"
    return f"rules: docs/planner.md (plan --rules); prices: field.md, checked {PRICES_CHECKED} (tier 1, USD); " \
           f"overridden: {text}"


def cmd_plan(args: argparse.Namespace) -> int:
    if args.rules:
        print(rules_table(_rules(args)), end="")
        return 0
    from loadtest.planner.chart import plot_plan
    from loadtest.planner.plan import describe, make_plan, plan_table, timeline_table

    request = plan_request(args)
    profile = _profile(args)
    scale = request.scale
    print(f"plan: {request.cameras} cameras x {request.fps:g} frames/s = {request.rate:g} frames/s"
          + (f", p95 target {request.slo_p95_s:g} s" if request.slo_p95_s else ", no latency target")
          + f"; {request.duration_s:g} s simulated, the first {request.warmup_s:g} s not measured; seed {request.seed}")
    if scale > 1:
        print(f"scale: {request.rate * request.duration_s:,.0f} frames exceed the {request.max_frames:,}-frame budget "
              f"of one simulation: each simulates {request.cameras / scale:.0f} cameras and 1/{scale:.1f} of min/max "
              "instances, and multiplies back (instances are interchangeable)")
    _say("simulating ...")
    outcome = make_plan(request, profile, say=_say)
    for entry in outcome.entries.values():
        print(provenance_line(profile, entry))
    print(rules_line(request.rules))
    print()
    print(plan_table(outcome.rows, outcome.best, args.sweep), end="")
    print()
    if outcome.best is None:
        print("no candidate meets the target: allow more instances (--max-instances), more CPUs, or a looser --slo-p95")
    else:
        best = outcome.best
        result = outcome.results[best.candidate]
        print(f"★ cheapest meeting the target: {describe(best.candidate)}, {best.billing}-based billing: "
              f"p95 {best.p95_s:.2f} s, ${best.cost_per_h:.3f}/hour (Cloud Run ${best.run_cost_per_h:.3f} + Pub/Sub "
              f"and writes ${best.messaging_cost_per_h:.3f}), ${best.cost_per_1000:.4f} per 1,000 frames; "
              f"{best.redeliveries} redeliveries, {best.dead_lettered} dead letters")
        print("  python -m deploy.gcp up --project P --region R " + shlex.join(best.flags))
        print()
        print(timeline_table(result), end="")
    chart = plot_plan(outcome, request, args.chart)
    print(f"\nchart: {chart}")
    return 0


# ------------------------------------------------------------------ calibrate


def cmd_calibrate(args: argparse.Namespace) -> int:
    from loadtest.planner.calibrate import calibrate, measure_http_rtt, measure_startup
    from loadtest.planner.profile import ProfileError, save_profile

    if not args.runs and not args.startup:
        raise ValueError("calibrate needs run folders and/or --startup")
    previous = None
    if args.out.exists():
        try:
            previous = load_profile(args.out)
        except ProfileError:
            previous = None
    startup = measure_startup(repeats=args.repeats, say=_say) if args.startup else []
    rtt = measure_http_rtt() if args.startup else None
    command = "python -m loadtest " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    runs = args.runs or ([Path(e.id) for e in previous.entries if e.role == "calibration"] if previous else [])
    profile = calibrate([_run_path(p) for p in runs], startup, command, cores=args.cores, previous=previous,
                        validation_dirs=[_run_path(p) for p in args.validate], delivery_run=args.delivery_from,
                        http_rtt_s=rtt)
    save_profile(profile, args.out)
    for entry in profile.entries:
        print(f"{entry.role}: {entry.describe()}")
    print(provenance_line(load_profile(args.out)))
    written = args.out.resolve()
    print(f"wrote {written.relative_to(Path.cwd()) if written.is_relative_to(Path.cwd()) else written}")
    return 0


def _run_path(path: Path) -> Path:
    return path if path.is_dir() or path.parent != Path(".") else Path("runs") / path


def cmd_simulate(args: argparse.Namespace) -> int:
    from loadtest.planner.scenarios import run_scenario

    return run_scenario(args, _profile(args), _rules(args))


def cmd_reproduce(args: argparse.Namespace) -> int:
    from loadtest.planner.reproduce import run_reproduce

    return run_reproduce(args, _profile(args), _rules(args))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "plan": cmd_plan, "simulate": cmd_simulate, "reproduce": cmd_reproduce, "calibrate": cmd_calibrate}
