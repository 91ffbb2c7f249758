"""The model's rules as pure functions: push window, retries, autoscaler, startup, admission, billing.

Usage::

    rules = Rules()
    window = push_window_after_ack(5.0, healthy=True, rules=rules)          # 6.0: +1 per ack below 3,000
    window = push_window_after_failure(6.0, rules)                          # 3.0: halved
    retry_delay_s(attempt=3, min_s=10, max_s=600)                           # 40.0
    desired_instances(cpu_busy=3.0, in_flight=20, cpu=1, concurrency=30, min_instances=0,
                      max_instances=100, rules=rules)                       # 5 (from CPU: 3 / 0.6)
    admission(held=3, service_s=0.05, budget_s=10, max_held=128)            # worker.runner.decide_admission
    request_based_cost(active_s=3600, idle_min_s=0, requests=1000, cpu=1, memory_gib=2, rules=rules)

Each function says which rule of :mod:`loadtest.planner.rules` it applies; the simulation
(:mod:`loadtest.planner.model`) only calls these, so every decision the model makes is testable here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtest.planner.rules import Rules
from worker.runner import Admission, decide_admission

# ------------------------------------------------------------------ Pub/Sub push


def push_window_after_ack(window: float, healthy: bool, rules: Rules) -> float:
    """The push window after an acknowledged push: +1 per ack (doubling every round trip, "exponentially")
    below ``push_window_linear_above`` outstanding, +1/window per ack (one per round trip) above it; no
    growth while the subscription is unhealthy (latency > 1 s or < 99 % acked: "falls back")."""
    if not healthy:
        return window
    if window < rules.push_window_linear_above:
        return window + 1.0
    return window + 1.0 / window


def push_window_after_failure(window: float, rules: Rules) -> float:
    """The push window after a failed push (any non-2xx, or no answer within the ack deadline): shrunk by
    ``push_window_shrink``, never below one push."""
    return max(1.0, window * rules.push_window_shrink)


@dataclass(frozen=True)
class PeriodHealth:
    """One health period of a push subscription: is it healthy, and were there too many NACKs."""

    healthy: bool
    too_many_nacks: bool


def push_period_health(latency_sum_s: float, answered: int, acked: int, rules: Rules) -> PeriodHealth:
    """Health of the pushes answered in one ``push_health_period_s``: unhealthy when their average latency
    exceeds ``push_slow_latency_s`` or fewer than ``push_min_ack_ratio`` were acked (the latter is also
    "too many NACKs"). A period without answers is healthy.

    >>> push_period_health(latency_sum_s=0.5, answered=10, acked=10, rules=Rules())
    PeriodHealth(healthy=True, too_many_nacks=False)
    """
    if answered == 0:
        return PeriodHealth(True, False)
    nacks = acked / answered < rules.push_min_ack_ratio
    slow = latency_sum_s / answered > rules.push_slow_latency_s
    return PeriodHealth(not (nacks or slow), nacks)


def next_nack_pause_s(previous_s: float, rules: Rules) -> float:
    """Pause of the whole subscription after a period with too many NACKs: ``nack_pause_min_s`` the first
    time, doubled for each consecutive such period, at most ``nack_pause_max_s``."""
    if previous_s <= 0:
        return rules.nack_pause_min_s
    return min(rules.nack_pause_max_s, previous_s * 2)


def retry_delay_s(attempt: int, min_s: float, max_s: float) -> float:
    """Retry policy: the earliest redelivery after the ``attempt``-th delivery failed, min_s doubling per
    attempt up to max_s (exponential backoff).

    >>> [retry_delay_s(a, 10, 600) for a in (1, 2, 3, 7, 8)]
    [10.0, 20.0, 40.0, 600.0, 600.0]
    """
    return float(min(max_s, min_s * 2 ** max(attempt - 1, 0)))


def dead_lettered(attempts: int, max_attempts: float) -> bool:
    """A message whose ``attempts``-th delivery failed goes to the dead-letter topic once it reaches the
    subscription's maximum delivery attempts."""
    return attempts >= max_attempts


# ------------------------------------------------------------------ Cloud Run


