"""``python -m loadtest run``: Locust headless with CSV output, CPU sampling, a run folder.

Usage::

    plan = plan_run(load_scenario("study-autoscaling"), "https://svc.run.app", Path("runs"))   # pure
    plan = plan_run(scenario, "http://127.0.0.1:8000", Path("runs"), server="baseline")       # the baseline
    plan.command          # [python, -m, locust, -f, .../locustfile.py, --headless, ...]
    data = execute(plan)  # runs it (bounded in time), writes run.json, report.md, report.png

The run folder ``<out>/<scenario>-<UTC time>/`` (``<scenario>-baseline-<UTC time>`` against the baseline)
holds ``run.json`` (scenario, server, host, command, the deploy flags and worker environment the
scenario needs, start/end, exit code, the client verdict),
``scenario.yml``, Locust's ``locust_stats*.csv`` / ``locust_failures.csv`` / ``locust.log``,
``cpu.csv`` (the load generator's CPU, one row a second) and the report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from loadtest.checks import SERVERS
from loadtest.cpu import CpuSampler, judge_client, write_cpu_csv
from loadtest.results import CSV_PREFIX, RunData, load_run, read_csv_rows
from loadtest.scenario import Scenario, gcp_flags, worker_env

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
STOP_TIMEOUT_S = 10
"""Seconds users get to finish their request when the run time is up."""
GRACE_S = 60
"""On top of run time and stop timeout, before the Locust process group is killed."""
USERS_PER_PROCESS = 100
"""``processes: auto`` starts one Locust process per this many users (up to the cores), for a remote host."""

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunPlan:
    """What ``execute`` will do; everything decided before anything runs."""

    scenario: Scenario
    host: str
    run_dir: Path
    processes: int
    processes_reason: str
    command: list[str]
    timeout_s: float
    server: str = "worker"
    """What answers: ``worker`` (our /predict) or ``baseline`` (``python -m loadtest baseline``)."""


def is_loopback(host: str) -> bool:
    """True when ``host`` (a URL) points at this machine."""
    name = urlparse(host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_processes(setting: int | str, host: str, users: int, cpu_count: int) -> tuple[int, str]:
    """(number of Locust processes, why). ``auto``: 1 against this machine (more client processes only
    take cores from the server under test), else one per 100 users up to the number of cores."""
    if setting != "auto":
        return int(setting), "set by the scenario or --processes"
    if is_loopback(host):
        return 1, "auto: the target is on this machine, so extra client processes would take its cores"
    wanted = max(1, min(cpu_count, -(-users // USERS_PER_PROCESS)))
    return wanted, f"auto: one per {USERS_PER_PROCESS} users, at most {cpu_count} (cores)"


def run_dir_name(scenario_name: str, when: dt.datetime) -> str:
    return f"{scenario_name}-{when.strftime('%Y%m%dT%H%M%SZ')}"


def plan_run(scenario: Scenario, host: str, out: Path, processes: int | None = None,
             cpu_count: int | None = None, now: dt.datetime | None = None, python: str = sys.executable,
             server: str = "worker") -> RunPlan:
    """Pure: the run folder, the Locust command and its time bound. ``server`` is what answers at
    ``host``: ``worker`` (our /predict) or ``baseline`` (its answers store nothing)."""
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    parsed = urlparse(host)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"--host must be an http(s) URL like http://127.0.0.1:8080, got {host!r}")
    load = scenario.load
    count, why = resolve_processes(processes if processes is not None else load.processes, host, load.users,
                                   cpu_count or os.cpu_count() or 1)
    stem = scenario.name if server == "worker" else f"{scenario.name}-{server}"
    run_dir = out / run_dir_name(stem, now or dt.datetime.now(dt.UTC))
    command = [
        python, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", host.rstrip("/"), "--users", str(load.users), "--spawn-rate", f"{load.spawn_rate:g}",
        "--run-time", f"{load.duration_s}s", "--stop-timeout", str(STOP_TIMEOUT_S),
        "--csv", str(run_dir / CSV_PREFIX), "--csv-full-history", "--exit-code-on-error", "0",
        "--logfile", str(run_dir / "locust.log"), "--loglevel", "INFO", "--only-summary",
        "--image", load.image, "--fps", f"{load.fps:g}", "--client", load.client, "--server", server,
    ]
    if count > 1:
        command += ["--processes", str(count)]
    timeout = load.duration_s + STOP_TIMEOUT_S + GRACE_S
    return RunPlan(scenario, host.rstrip("/"), run_dir, count, why, command, float(timeout), server)


def _utc_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _progress(run_dir: Path, say: Say) -> None:
    rows = [r for r in read_csv_rows(run_dir / f"{CSV_PREFIX}_stats_history.csv") if r["Name"] == "Aggregated"]
    if rows:
        last = rows[-1]
        say(f"  users {last['User Count']:>5}  req/s {float(last['Requests/s']):7.1f}  "
            f"failures/s {float(last['Failures/s']):7.1f}  p95 {last['95%']} ms")


def execute(plan: RunPlan, say: Say = print, label: str | None = None, report: bool = True) -> RunData:
    """Run Locust (own process group, killed if it outlives ``plan.timeout_s``), sample its CPU, write the
    run folder; return the run's data. Raises ``RuntimeError`` if Locust failed to produce results."""
    from loadtest.report import write_report

    plan.run_dir.mkdir(parents=True, exist_ok=False)
    if Path(plan.scenario.source).is_file():
        shutil.copyfile(plan.scenario.source, plan.run_dir / "scenario.yml")
    say(f"run folder {plan.run_dir}")
    load = plan.scenario.load
    say(f"locust: {load.users} users ({load.client} client), spawn {load.spawn_rate:g}/s, {load.duration_s} s "
        f"against the {plan.server} at {plan.host}; "
        f"{plan.processes} process(es) ({plan.processes_reason})")
    started_at, started = _utc_iso(), time.monotonic()
    with (plan.run_dir / "locust.out").open("wb") as out:
        proc = subprocess.Popen(plan.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sampler = CpuSampler(proc.pid).start()
        timed_out = False
        try:
            while proc.poll() is None:
                if time.monotonic() - started > plan.timeout_s:
                    timed_out = True
                    say(f"locust still running after {plan.timeout_s:.0f} s: stopping its process group")
                    _stop_group(proc)
                    break
                time.sleep(1)
                if int(time.monotonic() - started) % 10 == 0:
                    _progress(plan.run_dir, say)
        except BaseException:
            _stop_group(proc)
            raise
        finally:
            samples = sampler.stop()
    write_cpu_csv(samples, plan.run_dir / "cpu.csv")
    verdict = judge_client(samples, plan.processes)
    meta = {
        "kind": "http", "label": label or plan.run_dir.name, "scenario": dataclasses.asdict(plan.scenario),
        "load": dataclasses.asdict(plan.scenario.load), "server": plan.server, "host": plan.host,
        "command": plan.command,
        "processes": plan.processes, "processes_reason": plan.processes_reason,
        "deploy_flags": gcp_flags(plan.scenario.deploy), "worker_env": worker_env(plan.scenario.deploy),
        "started_at": started_at, "ended_at": _utc_iso(), "exit_code": proc.returncode, "timed_out": timed_out,
        "client": dataclasses.asdict(verdict), "cpu_count": os.cpu_count(),
    }
    (plan.run_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    if proc.returncode != 0 and not (plan.run_dir / f"{CSV_PREFIX}_stats.csv").exists():
        tail = (plan.run_dir / "locust.out").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"locust exited with {proc.returncode} and wrote no results; its output ends:\n{tail}")
    data = load_run(plan.run_dir)
    if report:
        write_report([data], plan.run_dir, command=" ".join(plan.command))
    if verdict.client_bound or verdict.host_saturated:
        say(f"warning: {verdict.reason}")
    return data


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT, then SIGKILL, to the process group we started (Locust and its worker processes)."""
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
