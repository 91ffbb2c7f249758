"""The planner: simulate each candidate setting for N cameras at F frames/s, cost it, pick the cheapest that meets
the latency target.

Usage::

    request = PlanRequest(cameras=40, fps=5, slo_p95_s=2.0)
    outcome = make_plan(request, load_profile(), say=print)     # simulates every candidate (seconds each)
    print(plan_table(outcome.rows, request, sweep=False))       # best row per mode and CPU; sweep=True: all
    outcome.best.flags                                          # python -m deploy.gcp flags, as printed

Candidates: **push** (a Cloud Run service behind a push subscription) for every ``--cpu`` and
``--concurrency`` (default: 1, 2, 4 and 8 requests per process) and ``--min-instances``; each push
simulation is priced twice, with request-based billing (``--cpu-throttling``, deploy.gcp's default)
and instance-based billing (``--no-cpu-throttling``). **pull** (a worker pool) for every ``--cpu``: the
smallest instance count that meets the target, found by simulating counts upward from the count the
measured service time says is needed at 100 % busy. Memory is the smallest of 512Mi, 1Gi, 2Gi,
4Gi ... that Cloud Run allows for the CPU and that holds one measured worker process per vCPU.

A candidate **meets the target** when nothing failed (no dead letters, every frame done by the end of
the drain), its p95 capture-to-result latency is within ``--slo-p95`` and it never sat at
``--max-instances``. Cost = Cloud Run (by its billing) + Pub/Sub (publish and every delivery) + the
result writes (GCS Class A), over the measured part of the run, per hour and per 1,000 frames.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deploy.gcp.options import DeployOptions, OptionsError, validate_cpu_memory
from framecontract.message import FrameAttributes
from loadtest.planner import policies
from loadtest.planner.config import CloudRun, OpenLoop, Server, SimConfig, SimResult, WorkerPool
from loadtest.planner.model import simulate
from loadtest.planner.profile import Profile, ServiceEntry
from loadtest.planner.rules import Rules
from worker.pull import DEFAULT_MAX_HELD

Say = Callable[[str], None]
MEMORY_CHOICES = ("512Mi", "1Gi", "2Gi", "4Gi", "8Gi", "16Gi", "32Gi")
PER_PROCESS_CONCURRENCY = (1, 2, 4, 8)
MAX_FRAMES = 1_000_000
"""Frames one simulation may hold; above it the model simulates 1/scale of the cameras (config.scale)."""
POOL_SEARCH_LIMIT = 12
"""Pool sizes simulated at most per CPU while looking for the smallest that meets the target."""


@dataclass(frozen=True)
class PlanRequest:
    """What the user asked: the load, the target, and which settings to consider."""

    cameras: int
    fps: float
    slo_p95_s: float | None = None
    modes: tuple[str, ...] = ("push", "pull")
    cpus: tuple[int, ...] = (1, 2, 4)
    concurrency: tuple[int, ...] | None = None
    min_instances: tuple[int, ...] = (0,)
    max_instances: int = 100
    cpu_boost: bool = True
    duration_s: float = 600.0
    warmup_s: float = 60.0
    seed: int = 1
    frame_bytes: int | None = None
    max_frames: int = MAX_FRAMES
    rules: Rules = field(default_factory=Rules)

    @property
    def rate(self) -> float:
        return self.cameras * self.fps

    @property
    def scale(self) -> float:
        """1 when the whole run fits the frame budget; else cameras / simulated cameras."""
        frames = self.rate * self.duration_s
        if frames <= self.max_frames:
            return 1.0
        simulated = max(1, round(self.cameras * self.max_frames / frames))
        return self.cameras / simulated


@dataclass(frozen=True)
class Candidate:
    """One setting to simulate; ``flags`` are ``python -m deploy.gcp up``'s."""

    mode: str
    cpu: int
    memory: str
    concurrency: int | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    instances: int | None = None
    cpu_boost: bool = True

    @property
    def memory_gib(self) -> float:
        number, unit = int(self.memory[:-2]), self.memory[-2:]
        return number / 1024 if unit == "Mi" else float(number)

    def options(self, billing: str = "request") -> DeployOptions:
        common = {"project": "planner-check", "region": "europe-west1", "mode": self.mode, "cpu": str(self.cpu),
                  "memory": self.memory}
        if self.mode == "pull":
            return DeployOptions(**common, instances=self.instances)  # type: ignore[arg-type]
        return DeployOptions(**common, concurrency=self.concurrency or 1, min_instances=self.min_instances or 0,
                             max_instances=self.max_instances or 1, cpu_boost=self.cpu_boost,
                             cpu_throttling=billing == "request")  # type: ignore[arg-type]

    def flags(self, billing: str = "request") -> list[str]:
        """The ``python -m deploy.gcp up`` flags of this setting (``--project``/``--region`` left to the user)."""
        if self.mode == "pull":
            return ["--mode", "pull", "--cpu", str(self.cpu), "--memory", self.memory, "--instances",
                    str(self.instances)]
        return ["--mode", "push", "--cpu", str(self.cpu), "--memory", self.memory, "--concurrency",
                str(self.concurrency), "--min-instances", str(self.min_instances), "--max-instances",
                str(self.max_instances), "--cpu-boost" if self.cpu_boost else "--no-cpu-boost",
                "--cpu-throttling" if billing == "request" else "--no-cpu-throttling"]


