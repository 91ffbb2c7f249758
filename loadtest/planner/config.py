"""What a simulation is given and what it returns: load, delivery, target, server, results (frozen types).

Usage::

    config = SimConfig(load=OpenLoop(cameras=40, fps=5), delivery="push",
                       target=CloudRun(cpu=1, memory_gib=2, concurrency=4, min_instances=0, max_instances=100),
                       server=Server.worker(entry, budget_s=30, max_held=4), startup_s=3.2, duration_s=600)
    result = loadtest.planner.model.simulate(config)
    result.frame_latency_s(0.95), result.timeline[-1].instances, result.requests[:3]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from loadtest.planner.profile import Distribution, ServiceEntry
from loadtest.planner.rules import Rules


@dataclass(frozen=True)
class OpenLoop:
    """Cameras sending frames at a fixed rate each (the producer's arrivals)."""

    cameras: int
    fps: float


@dataclass(frozen=True)
class ClosedLoop:
    """Locust users: send, wait for the answer, send again (``fps`` > 0 paces each user)."""

    users: int
    spawn_rate: float
    fps: float = 0.0
    client: str = "study"
    max_rps: float | None = None
    """The load generator's own limit: each request takes 1/max_rps of its (one) CPU, in turn, once its answer is
    back; Locust's timer runs until then, so a saturated client shows in the latency. None: no limit."""


@dataclass(frozen=True)
class CloudRun:
    """A Cloud Run service: the study's knobs and the billing (``request`` or ``instance``)."""

    cpu: int
    memory_gib: float
    concurrency: int
    min_instances: int
    max_instances: int
    cpu_boost: bool = False
    startup_delay_s: float = 0.0
    billing: str = "request"


@dataclass(frozen=True)
class WorkerPool:
    """A Cloud Run worker pool: a fixed number of instances, every one billed while it runs."""

    cpu: int
    memory_gib: float
    instances: int


@dataclass(frozen=True)
class LocalStack:
    """The local stack: one machine, ``processes`` worker processes, always ready, nothing billed."""

    processes: int


@dataclass(frozen=True)
class Server:
    """What runs in an instance: our worker (admission by time) or the study's baseline (none)."""

    kind: str
    lock: Distribution
    outside: Distribution
    cpu: Distribution
    budget_s: float
    max_held: int
    processes_per_instance: int | None = None

    @classmethod
    def worker(cls, entry: ServiceEntry, budget_s: float, max_held: int) -> Server:
        return cls("worker", entry.lock, entry.outside, entry.cpu, budget_s, max_held)

    @classmethod
    def baseline(cls, lock: Distribution, outside: Distribution, cpu: Distribution) -> Server:
        return cls("baseline", lock, outside, cpu, math.inf, 1 << 30, processes_per_instance=1)


Target = CloudRun | WorkerPool | LocalStack


@dataclass(frozen=True)
class SimConfig:
    """One simulation: load, delivery (``push``, ``pull`` or ``direct`` HTTP), target, server, times."""

    load: OpenLoop | ClosedLoop
    delivery: str
    target: Target
    server: Server
    startup_s: float = 0.0
    duration_s: float = 600.0
    warmup_s: float = 0.0
    drain_s: float = 120.0
    seed: int = 1
    rules: Rules = field(default_factory=Rules)
    rtt_s: float = 0.0
    ack_deadline_s: float | None = None
    retry_min_s: float | None = None
    retry_max_s: float | None = None
    max_delivery_attempts: int | None = None
    local_push_window: bool = False
    delivery_delay: Distribution | None = None
    """Publish to deliverable (the local emulator's measured overhead); ``None``: none."""
    scale: float = 1.0
    sample_every_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.load, ClosedLoop) and self.rtt_s <= 0 and not self.load.max_rps:
            raise ValueError("closed-loop users need a round trip (rtt_s > 0) or a client limit (max_rps): "
                             "a refusal answered at once would otherwise be sent again at the same instant forever")
        if self.delivery not in ("push", "pull", "direct"):
            raise ValueError(f"delivery must be push, pull or direct, got {self.delivery!r}")
        if self.delivery == "pull" and isinstance(self.target, CloudRun):
            raise ValueError("pull workers run in a worker pool (or the local stack), not a Cloud Run service")
        if self.delivery != "pull" and isinstance(self.target, WorkerPool):
            raise ValueError("a worker pool has no HTTP endpoint: it takes pull delivery only")
        if (self.delivery == "direct") != isinstance(self.load, ClosedLoop):
            raise ValueError("closed-loop users call the front door (direct); cameras go through Pub/Sub")


# ------------------------------------------------------------------ results


@dataclass(frozen=True)
class Sample:
    """The system at one moment (scaled back to the full system)."""

    t_s: float
    instances: float
    starting: float
    idle: float
    in_flight: float
    pending: float
    backlog: float
    window: float
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    good_per_s: float = 0.0


@dataclass(frozen=True)
class Billing:
    """What the bill depends on, over the measured part of a run (after the warm-up, until the arrivals stop)."""

    seconds: float = 0.0
    instance_s: float = 0.0
    """Instance-seconds of every instance that existed, starting, serving or idle (instance-based billing)."""
    active_s: float = 0.0
    """Instance-seconds with at least one request in flight (request-based billing)."""
    idle_min_s: float = 0.0
    """Instance-seconds of min instances with nothing in flight (request-based billing's idle charge)."""
    requests: int = 0
    deliveries: int = 0
    writes: int = 0
    """Frames whose results were written (each is ``gcs_writes_per_frame`` objects)."""
    frames: int = 0
    """Frames published."""

    def scaled(self, k: float) -> Billing:
        return Billing(self.seconds, self.instance_s * k, self.active_s * k, self.idle_min_s * k,
                       round(self.requests * k), round(self.deliveries * k), round(self.writes * k),
                       round(self.frames * k))


@dataclass
class SimResult:
    """What a simulation measured; counts and seconds already multiplied back by ``scale``."""

    config: SimConfig
    frames: int = 0
    results: int = 0
    redeliveries: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    unfinished: int = 0
    nacks_by_kind: dict[str, int] = field(default_factory=dict)
    frame_latencies_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    requests: list[tuple[float, float, str]] = field(default_factory=list)
    """Closed loop: (sent, answered, kind) for every answer the clients received; kind ``ok``, ``429``,
    ``429 (Cloud Run)``, ``503``, ``timeout``, ``refused 429`` / ``refused 503`` (honoured Retry-After)."""
    timeline: list[Sample] = field(default_factory=list)
    deliveries: int = 0
    measured_frames: int = 0
    peak_instances: float = 0.0
    billing: Billing = field(default_factory=lambda: Billing())
    unfinished_measured: int = 0
    """Measured frames without a result, in the simulated sample (not multiplied back)."""
    last_result_s: float = 0.0

    def frame_latency_s(self, q: float) -> float:
        """Capture-to-result latency quantile over measured frames; unfinished frames count as infinite."""
        n = len(self.frame_latencies_s) + self.unfinished_measured
        if n == 0:
            return math.nan
        rank = max(1, math.ceil(q * n))
        if rank > len(self.frame_latencies_s):
            return math.inf
        return float(np.partition(self.frame_latencies_s, rank - 1)[rank - 1])
