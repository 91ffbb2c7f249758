"""The planner's rules as pure functions, against hand-computed cases; every constant sourced and overridable."""

from __future__ import annotations

import dataclasses

import pytest

from loadtest.planner import policies
from loadtest.planner.rules import RULE_SOURCES, Rules, RulesError, changed, rules_table, with_overrides
from worker.runner import decide_admission

R = Rules()


def test_every_rule_has_a_unit_and_a_source_and_is_in_the_table() -> None:
    names = [f.name for f in dataclasses.fields(Rules)]
    assert sorted(names) == sorted(RULE_SOURCES)
    table = rules_table()
    for name in names:
        unit, source = RULE_SOURCES[name]
        assert unit and len(source) > 10
        assert f"| `{name}` |" in table
    assert "field.md: Cloud Run autoscaling targets 60 % CPU" in RULE_SOURCES["target_cpu"][1]


def test_overrides_change_only_what_is_named() -> None:
    rules = with_overrides(R, ["target_cpu=0.7", "push_window_start = 1"])
    assert rules.target_cpu == 0.7 and rules.push_window_start == 1.0
    assert changed(rules) == {"target_cpu": 0.7, "push_window_start": 1.0}
    assert changed(R) == {}


@pytest.mark.parametrize(("setting", "message"), [
    ("target_cpu", "--set 'target_cpu': expected NAME=VALUE"),
    ("target_cpus=0.5", "--set 'target_cpus=0.5': no rule named 'target_cpus' (did you mean 'target_cpu'?); "
                        "python -m loadtest plan --rules lists them"),
    ("zzz=1", "--set 'zzz=1': no rule named 'zzz'; python -m loadtest plan --rules lists them"),
    ("target_cpu=lots", "--set 'target_cpu=lots': 'lots' is not a number"),
    ("target_cpu=-1", "--set 'target_cpu=-1': must be a finite number >= 0"),
    ("target_cpu=inf", "--set 'target_cpu=inf': must be a finite number >= 0"),
])
def test_bad_overrides_say_what_is_wrong(setting: str, message: str) -> None:
    with pytest.raises(RulesError) as excinfo:
        with_overrides(R, [setting])
    assert str(excinfo.value) == message


# ------------------------------------------------------------------ Pub/Sub push


def test_push_window_grows_by_one_per_ack_then_linearly_past_3000() -> None:
    assert policies.push_window_after_ack(5.0, healthy=True, rules=R) == 6.0
    window = 5.0
    for _ in range(5):  # one round trip of 5 acks doubles the window: exponential growth
        window = policies.push_window_after_ack(window, True, R)
    assert window == 10.0
    assert policies.push_window_after_ack(4000.0, True, R) == pytest.approx(4000.00025)
    assert policies.push_window_after_ack(8.0, healthy=False, rules=R) == 8.0


def test_push_window_halves_on_failure_never_below_one() -> None:
    assert policies.push_window_after_failure(10.0, R) == 5.0
    assert policies.push_window_after_failure(1.5, R) == 1.0
    assert policies.push_window_after_failure(10.0, with_overrides(R, ["push_window_shrink=0.8"])) == 8.0


def test_push_health_slow_or_too_many_nacks() -> None:
    assert policies.push_period_health(0.0, 0, 0, R) == policies.PeriodHealth(True, False)
    assert policies.push_period_health(5.0, 10, 10, R) == policies.PeriodHealth(True, False)  # 0.5 s average
    assert policies.push_period_health(11.0, 10, 10, R) == policies.PeriodHealth(False, False)  # 1.1 s > 1 s
    assert policies.push_period_health(1.0, 100, 99, R) == policies.PeriodHealth(True, False)  # 99 % acked
    assert policies.push_period_health(1.0, 100, 98, R) == policies.PeriodHealth(False, True)  # 98 %


def test_nack_pause_doubles_from_100_ms_to_60_s() -> None:
    pauses, pause = [], 0.0
    for _ in range(12):
        pause = policies.next_nack_pause_s(pause, R)
        pauses.append(pause)
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.8]
    assert pauses[-1] == 60.0 and max(pauses) == 60.0


def test_retry_backoff_and_dead_letter() -> None:
    assert [policies.retry_delay_s(a, 10, 600) for a in range(1, 9)] == [10, 20, 40, 80, 160, 320, 600, 600]
    assert policies.retry_delay_s(1, 0, 600) == 0
    assert not policies.dead_lettered(4, 5) and policies.dead_lettered(5, 5)


# ------------------------------------------------------------------ Cloud Run