@dataclass(frozen=True)
class Row:
    """A simulated candidate with one billing, its figures and its cost."""

    candidate: Candidate
    billing: str
    mean_instances: float
    peak_instances: float
    p50_s: float
    p95_s: float
    failures: int
    redeliveries: int
    dead_lettered: int
    frames: int
    run_cost_per_h: float
    messaging_cost_per_h: float
    cost_per_1000: float
    meets: bool
    notes: tuple[str, ...] = ()
    busy: float = 0.0
    """Share of the worker processes' time spent in the pipeline, at the measured service time."""

    @property
    def cost_per_h(self) -> float:
        return self.run_cost_per_h + self.messaging_cost_per_h

    @property
    def flags(self) -> list[str]:
        return self.candidate.flags(self.billing)


@dataclass
class PlanOutcome:
    """Every row, the cheapest that meets the target (if any), and the simulations behind the rows."""

    rows: list[Row]
    best: Row | None
    results: dict[Candidate, SimResult]
    entries: dict[str, ServiceEntry]


# ------------------------------------------------------------------ pieces (pure)


def memory_for(cpu: int, processes: int, peak_rss_mib: float) -> str:
    """The smallest of :data:`MEMORY_CHOICES` Cloud Run allows for ``cpu`` that holds ``processes`` x peak RSS.

    >>> memory_for(1, 1, 280.0), memory_for(4, 4, 280.0)
    ('512Mi', '2Gi')
    """
    for memory in MEMORY_CHOICES:
        mib = int(memory[:-2]) * (1024 if memory.endswith("Gi") else 1)
        if mib < processes * peak_rss_mib:
            continue
        try:
            validate_cpu_memory(DeployOptions(project="planner-check", region="europe-west1", cpu=str(cpu),
                                              memory=memory))
        except OptionsError:
            continue
        return memory
    raise ValueError(f"no Cloud Run memory size holds {processes} x {peak_rss_mib:.0f} MiB at {cpu} vCPU")


def message_bytes(frame_bytes: int) -> int:
    """A frame message's billed size: the JPEG plus its attributes as the contract writes them."""
    attributes = FrameAttributes("cam-00-20261201t000000-abcd", 1_000_000, 1_796_141_707_065_603, 1920, 1080)
    return frame_bytes + sum(len(k) + len(v) for k, v in attributes.to_pubsub().items())


def startup_for(profile: Profile, cpu: int, boost: bool, delay_s: float, rules: Rules) -> float:
    """An instance's start: the profile's measured start at the (boosted) CPU count, plus the rules' overhead."""
    return policies.startup_s(profile.startup_s(policies.startup_cpus(cpu, boost, rules)), delay_s, rules)


def costs(result: SimResult, candidate: Candidate, billing: str, frame_bytes: int, rules: Rules
          ) -> tuple[float, float, float]:
    """(Cloud Run $/h, Pub/Sub + GCS $/h, total $ per 1,000 frames) over the measured part of ``result``."""
    b = result.billing
    if billing == "request":
        run = policies.request_based_cost(b.active_s, b.idle_min_s, b.requests, candidate.cpu, candidate.memory_gib,
                                          rules)
    else:
        run = policies.instance_based_cost(b.instance_s, candidate.cpu, candidate.memory_gib, rules)
    messaging = (policies.pubsub_cost(b.frames, b.deliveries, message_bytes(frame_bytes), rules)
                 + policies.storage_write_cost(round(b.writes * rules.gcs_writes_per_frame), rules))
    hours = b.seconds / 3600
    per_1000 = (run + messaging) / b.frames * 1000 if b.frames else math.nan
    return run / hours, messaging / hours, per_1000


