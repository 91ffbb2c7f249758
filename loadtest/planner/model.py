"""The discrete-event model (SimPy): arrivals, Pub/Sub push or pull, Cloud Run or a worker pool, our worker.

Usage::

    from loadtest.planner.config import CloudRun, OpenLoop, Server, SimConfig
    config = SimConfig(load=OpenLoop(cameras=40, fps=5), delivery="push",
                       target=CloudRun(cpu=1, memory_gib=2, concurrency=4, min_instances=0, max_instances=100),
                       server=Server.worker(entry, budget_s=30, max_held=4), startup_s=3.2,
                       duration_s=600, seed=1)
    result = simulate(config)          # SimResult: latencies, counts, billing seconds, timeline
    result.frame_latency_s(0.95), result.timeline[-1].instances

What is modelled, and which rule decides each step (every rule is a pure function of
:mod:`loadtest.planner.policies`, every constant one of :mod:`loadtest.planner.rules`):

- **arrivals**: ``OpenLoop`` — cameras x fps, each camera at its own random phase (a frame is
  captured and published at the same instant); or ``ClosedLoop`` — Locust users started at
  ``spawn_rate``, each sending its next request when the answer (plus the measured HTTP round trip)
  arrives, optionally paced at ``fps`` per user, honouring ``Retry-After`` for the ``retry-after``
  client (:func:`loadtest.profiles.retry_after_wait`), giving up after the client timeout;
- **Pub/Sub push**: a window of outstanding pushes that grows with each ack and shrinks with each
  failure, a health period (slow or < 99 % acked: no growth, shrink, pause the subscription), the
  retry policy's exponential backoff, dead-lettering after the maximum delivery attempts, a push
  answered after the ack deadline counted as failed (and its frame processed twice);
- **Pub/Sub pull**: each worker process holds at most ``max_held`` messages (flow control); a frame
  that could not start within its budget comes back after :func:`worker.pull.transient_backoff_s`;
- **Cloud Run**: requests go to the ready instance with the fewest in flight, at most
  ``concurrency`` each; a request that finds none waits (pending) for up to max(10 s, 3.5 x startup)
  and then gets 429, and pending requests start instances at once; every ``autoscaler_tick_s`` the
  autoscaler sets instances = max(from CPU, from concurrency) over the averaging window within
  min..max, surplus instances stop receiving requests, and once idle are kept warm for
  ``idle_keep_s`` (reused first when the count rises) before they go; an instance is ready after its
  startup time. Billing: request-based (busy instances, requests, idle min instances) or
  instance-based (every second of every instance); a worker pool is a fixed number of instances,
  billed instance-based;
- **our worker**: one process per vCPU, each one pipeline serving one request at a time in arrival
  order for its measured ``lock`` time, with the measured ``outside`` time (decode, encode,
  storage) before the answer; admission by time with :func:`worker.runner.decide_admission` and the
  runner's own service-time estimate (:func:`worker.runner.updated_service_s`); 503 when a request
  could not start within its budget. ``Server.baseline`` is the study's design: one process, no
  admission, requests queue in the instance.
- **scale**: ``scale`` > 1 simulates 1/scale of the cameras and of min/max instances (instances are
  interchangeable behind Cloud Run's load balancer) and multiplies counts, instances and costs back.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import simpy

from loadtest.planner import policies
from loadtest.planner.config import (
    Billing,
    ClosedLoop,
    CloudRun,
    LocalStack,
    OpenLoop,
    Sample,
    SimConfig,
    SimResult,
    WorkerPool,
)
from loadtest.profiles import retry_after_wait
from worker.pull import transient_backoff_s
from worker.runner import INITIAL_SERVICE_S, updated_service_s

OK, REFUSED, UNAVAILABLE = 200, 429, 503
RUNNER_RETRY_AFTER_S = 2
"""worker.runner: a frame that could not start within its budget is answered 503 with Retry-After 2."""
DEPARTURE_MEMORY_S = 60.0
"""worker.runner: a departure older than this does not count as a backlog when estimating service time."""

# ------------------------------------------------------------------ engine state


class Msg:
    __slots__ = ("t", "attempts", "result_t", "settled", "measured")

    def __init__(self, t: float, measured: bool) -> None:
        self.t = t
        self.attempts = 0
        self.result_t: float | None = None
        self.settled = False
        self.measured = measured


class Request:
    __slots__ = ("t0", "msg", "on_done", "inst", "answered", "admitted", "pending", "retry_after")

    def __init__(self, t0: float, on_done: Callable[[Request, int, str], None], msg: Msg | None = None) -> None:
        self.t0 = t0
        self.msg = msg
        self.on_done = on_done
        self.inst: Instance | None = None
        self.answered = False
        self.admitted = 0.0
        self.pending = False
        self.retry_after: float | None = None


class Proc:
    __slots__ = ("inst", "held", "queue", "busy", "service_s", "last_departure", "room")

    def __init__(self, inst: Instance, room: int) -> None:
        self.inst = inst
        self.held = 0
        self.queue: deque[Request] = deque()
        self.busy = False
        self.service_s = INITIAL_SERVICE_S
        self.last_departure: float | None = None
        self.room = room


class Instance:
    __slots__ = ("order", "procs", "in_flight", "state", "created", "version", "active_since", "idle_token")

    def __init__(self, order: int, created: float) -> None:
        self.order = order
        self.procs: list[Proc] = []
        self.in_flight = 0
        self.state = "starting"
        self.created = created
        self.version = 0
        self.active_since = 0.0
        self.idle_token = 0


class Model:
    """The simulation's state and its event handlers (callbacks on SimPy timeouts; loops as processes)."""

    def __init__(self, config: SimConfig) -> None:
        self.c = config
        self.r = config.rules
        self.env = simpy.Environment()
        self.rng = random.Random(config.seed)
        self.result = SimResult(config=config)
        t = config.target
        self.cloud = isinstance(t, CloudRun)
        self.pool = isinstance(t, WorkerPool)
        k = config.scale
        self.min_instances = math.ceil(t.min_instances / k) if isinstance(t, CloudRun) else 0
        self.max_instances = max(1, math.ceil(t.max_instances / k)) if isinstance(t, CloudRun) else 0
        self.concurrency = t.concurrency if isinstance(t, CloudRun) else 1 << 30
        cpu = getattr(t, "cpu", 1)
        self.cpu = cpu
        s = config.server
        factor = self.r.service_time_factor
        self.lock = s.lock.scaled(factor) if factor != 1 else s.lock
        self.cpu_cost = s.cpu.scaled(factor) if factor != 1 else s.cpu
        self.procs_per_instance = s.processes_per_instance or (t.processes if isinstance(t, LocalStack) else cpu)
        self.pending_wait = policies.pending_wait_s(config.startup_s, self.r)
        self.instances: list[Instance] = []
        self.heap: list[tuple[int, int, int, Instance]] = []
        self.pending: deque[Request] = deque()
        self.pending_live = 0
        self.counts = {"ready": 0, "starting": 0, "draining": 0, "idle": 0}
        self.order = 0
        # metrics integrals
        self.cpu_s = 0.0
        self.cpu_marks: deque[tuple[float, float, float]] = deque()
        self.flight_total = 0
        self.flight_area = 0.0
        self.flight_t = 0.0
        self.n_active = 0
        self.idle_min_area = 0.0
        self.idle_min_t = 0.0
        # delivery
        self.backlog: deque[Msg] = deque()
        self.retrying = 0
        self.window = self.r.emulator_push_window if config.local_push_window else self.r.push_window_start
        # the 3,000-outstanding threshold is per region: a 1/scale sample reaches it at 3,000/scale
        self.push_rules = dataclasses.replace(self.r, push_window_linear_above=self.r.push_window_linear_above / k)
        self.open_msgs = 0
        self.snapshots: dict[str, tuple[float, ...]] = {}
        self.outstanding = 0
        self.paused_until = 0.0
        self.pause_s = 0.0
        self.healthy = True
        self.period = [0, 0, 0.0]  # answered, acked, latency sum
        self.free_levels: list[deque[Proc]] = [deque() for _ in range(config.server.max_held if
                                                                     config.delivery == "pull" else 0)]
        self.ack_deadline = config.ack_deadline_s or self.r.push_ack_deadline_s
        self.retry_min = self.r.retry_min_s if config.retry_min_s is None else config.retry_min_s
        self.retry_max = self.r.retry_max_s if config.retry_max_s is None else config.retry_max_s
        self.max_attempts = config.max_delivery_attempts or self.r.max_delivery_attempts
        self.latency_marks: list[tuple[float, float, float]] = []
        self.closed_instance_s = 0.0
        self.requests_accepted = 0
        self.writes = 0
        self.client_free_at = 0.0
        self.serving = False
        self.pumping = False
        self.closed_active_s = 0.0

    # -------------------------------------------------------------- helpers

    def at(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        ev = self.env.timeout(max(delay, 0.0))
        ev.callbacks.append(lambda _e: fn(*args))

    @property
    def now(self) -> float:
        return self.env.now

    def _flight(self, delta: int) -> None:
        now = self.env.now
        self.flight_area += self.flight_total * (now - self.flight_t)
        self.flight_t = now
        self.flight_total += delta

    def _active(self, delta: int) -> None:
        now = self.env.now
        self.idle_min_area += max(0, self.min_instances - self.n_active) * (now - self.idle_min_t)
        self.idle_min_t = now
        self.n_active += delta

    # -------------------------------------------------------------- instances

    def new_instance(self, ready_now: bool) -> Instance:
        inst = Instance(self.order, self.now)
        self.order += 1
        room = self.c.server.max_held
        inst.procs = [Proc(inst, room) for _ in range(self.procs_per_instance)]
        self.instances.append(inst)
        if ready_now:
            self.counts["ready"] += 1
            self.make_ready(inst, counted=True)
        else:
            self.counts["starting"] += 1
            self.at(self.c.startup_s, self.make_ready, inst)
        return inst

    def make_ready(self, inst: Instance, counted: bool = False) -> None:
        if not counted:
            self.counts["starting"] -= 1
            self.counts["ready"] += 1
        inst.state = "ready"
        inst.version += 1
        if self.c.delivery == "pull":
            for proc in inst.procs:
                self.free_levels[0].append(proc)
            self.pull_pump()
            return
        heapq.heappush(self.heap, (inst.in_flight, inst.order, inst.version, inst))
        self.serve_pending()

    def pick(self) -> Instance | None:
        """The ready instance with the fewest requests in flight if it has room (a heap with lazy deletion)."""
        heap = self.heap
        if len(heap) > 64 + 4 * len(self.instances):  # drop stale entries now and then: memory stays bounded
            self.heap = heap = [(i.in_flight, i.order, i.version, i) for i in self.instances if i.state == "ready"]
            heapq.heapify(heap)
        while heap:
            flight, _, version, inst = heap[0]
            if inst.version != version or inst.state != "ready" or inst.in_flight != flight:
                heapq.heappop(heap)
                continue
            return inst if flight < self.concurrency else None
        return None

    def existing(self) -> int:
        c = self.counts
        return c["ready"] + c["starting"] + c["draining"] + c["idle"]

    def reactivate(self, inst: Instance) -> None:
        self.counts[inst.state] -= 1
        self.counts["ready"] += 1
        inst.idle_token += 1
        inst.state = "ready"
        inst.version += 1
        heapq.heappush(self.heap, (inst.in_flight, inst.order, inst.version, inst))

    def add_capacity(self, wanted: int) -> None:
        """Bring ``wanted`` more instances into service: idle or draining ones first, then new ones (to max)."""
        for state in ("idle", "draining"):
            if wanted <= 0:
                break
            for inst in reversed(self.instances):
                if wanted <= 0:
                    break
                if inst.state == state:
                    self.reactivate(inst)
                    wanted -= 1
        while wanted > 0 and self.existing() < self.max_instances:
            self.new_instance(ready_now=False)
            wanted -= 1
        self.serve_pending()

    def drain(self, count: int) -> None:
        for inst in sorted((i for i in self.instances if i.state == "ready"), key=lambda i: -i.order)[:count]:
            self.counts["ready"] -= 1
            inst.version += 1
            if inst.in_flight == 0:
                self.to_idle(inst)
            else:
                self.counts["draining"] += 1
                inst.state = "draining"

    def to_idle(self, inst: Instance) -> None:
        self.counts["idle"] += 1
        inst.state = "idle"
        inst.idle_token += 1
        self.at(self.r.idle_keep_s, self.retire, inst, inst.idle_token)

    def retire(self, inst: Instance, token: int) -> None:
        if inst.state != "idle" or inst.idle_token != token:
            return
        self.counts["idle"] -= 1
        inst.state = "gone"
        self.closed_instance_s += self.now - inst.created

    # -------------------------------------------------------------- HTTP requests into Cloud Run / the stack

    def submit(self, req: Request) -> None:
        inst = self.pick()
        if inst is not None:
            self.accept(inst, req)
            return
        req.pending = True
        self.pending.append(req)
        self.pending_live += 1
        self.at(self.pending_wait, self.pending_timeout, req)
        if self.cloud:
            need = policies.instances_for_pending(self.pending_live, self.counts["starting"], self.concurrency)
            if need:
                self.add_capacity(need)

    def pending_timeout(self, req: Request) -> None:
        if not req.pending:
            return
        req.pending = False
        self.pending_live -= 1
        self.answer(req, REFUSED, "429 (Cloud Run)")

    def serve_pending(self) -> None:
        if self.serving:  # an answer given while serving pending requests frees a slot: the loop below takes it
            return
        self.serving = True
        try:
            while self.pending_live:
                inst = self.pick()
                if inst is None:
                    return
                req = self.pending.popleft()
                if not req.pending:
                    continue
                req.pending = False
                self.pending_live -= 1
                self.accept(inst, req)
        finally:
            self.serving = False

    def accept(self, inst: Instance, req: Request) -> None:
        req.inst = inst
        if inst.in_flight == 0:
            inst.active_since = self.now
            self._active(+1)
        inst.in_flight += 1
        self._flight(+1)
        self.requests_accepted += 1
        inst.version += 1
        heapq.heappush(self.heap, (inst.in_flight, inst.order, inst.version, inst))
        proc = min(inst.procs, key=lambda p: p.held)
        self.proc_arrive(proc, req)

    def release(self, inst: Instance) -> None:
        inst.in_flight -= 1
        self._flight(-1)
        if inst.in_flight == 0:
            self.closed_active_s += self.now - inst.active_since
            self._active(-1)
            if inst.state == "draining":
                self.counts["draining"] -= 1
                self.to_idle(inst)
                return
        if inst.state == "ready":
            inst.version += 1
            heapq.heappush(self.heap, (inst.in_flight, inst.order, inst.version, inst))
            self.serve_pending()

    def answer(self, req: Request, status: int, kind: str) -> None:
        if req.inst is not None and self.c.delivery != "pull":
            self.release(req.inst)
            req.inst = None
        req.on_done(req, status, kind)

    # -------------------------------------------------------------- a worker process

    def proc_arrive(self, proc: Proc, req: Request) -> None:
        s = self.c.server
        if s.kind == "worker" and self.c.delivery != "pull":
            decision = policies.admission(proc.held, proc.service_s, s.budget_s, s.max_held)
            if not decision.admit:
                req.retry_after = decision.retry_after_s
                self.answer(req, REFUSED, "429")
                return
        proc.held += 1
        req.admitted = self.now
        proc.queue.append(req)
        if not proc.busy:
            self.proc_next(proc)

    def proc_next(self, proc: Proc) -> None:
        s = self.c.server
        while proc.queue:
            req = proc.queue.popleft()
            if self.now - req.admitted > s.budget_s:  # could not start within its budget: 503, never late
                proc.held -= 1
                req.retry_after = RUNNER_RETRY_AFTER_S
                self.after_work(proc, req, UNAVAILABLE, "503")
                continue
            proc.busy = True
            u = self.rng.random()
            self.cpu_s += self.cpu_cost.sample_s(u)
            self.at(self.lock.sample_s(u), self.proc_done, proc, req, self.now)
            return
        proc.busy = False

    def proc_done(self, proc: Proc, req: Request, started: float) -> None:
        now = self.now
        last = proc.last_departure
        backlog = proc.held > 1 and last is not None and last > started - DEPARTURE_MEMORY_S
        measured = now - last if backlog and last is not None else now - started
        proc.service_s = updated_service_s(proc.service_s, max(measured, now - started))
        proc.last_departure = now
        self.at(self.c.server.outside.sample_s(self.rng.random()), self.proc_finish, proc, req)
        self.proc_next(proc)

    def proc_finish(self, proc: Proc, req: Request) -> None:
        proc.held -= 1
        if req.msg is not None and req.msg.result_t is None:
            req.msg.result_t = self.now
            self.writes += 1
            self.latency_marks.append((self.now, self.now - req.msg.t, 1.0 if req.msg.measured else 0.0))
        elif req.msg is not None:
            self.result.duplicates += 1
        self.after_work(proc, req, OK, "ok")

    def after_work(self, proc: Proc, req: Request, status: int, kind: str) -> None:
        if self.c.delivery == "pull":
            self.pull_settle(proc, req, status)
        else:
            self.answer(req, status, kind)

    # -------------------------------------------------------------- arrivals of frames

    def publish(self, t_capture: float) -> None:
        msg = Msg(t_capture, t_capture >= self.c.warmup_s)
        self.result.frames += 1
        if msg.measured:
            self.result.measured_frames += 1
        self.all_msgs.append(msg)
        self.open_msgs += 1
        if self.c.delivery_delay is not None:
            self.at(self.c.delivery_delay.sample_s(self.rng.random()), self.deliverable, msg)
        else:
            self.deliverable(msg)

    def deliverable(self, msg: Msg) -> None:
        self.backlog.append(msg)
        if self.c.delivery == "push":
            self.push_pump()
        else:
            self.pull_pump()

    def cameras(self, load: OpenLoop, count: int) -> Any:
        env = self.env
        period = 1.0 / load.fps
        phases = sorted(self.rng.random() * period for _ in range(count))
        rounds = math.ceil(self.c.duration_s * load.fps)
        for k in range(rounds):
            base = k * period
            for phase in phases:
                t = base + phase
                if t >= self.c.duration_s:
                    return
                if t > env.now:
                    yield env.timeout(t - env.now)
                self.publish(t)

    # -------------------------------------------------------------- Pub/Sub push

    def push_pump(self) -> None:
        if self.now < self.paused_until or self.pumping:
            return
        self.pumping = True
        try:
            while self.backlog and self.outstanding < max(1, int(self.window)) and self.now >= self.paused_until:
                msg = self.backlog.popleft()
                if msg.settled:
                    continue
                msg.attempts += 1
                self.result.deliveries += 1
                if msg.attempts > 1:
                    self.result.redeliveries += 1
                self.outstanding += 1
                self.submit(Request(self.now, self.push_done, msg))
        finally:
            self.pumping = False

    def push_done(self, req: Request, status: int, kind: str) -> None:
        msg = req.msg
        assert msg is not None
        self.outstanding -= 1
        latency = self.now - req.t0
        if status == OK and latency > self.ack_deadline:
            status, kind = 0, "ack deadline"
        p = self.period
        p[0] += 1
        p[2] += latency
        if status == OK:
            p[1] += 1
            self.settle(msg)
            if not self.c.local_push_window:
                self.window = policies.push_window_after_ack(self.window, self.healthy, self.push_rules)
        else:
            self.result.nacks_by_kind[kind] = self.result.nacks_by_kind.get(kind, 0) + 1
            if not self.c.local_push_window:
                self.window = policies.push_window_after_failure(self.window, self.r)
            self.nack(msg, policies.retry_delay_s(msg.attempts, self.retry_min, self.retry_max))
        self.push_pump()

    def settle(self, msg: Msg) -> None:
        if not msg.settled:
            msg.settled = True
            self.open_msgs -= 1

    def nack(self, msg: Msg, delay_s: float) -> None:
        if policies.dead_lettered(msg.attempts, self.max_attempts):
            self.settle(msg)
            self.result.dead_lettered += 1
            return
        self.retrying += 1
        self.at(delay_s, self.redeliver, msg)

    def redeliver(self, msg: Msg) -> None:
        self.retrying -= 1
        self.backlog.append(msg)
        if self.c.delivery == "push":
            self.push_pump()
        else:
            self.pull_pump()

    def health_loop(self) -> Any:
        period = self.r.push_health_period_s
        while True:
            yield self.env.timeout(period)
            answered, acked, latency = self.period
            self.period = [0, 0, 0.0]
            verdict = policies.push_period_health(latency, answered, acked, self.r)
            self.healthy = verdict.healthy
            if not self.c.local_push_window and answered and latency / answered > self.r.push_slow_latency_s:
                self.window = policies.push_window_after_failure(self.window, self.r)
            if verdict.too_many_nacks and not self.c.local_push_window:
                self.pause_s = policies.next_nack_pause_s(self.pause_s, self.r)
                self.paused_until = self.now + self.pause_s
                self.at(self.pause_s, self.push_pump)
            elif verdict.healthy:
                self.pause_s = 0.0

    # -------------------------------------------------------------- Pub/Sub pull

    def free_proc(self) -> Proc | None:
        """The process holding the fewest messages below its limit (each process pulls only as many as
        it has free slots; which one Pub/Sub answers first is not documented: the least loaded is our
        assumption)."""
        for level, procs in enumerate(self.free_levels):
            while procs:
                proc = procs[0]
                if proc.held == level and proc.inst.state == "ready":
                    return proc
                procs.popleft()
        return None

    def pull_pump(self) -> None:
        if self.pumping:
            return
        self.pumping = True
        try:
            while self.backlog:
                proc = self.free_proc()
                if proc is None:
                    return
                msg = self.backlog.popleft()
                if msg.settled:
                    continue
                msg.attempts += 1
                self.result.deliveries += 1
                if msg.attempts > 1:
                    self.result.redeliveries += 1
                self.free_levels[proc.held].popleft()
                self.proc_arrive(proc, Request(self.now, _ignore, msg))
                if proc.held < proc.room:
                    self.free_levels[proc.held].append(proc)
        finally:
            self.pumping = False

    def pull_settle(self, proc: Proc, req: Request, status: int) -> None:
        msg = req.msg
        assert msg is not None
        if status == OK:
            self.settle(msg)
        else:
            self.result.nacks_by_kind["503"] = self.result.nacks_by_kind.get("503", 0) + 1
            self.nack(msg, transient_backoff_s(msg.attempts))
        self.free_levels[proc.held].appendleft(proc)
        self.pull_pump()

    # -------------------------------------------------------------- closed-loop users (the front door)

    def user(self, load: ClosedLoop, index: int) -> Any:
        env = self.env
        yield env.timeout(index / load.spawn_rate)
        timeout = self.r.client_timeout_s
        pace = 1.0 / load.fps if load.fps else 0.0
        cost = 1.0 / load.max_rps if load.max_rps else 0.0
        while env.now < self.c.duration_s:
            sent = env.now
            done = env.event()

            def on_done(req: Request, status: int, kind: str, done: simpy.Event = done) -> None:
                if not done.triggered:
                    done.succeed((status, kind, req.retry_after))

            req = Request(sent, on_done)
            self.submit(req)
            fired = yield done | env.timeout(timeout)
            if done in fired:
                status, kind, retry_after = done.value
                if self.c.rtt_s:
                    yield env.timeout(self.c.rtt_s)
            else:
                status, kind, retry_after = 0, "timeout", None
                req.on_done = lambda *_: None
            if cost:  # the load generator's one CPU handles each request in turn, inside Locust's timer
                start = max(env.now, self.client_free_at)
                self.client_free_at = start + cost
                yield env.timeout(self.client_free_at - env.now)
            wait = 0.0
            if load.client == "retry-after" and status in (REFUSED, UNAVAILABLE):
                honoured = retry_after_wait(status, None if retry_after is None else str(retry_after),
                                            cap_s=self.r.retry_after_cap_s)
                if honoured is not None:
                    kind = f"refused {status}"
                    wait = honoured
            if env.now <= self.c.duration_s:
                self.result.requests.append((sent, env.now, kind))
            if pace:
                wait = max(wait, pace - (env.now - sent))
            if wait > 0:
                yield env.timeout(wait)

    # -------------------------------------------------------------- control loops

    def autoscaler(self, target: CloudRun) -> Any:
        window = self.r.averaging_window_s
        tick = self.r.autoscaler_tick_s
        marks = self.cpu_marks
        while True:
            yield self.env.timeout(tick)
            now = self.env.now
            self._flight(0)
            marks.append((now, self.cpu_s, self.flight_area))
            while marks and marks[0][0] < now - window:
                marks.popleft()
            t0, cpu0, area0 = marks[0] if now >= window else (0.0, 0.0, 0.0)
            span = max(now - t0, tick)
            serving = self.counts["ready"] + self.counts["draining"]
            cpu_busy = min((self.cpu_s - cpu0) / span, max(serving, 1) * target.cpu)  # at most 100 % per instance
            desired = policies.desired_instances(
                cpu_busy, (self.flight_area - area0) / span, target.cpu, target.concurrency,
                self.min_instances, self.max_instances, self.r)
            active = self.counts["ready"] + self.counts["starting"]
            if desired > active:
                self.add_capacity(desired - active)
            elif desired < active and not self.pending_live:
                self.drain(min(active - desired, self.counts["ready"]))

    def sampler(self, every: float) -> Any:
        k = self.c.scale
        last_good = 0
        while True:
            yield self.env.timeout(every)
            c = self.counts
            if isinstance(self.c.load, ClosedLoop):
                good = sum(1 for r in self.result.requests[last_good:] if r[2] == "ok")
                last_good = len(self.result.requests)
            else:
                good = 0
            sample = Sample(
                t_s=self.env.now, instances=(c["ready"] + c["starting"] + c["draining"]) * k if not self.pool
                else self.c.target.instances,  # type: ignore[union-attr]
                starting=c["starting"] * k, idle=c["idle"] * k, in_flight=self.flight_total * k,
                pending=self.pending_live * k, backlog=(len(self.backlog) + self.retrying) * k,
                window=self.window * k if self.c.delivery == "push" else 0.0, good_per_s=good / every)
            self.result.timeline.append(sample)
            if sample.instances > self.result.peak_instances:
                self.result.peak_instances = sample.instances

    # -------------------------------------------------------------- run

    def billing_now(self) -> tuple[float, ...]:
        """Running totals at this moment: instance-s, busy instance-s, idle min instance-s, requests, deliveries,
        result writes."""
        now = self.now
        live = [i for i in self.instances if i.state != "gone"]
        if isinstance(self.c.target, WorkerPool):
            instance_s = len(live) * now
        else:
            instance_s = self.closed_instance_s + sum(now - i.created for i in live)
        active_s = self.closed_active_s + sum(now - i.active_since for i in live if i.in_flight > 0)
        self._active(0)
        return (instance_s, active_s, self.idle_min_area, float(self.requests_accepted),
                float(self.result.deliveries), float(self.writes), float(self.result.frames))

    def snapshot_at(self, name: str, t: float) -> Any:
        if t > 0:
            yield self.env.timeout(t)
        self.snapshots[name] = self.billing_now()

    def run(self) -> SimResult:
        c = self.c
        env = self.env
        self.all_msgs: list[Msg] = []
        t = c.target
        if isinstance(t, CloudRun):
            for _ in range(self.min_instances):
                self.new_instance(ready_now=True)
            env.process(self.autoscaler(t))
        elif isinstance(t, WorkerPool):
            for _ in range(max(1, round(t.instances / c.scale))):
                self.new_instance(ready_now=True)
        else:
            self.new_instance(ready_now=True)
        if c.delivery == "push":
            env.process(self.health_loop())
        if isinstance(c.load, OpenLoop):
            env.process(self.cameras(c.load, max(1, round(c.load.cameras / c.scale))))
        else:
            for index in range(c.load.users):
                env.process(self.user(c.load, index))
        every = c.sample_every_s or max(1.0, round(c.duration_s / 120))
        env.process(self.sampler(every))
        env.process(self.snapshot_at("start", min(c.warmup_s, c.duration_s)))
        env.run(until=c.duration_s)
        self.snapshots["end"] = self.billing_now()
        if isinstance(c.load, OpenLoop):
            end = c.duration_s + c.drain_s
            while self.open_msgs and env.now < end:
                env.run(until=min(end, env.now + 1.0))
        return self.finish()

    def finish(self) -> SimResult:
        res = self.result
        k = self.c.scale
        start, end = self.snapshots.get("start", (0.0,) * 7), self.snapshots["end"]
        d = [b - a for a, b in zip(start, end, strict=True)]
        res.billing = Billing(self.c.duration_s - min(self.c.warmup_s, self.c.duration_s), d[0], d[1], d[2],
                              round(d[3]), round(d[4]), round(d[5]), round(d[6])).scaled(k)
        res.frame_latencies_s = np.array([lat for _, lat, measured in self.latency_marks if measured])
        res.last_result_s = max((t for t, _, _ in self.latency_marks), default=0.0)
        res.unfinished = sum(1 for m in self.all_msgs if m.result_t is None and not m.settled)
        res.unfinished_measured = sum(1 for m in self.all_msgs if m.result_t is None and m.measured)
        res.results = sum(1 for m in self.all_msgs if m.result_t is not None)
        if self.latency_marks and res.timeline:  # latency percentiles per sample interval, by result time
            marks = np.array(self.latency_marks)
            edges = [0.0] + [s.t_s for s in res.timeline]
            idx = np.searchsorted(marks[:, 0], edges)
            timeline = []
            for i, sample in enumerate(res.timeline):
                chunk = marks[idx[i]:idx[i + 1], 1]
                if len(chunk):
                    sample = dataclasses.replace(
                        sample, latency_p50_s=float(np.percentile(chunk, 50)),
                        latency_p95_s=float(np.percentile(chunk, 95)),
                        good_per_s=len(chunk) * k / (edges[i + 1] - edges[i]))
                timeline.append(sample)
            res.timeline = timeline
        if k != 1:
            for name in ("frames", "results", "redeliveries", "duplicates", "dead_lettered", "unfinished",
                         "deliveries", "measured_frames"):
                setattr(res, name, round(getattr(res, name) * k))
            res.nacks_by_kind = {kind: round(n * k) for kind, n in res.nacks_by_kind.items()}
        return res


def _ignore(*_: Any) -> None:
    """Pull messages are settled by the worker process, not answered over HTTP."""


def simulate(config: SimConfig) -> SimResult:
    """Run one simulation (deterministic for a given ``config.seed``)."""
    return Model(config).run()