def desired_instances(cpu_busy: float, in_flight: float, cpu: float, concurrency: int, min_instances: int,
                      max_instances: int, rules: Rules) -> int:
    """Cloud Run's autoscaler: instances = max(from CPU, from concurrency), within min..max.

    ``cpu_busy`` is the vCPUs in use and ``in_flight`` the requests being served, both averaged over the
    ``averaging_window_s``; from CPU = cpu_busy / (target_cpu x cpu per instance), from concurrency =
    in_flight / (target_concurrency x concurrency), each rounded up.

    >>> desired_instances(3.0, 20, cpu=1, concurrency=30, min_instances=0, max_instances=100, rules=Rules())
    5
    """
    from_cpu = math.ceil(round(cpu_busy / (rules.target_cpu * cpu), 9))
    from_concurrency = math.ceil(round(in_flight / (rules.target_concurrency * concurrency), 9))
    return max(min_instances, min(max_instances, max(from_cpu, from_concurrency)))


def instances_for_pending(pending: int, starting: int, concurrency: int) -> int:
    """New instances to start for requests that found no free slot: enough that the instances already
    starting plus the new ones can take every pending request at full concurrency.

    >>> instances_for_pending(pending=70, starting=1, concurrency=30)
    2
    """
    needed = math.ceil(pending / concurrency)
    return max(0, needed - starting)


def pending_wait_s(average_startup_s: float, rules: Rules) -> float:
    """How long a request waits for a free instance before Cloud Run answers 429:
    max(``pending_wait_min_s``, ``pending_wait_startup_factor`` x average startup time)."""
    return max(rules.pending_wait_min_s, rules.pending_wait_startup_factor * average_startup_s)


def startup_s(measured_s: float, startup_delay_s: float, rules: Rules) -> float:
    """An instance's time from start to ready: the platform's ``cold_start_overhead_s``, our container's
    measured start (at the boosted CPU when boost is on: the caller looks that up), and the simulated
    initialisation delay of the study's experiment (``WORKER_STARTUP_DELAY_S``)."""
    return rules.cold_start_overhead_s + measured_s + startup_delay_s


def startup_cpus(cpu: float, boost: bool, rules: Rules) -> float:
    """vCPUs an instance starts with: ``boost_cpu_factor`` x cpu with startup CPU boost, else cpu."""
    return cpu * rules.boost_cpu_factor if boost else cpu


# ------------------------------------------------------------------ our worker


def admission(held: int, service_s: float, budget_s: float, max_held: int) -> Admission:
    """Our worker's admission by time: exactly :func:`worker.runner.decide_admission` (not a copy)."""
    return decide_admission(held, service_s, budget_s, max_held)


# ------------------------------------------------------------------ billing


def request_based_cost(active_s: float, idle_min_s: float, requests: int, cpu: float, memory_gib: float,
                       rules: Rules) -> float:
    """Cloud Run request-based billing (CPU only while serving): vCPU-s and GiB-s while an instance serves at
    least one request, the request fee, and min instances while idle at the idle price.

    >>> round(request_based_cost(3600, 0, 1_000_000, cpu=1, memory_gib=2, rules=Rules()), 4)
    0.5
    """
    active = active_s * (cpu * rules.price_vcpu_s_request + memory_gib * rules.price_gib_s_request)
    idle = idle_min_s * (cpu * rules.price_idle_vcpu_s + memory_gib * rules.price_idle_gib_s)
    return active + idle + requests * rules.price_per_million_requests / 1e6


def instance_based_cost(instance_s: float, cpu: float, memory_gib: float, rules: Rules) -> float:
    """Instance-based billing (worker pools; services with CPU always allocated): every second an instance
    exists, starting, busy or idle; no request fee.

    >>> round(instance_based_cost(3600, cpu=1, memory_gib=2, rules=Rules()), 4)
    0.0792
    """
    return instance_s * (cpu * rules.price_vcpu_s_instance + memory_gib * rules.price_gib_s_instance)


def pubsub_cost(messages: int, deliveries: int, message_bytes: float, rules: Rules) -> float:
    """Pub/Sub: each message's bytes (at least ``pubsub_min_bytes``) once at publish and once per delivery.

    >>> round(pubsub_cost(1_000_000, 1_000_000, 100_000, Rules()) * 1000) / 1000
    7.276
    """
    billed = max(message_bytes, rules.pubsub_min_bytes)
    return (messages + deliveries) * billed * rules.price_pubsub_tib / 2**40


def storage_write_cost(writes: int, rules: Rules) -> float:
    """GCS Class A operations for the result objects (create-only writes)."""
    return writes * rules.price_gcs_class_a_per_1000 / 1000