def summarise(result: SimResult, candidate: Candidate, billing: str, request: PlanRequest, frame_bytes: int,
              service_s: float = 0.0) -> Row:
    measured = [s for s in result.timeline if s.t_s > request.warmup_s] or result.timeline
    mean_instances = statistics.fmean(s.instances for s in measured) if measured else 0.0
    busy = request.rate * service_s / (mean_instances * candidate.cpu) if mean_instances else math.nan
    failures = result.dead_lettered + result.unfinished
    p50, p95 = result.frame_latency_s(0.5), result.frame_latency_s(0.95)
    notes = []
    at_max = candidate.mode == "push" and result.peak_instances >= (candidate.max_instances or 0)
    if at_max:
        notes.append("reached max instances")
    if result.unfinished:
        notes.append(f"{result.unfinished} frames unfinished: backlog grows")
    if result.dead_lettered:
        notes.append(f"{result.dead_lettered} dead-lettered")
    meets = failures == 0 and not at_max and math.isfinite(p95) and (
        request.slo_p95_s is None or p95 <= request.slo_p95_s)
    run_h, msg_h, per_1000 = costs(result, candidate, billing, frame_bytes, request.rules)
    return Row(candidate, billing, mean_instances, result.peak_instances, p50, p95, failures, result.redeliveries,
               result.dead_lettered, result.measured_frames, run_h, msg_h, per_1000, meets, tuple(notes), busy)


# ------------------------------------------------------------------ simulation of candidates


def candidate_config(request: PlanRequest, candidate: Candidate, entry: ServiceEntry, profile: Profile) -> SimConfig:
    options = candidate.options()
    load = OpenLoop(request.cameras, request.fps)
    common = {"duration_s": request.duration_s, "warmup_s": request.warmup_s, "seed": request.seed,
              "rules": request.rules, "scale": request.scale}
    if candidate.mode == "pull":
        server = Server.worker(entry, budget_s=options.frame_budget_s, max_held=DEFAULT_MAX_HELD)
        return SimConfig(load=load, delivery="pull", target=WorkerPool(candidate.cpu, candidate.memory_gib,
                                                                       candidate.instances or 1),
                         server=server, ack_deadline_s=options.ack_deadline_s, **common)
    server = Server.worker(entry, budget_s=options.frame_budget_s, max_held=options.in_flight_per_process)
    target = CloudRun(candidate.cpu, candidate.memory_gib, candidate.concurrency or 1, candidate.min_instances or 0,
                      candidate.max_instances or 1, cpu_boost=candidate.cpu_boost)
    return SimConfig(load=load, delivery="push", target=target, server=server,
                     startup_s=startup_for(profile, candidate.cpu, candidate.cpu_boost, 0.0, request.rules),
                     ack_deadline_s=options.ack_deadline_s, retry_min_s=options.min_retry_delay,
                     retry_max_s=options.max_retry_delay, max_delivery_attempts=options.max_delivery_attempts,
                     **common)


def push_candidates(request: PlanRequest, profile: Profile) -> list[Candidate]:
    out = []
    for cpu in request.cpus:
        memory = memory_for(cpu, cpu, profile.peak_rss_mib)
        concurrencies = request.concurrency or tuple(cpu * n for n in PER_PROCESS_CONCURRENCY)
        for concurrency in concurrencies:
            for minimum in request.min_instances:
                out.append(Candidate("push", cpu, memory, concurrency=concurrency, min_instances=minimum,
                                     max_instances=request.max_instances, cpu_boost=request.cpu_boost))
    return out


def make_plan(request: PlanRequest, profile: Profile, say: Say = print) -> PlanOutcome:
    """Simulate every candidate (see the module docstring); rows sorted by cost per hour."""
    rows: list[Row] = []
    results: dict[Candidate, SimResult] = {}
    entries: dict[str, ServiceEntry] = {}

    def run(candidate: Candidate, billings: Sequence[str]) -> list[Row]:
        options = candidate.options()
        per_process = DEFAULT_MAX_HELD if candidate.mode == "pull" else options.in_flight_per_process
        entry = profile.service("frame", per_process)
        entries[entry.id] = entry
        frame_bytes = request.frame_bytes or entry.image_bytes
        result = simulate(candidate_config(request, candidate, entry, profile))
        results[candidate] = result
        service_s = entry.lock.mean_s * request.rules.service_time_factor
        made = [summarise(result, candidate, billing, request, frame_bytes, service_s) for billing in billings]
        rows.extend(made)
        say(f"  {describe(candidate)}: p95 {seconds(made[0].p95_s)}, {made[0].mean_instances:.1f} instances, "
            f"{'meets' if made[0].meets else 'misses'} the target")
        return made

    if "push" in request.modes:
        for candidate in push_candidates(request, profile):
            run(candidate, ("request", "instance"))
    if "pull" in request.modes:
        for cpu in request.cpus:
            memory = memory_for(cpu, cpu, profile.peak_rss_mib)
            entry = profile.service("frame", DEFAULT_MAX_HELD)
            per_instance = cpu / (entry.lock.mean_s * request.rules.service_time_factor)
            size = max(1, math.ceil(request.rate / per_instance))
            tried: dict[int, bool] = {}
            for _ in range(POOL_SEARCH_LIMIT):
                row = run(Candidate("pull", cpu, memory, instances=size), ("instance",))[0]
                tried[size] = row.meets
                failing = [n for n, ok in tried.items() if not ok]
                meeting = [n for n, ok in tried.items() if ok]
                low = max(failing, default=0)
                high = min(meeting, default=None)
                if high is not None and high - low <= 1:
                    break
                size = (low + high) // 2 if high is not None else max(size + 1, math.ceil(size * 1.25))
    rows.sort(key=lambda r: (r.cost_per_h, r.p95_s))
    best = next((r for r in rows if r.meets), None)
    return PlanOutcome(rows, best, results, entries)