@pytest.mark.parametrize(("cpu_busy", "in_flight", "cpu", "concurrency", "lo", "hi", "expected"), [
    (3.0, 20, 1, 30, 0, 100, 5),        # from CPU: 3 / 0.6 = 5; from concurrency: 20 / 18 -> 2
    (1.0, 100, 1, 30, 0, 100, 6),       # from concurrency: 100 / 18 = 5.6 -> 6
    (1.2, 0, 2, 80, 0, 100, 1),         # 1.2 / (0.6 x 2) = 1 exactly
    (0.0, 0, 1, 80, 5, 100, 5),         # min instances
    (90.0, 0, 1, 80, 0, 100, 100),      # max instances
    (0.6, 48, 1, 80, 0, 100, 1),        # both targets met exactly by one instance
])
def test_instances_from_the_cpu_and_concurrency_targets(cpu_busy: float, in_flight: float, cpu: int,
                                                        concurrency: int, lo: int, hi: int, expected: int) -> None:
    assert policies.desired_instances(cpu_busy, in_flight, cpu, concurrency, lo, hi, R) == expected


def test_other_targets_by_override() -> None:
    rules = with_overrides(R, ["target_cpu=0.9", "target_concurrency=0.9"])
    assert policies.desired_instances(3.0, 20, 1, 30, 0, 100, rules) == 4  # 3 / 0.9 = 3.3 -> 4


def test_pending_requests_start_instances_and_wait_then_429() -> None:
    assert policies.instances_for_pending(pending=1, starting=0, concurrency=80) == 1
    assert policies.instances_for_pending(pending=70, starting=1, concurrency=30) == 2
    assert policies.instances_for_pending(pending=30, starting=1, concurrency=30) == 0
    assert policies.pending_wait_s(0.5, R) == 10.0          # max(10 s, 3.5 x 0.5 s)
    assert policies.pending_wait_s(10.5, R) == 36.75        # 3.5 x 10.5 s


def test_startup_with_and_without_boost() -> None:
    assert policies.startup_s(measured_s=0.5, startup_delay_s=10, rules=R) == 10.5
    assert policies.startup_s(0.5, 0, with_overrides(R, ["cold_start_overhead_s=2"])) == 2.5
    assert policies.startup_cpus(1, boost=True, rules=R) == 1          # no sourced boost factor: no effect
    assert policies.startup_cpus(1, boost=True, rules=with_overrides(R, ["boost_cpu_factor=2"])) == 2
    assert policies.startup_cpus(1, boost=False, rules=with_overrides(R, ["boost_cpu_factor=2"])) == 1


def test_admission_is_the_workers_own_decision() -> None:
    for held, service, budget, cap in [(0, 0.05, 10, 256), (199, 0.05, 10, 256), (200, 0.05, 10, 256),
                                       (3, 0.05, 10, 3), (400, 0.05, 10, 1000)]:
        assert policies.admission(held, service, budget, cap) == decide_admission(held, service, budget, cap)
    assert policies.admission(198, 0.05, 10, 256).admit           # 198 x 50 ms + 50 ms = 9.95 s: fits
    refused = policies.admission(200, 0.05, 10, 256)               # 10.05 s: refused, back in 1 s
    assert not refused.admit and refused.retry_after_s == 1


# ------------------------------------------------------------------ billing (field.md's prices)


def test_request_based_billing() -> None:
    # an hour busy at 1 vCPU / 2 GiB: 3600 x (0.000024 + 2 x 0.0000025) = 0.1044; 100,000 requests: 0.04
    assert policies.request_based_cost(3600, 0, 100_000, cpu=1, memory_gib=2, rules=R) == pytest.approx(0.1444)
    # idle min instances at the (upper-bound) idle price, here the active price
    assert policies.request_based_cost(0, 3600, 0, cpu=1, memory_gib=2, rules=R) == pytest.approx(0.1044)


def test_instance_based_billing() -> None:
    # 2 vCPU / 4 GiB for an hour: 3600 x (2 x 0.000018 + 4 x 0.000002) = 0.1584
    assert policies.instance_based_cost(3600, cpu=2, memory_gib=4, rules=R) == pytest.approx(0.1584)


def test_messaging_costs() -> None:
    tib = 2**40
    assert policies.pubsub_cost(10, 10, 500, R) == pytest.approx(20 * 1000 * 40 / tib)  # at least 1,000 bytes
    assert policies.pubsub_cost(10, 12, 100_000, R) == pytest.approx(22 * 100_000 * 40 / tib)
    assert policies.storage_write_cost(2000, R) == pytest.approx(0.01)
