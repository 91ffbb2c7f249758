"""The SimPy model on small cases whose answers can be worked out by hand; same seed, same result."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loadtest.planner.config import ClosedLoop, CloudRun, LocalStack, OpenLoop, Server, SimConfig, WorkerPool
from loadtest.planner.model import simulate
from loadtest.planner.profile import Distribution
from loadtest.planner.rules import Rules


def const(ms: float) -> Distribution:
    return Distribution.constant(ms)


def server(kind: str = "worker", lock_ms: float = 100, outside_ms: float = 0, budget_s: float = 30,
           max_held: int = 3) -> Server:
    if kind == "baseline":
        return Server.baseline(const(lock_ms), const(outside_ms), const(lock_ms))
    return Server("worker", const(lock_ms), const(outside_ms), const(lock_ms), budget_s, max_held)


def test_an_idle_pull_worker_answers_each_frame_in_its_service_time() -> None:
    config = SimConfig(load=OpenLoop(cameras=1, fps=2), delivery="pull", target=LocalStack(processes=1),
                       server=server(lock_ms=100, outside_ms=20), duration_s=10, seed=3)
    result = simulate(config)
    assert result.frames == result.results == 20
    assert np.allclose(result.frame_latencies_s, 0.12)  # 100 ms holding the pipeline + 20 ms around it
    assert result.redeliveries == result.dead_lettered == result.unfinished == 0


def test_a_cold_start_delays_the_first_answer_by_the_startup_time() -> None:
    config = SimConfig(load=ClosedLoop(users=1, spawn_rate=1), delivery="direct",
                       target=CloudRun(cpu=1, memory_gib=1, concurrency=1, min_instances=0, max_instances=1),
                       server=server("baseline", lock_ms=100), startup_s=5.0, duration_s=6.95, seed=1, rtt_s=1e-9)
    result = simulate(config)
    latencies = [answered - sent for sent, answered, kind in result.requests]
    assert all(kind == "ok" for *_, kind in result.requests)
    assert latencies[0] == pytest.approx(5.1)           # no instance: one starts (5 s), then 100 ms of work
    assert latencies[1:] == pytest.approx([0.1] * (len(latencies) - 1))
    assert result.peak_instances == 1


def test_at_max_instances_a_request_waits_10_s_for_a_free_one_then_gets_429() -> None:
    config = SimConfig(load=ClosedLoop(users=2, spawn_rate=1000), delivery="direct",
                       target=CloudRun(cpu=1, memory_gib=1, concurrency=1, min_instances=1, max_instances=1),
                       server=server("baseline", lock_ms=30_000), startup_s=0.0, duration_s=25, seed=1, rtt_s=1e-9)
    result = simulate(config)
    assert [(round(sent, 3), round(answered, 3), kind) for sent, answered, kind in result.requests] == [
        (0.001, 10.001, "429 (Cloud Run)"), (10.001, 20.001, "429 (Cloud Run)")]  # max(10 s, 3.5 x 0 s) each


def test_admission_by_time_admits_what_fits_the_budget_and_never_runs_late() -> None:
    config = SimConfig(load=ClosedLoop(users=10, spawn_rate=1000), delivery="direct", target=LocalStack(1),
                       server=server(lock_ms=300, budget_s=1.0, max_held=256), duration_s=20, seed=1, rtt_s=0.001)
    result = simulate(config)
    kinds = {kind for *_, kind in result.requests}
    assert {"ok", "429"} <= kinds
    ok = [answered - sent for sent, answered, kind in result.requests if kind == "ok"]
    assert max(ok) <= 1.0 + 0.3 + 1e-9                     # started within its 1 s budget, then 300 ms of work
    refused = [answered - sent for sent, answered, kind in result.requests if kind == "429"]
    assert max(refused) == pytest.approx(0.001)           # refused at once: the round trip only


def test_a_push_answered_after_the_ack_deadline_is_retried_with_backoff_then_dead_lettered() -> None:
    config = SimConfig(load=OpenLoop(cameras=1, fps=1), delivery="push",
                       target=CloudRun(cpu=1, memory_gib=1, concurrency=1, min_instances=1, max_instances=1),
                       server=server(lock_ms=100), duration_s=1, drain_s=200, ack_deadline_s=0.05,
                       retry_min_s=10, retry_max_s=600, max_delivery_attempts=5, seed=2)
    result = simulate(config)
    assert result.frames == result.results == 1            # the first processing stored the result
    assert result.deliveries == 5 and result.redeliveries == 4 and result.duplicates == 4
    assert result.dead_lettered == 1 and result.nacks_by_kind == {"ack deadline": 5}
    assert result.frame_latencies_s.tolist() == pytest.approx([0.1])


def test_the_emulator_keeps_two_pushes_in_flight() -> None:
    config = SimConfig(load=OpenLoop(cameras=20, fps=10), delivery="push", target=LocalStack(4),
                       server=server(lock_ms=100), duration_s=5, drain_s=60, local_push_window=True, seed=1)
    result = simulate(config)
    assert max(s.in_flight for s in result.timeline) <= 2
    assert result.results == result.frames == 1000
    span = result.last_result_s
    assert result.results / span == pytest.approx(20.0, rel=0.02)  # 2 in flight / 100 ms, however many processes


def test_cpu_target_sets_the_instance_count() -> None:
    # 20 cameras x 5 fps x 50 ms = 5 vCPUs busy; 5 / (0.6 x 1 vCPU) = 8.3 -> 9 instances
    config = SimConfig(load=OpenLoop(cameras=20, fps=5), delivery="push",
                       target=CloudRun(cpu=1, memory_gib=1, concurrency=4, min_instances=0, max_instances=20),
                       server=server(lock_ms=50, max_held=4), startup_s=1.0, duration_s=300, seed=1)
    result = simulate(config)
    assert result.timeline[-1].instances == 9
    assert result.unfinished == result.dead_lettered == 0


def test_billing_seconds() -> None:
    pool = simulate(SimConfig(load=OpenLoop(1, 1), delivery="pull", target=WorkerPool(cpu=1, memory_gib=2, instances=3),
                              server=server(lock_ms=100), duration_s=100, seed=1))
    assert pool.billing.instance_s == pytest.approx(300.0)  # 3 instances x 100 s, busy or not
    push = simulate(SimConfig(load=OpenLoop(1, 1), delivery="push",
                              target=CloudRun(cpu=1, memory_gib=2, concurrency=1, min_instances=1, max_instances=1),
                              server=server(lock_ms=100), duration_s=20, seed=1))
    frames = push.billing.frames
    assert push.billing.requests == frames == 20
    assert push.billing.active_s == pytest.approx(0.1 * frames)       # busy 100 ms per frame
    assert push.billing.idle_min_s == pytest.approx(20 - 0.1 * frames)  # the min instance idle the rest


def test_the_same_seed_gives_the_same_result_and_another_seed_another() -> None:
    shape = Distribution.from_values([30, 32, 35, 41, 60, 90])
    base = SimConfig(load=OpenLoop(cameras=8, fps=5), delivery="push",
                     target=CloudRun(cpu=1, memory_gib=1, concurrency=2, min_instances=0, max_instances=10),
                     server=Server("worker", shape, const(10), shape, 30, 2), startup_s=0.5, duration_s=60,
                     seed=7)
    one, two = simulate(base), simulate(base)
    assert one.frame_latencies_s.tolist() == two.frame_latencies_s.tolist()
    assert one.timeline == two.timeline
    assert (one.frames, one.results, one.billing) == (two.frames, two.results, two.billing)
    other = simulate(dataclasses.replace(base, seed=8))
    assert other.frame_latencies_s.tolist() != one.frame_latencies_s.tolist()


def test_a_scaled_run_simulates_a_sample_of_the_cameras_and_multiplies_back() -> None:
    config = SimConfig(load=OpenLoop(cameras=100, fps=1), delivery="pull", target=WorkerPool(1, 1, instances=10),
                       server=server(lock_ms=100), duration_s=20, seed=1, scale=10)
    result = simulate(config)
    assert result.frames == 2000 and result.results == 2000  # 10 cameras simulated x 20 s x 10
    assert result.billing.instance_s == pytest.approx(200.0)  # 1 instance simulated x 20 s x 10


def test_rules_reach_the_model() -> None:
    config = SimConfig(load=OpenLoop(cameras=1, fps=2), delivery="pull", target=LocalStack(1),
                       server=server(lock_ms=100, outside_ms=0), duration_s=5, seed=1,
                       rules=dataclasses.replace(Rules(), service_time_factor=2.0))
    assert np.allclose(simulate(config).frame_latencies_s, 0.2)