# ------------------------------------------------------------------ text


def seconds(value: float) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def describe(candidate: Candidate) -> str:
    if candidate.mode == "pull":
        return f"pull, {candidate.cpu} vCPU, {candidate.memory}, {candidate.instances} instances"
    return (f"push, {candidate.cpu} vCPU, {candidate.memory}, concurrency {candidate.concurrency}, "
            f"min {candidate.min_instances}, max {candidate.max_instances}")


PLAN_HEADER = ("", "mode", "vCPU", "memory", "concurrency", "min", "max / pool", "billing", "instances mean / peak",
               "busy", "p50", "p95", "failures", "redeliveries", "Cloud Run $/hour", "total $/hour", "$/1,000 frames",
               "notes")


def plan_table(rows: Sequence[Row], best: Row | None, sweep: bool) -> str:
    """Markdown: every row (``sweep``), or the cheapest row of each mode and CPU; the recommendation marked ★."""
    shown = list(rows)
    if not sweep:
        chosen: dict[tuple[str, int], Row] = {}
        for row in rows:  # rows are sorted by cost: the first meeting one per (mode, cpu), else the best p95
            key = (row.candidate.mode, row.candidate.cpu)
            current = chosen.get(key)
            if current is None or (row.meets and not current.meets) or (
                    not row.meets and not current.meets and row.p95_s < current.p95_s):
                chosen[key] = row
        shown = sorted(chosen.values(), key=lambda r: (r.cost_per_h, r.p95_s))
    lines = ["| " + " | ".join(PLAN_HEADER) + " |", "|" + "---|" * len(PLAN_HEADER)]
    for row in shown:
        c = row.candidate
        mark = "★" if row is best else ("✓" if row.meets else "✗")
        lines.append("| " + " | ".join([
            mark, c.mode, str(c.cpu), c.memory, str(c.concurrency) if c.concurrency else "–",
            str(c.min_instances) if c.min_instances is not None else "–",
            str(c.max_instances) if c.mode == "push" else str(c.instances), row.billing,
            f"{row.mean_instances:.1f} / {row.peak_instances:.0f}", f"{row.busy * 100:.0f} %", seconds(row.p50_s),
            seconds(row.p95_s),
            str(row.failures), str(row.redeliveries), f"{row.run_cost_per_h:.3f}", f"{row.cost_per_h:.3f}",
            f"{row.cost_per_1000:.4f}",
            "; ".join(row.notes) or "–"]) + " |")
    return "\n".join(lines) + "\n"


def timeline_table(result: SimResult, rows: int = 12) -> str:
    """The recommended setting over time, about ``rows`` rows (at least a minute apart): instances, instances
    starting, backlog in Pub/Sub, and the latency and rate of the results in each sample interval."""
    every_s = max(60.0, result.config.duration_s / rows)
    lines = ["| t | instances | starting | backlog | p50 | p95 | results/s |", "|---|---|---|---|---|---|---|"]
    next_t = every_s
    for sample in result.timeline:
        if sample.t_s + 1e-9 < next_t:
            continue
        next_t += every_s
        lines.append(f"| {sample.t_s:.0f} s | {sample.instances:.0f} | {sample.starting:.0f} | {sample.backlog:.0f} | "
                     f"{seconds(sample.latency_p50_s) if sample.latency_p50_s is not None else '–'} | "
                     f"{seconds(sample.latency_p95_s) if sample.latency_p95_s is not None else '–'} | "
                     f"{sample.good_per_s:.0f} |")
    return "\n".join(lines) + "\n"
