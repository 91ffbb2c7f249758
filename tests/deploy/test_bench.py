"""The end-to-end benchmark's pure parts: idle share, where the cores went, the table."""

from __future__ import annotations

import pytest

from deploy.bench import ModeResult, StatSampler, core_shares, format_table, idle_share, proc_stat_times


def test_idle_share_between_two_readings() -> None:
    assert idle_share((100.0, 1000.0), (150.0, 1500.0)) == pytest.approx(0.1)
    assert idle_share((1.0, 1.0), (1.0, 1.0)) == 0.0  # no time passed


def test_the_sampler_takes_the_idle_share_up_to_the_end_of_the_measured_interval() -> None:
    with StatSampler(interval_s=0.01) as sampler:
        pass
    first_time = sampler.samples[0][0]
    assert 0.0 <= sampler.idle_share_until(first_time + 3600) <= 1.0
    assert sampler.idle_share_until(first_time - 1) == 0.0  # nothing before the end: no interval
    idle, total = proc_stat_times()
    assert 0 < idle <= total


def test_shares_of_the_cores_add_up_with_idle() -> None:
    result = ModeResult("pull", 795, 14.1, 56.4, 0.54, 0.02,
                        {"model": 19.3, "rest of the worker": 6.7, "Pub/Sub emulator": 4.6, "storage emulator": 1.2,
                         "producer": 2.1})
    shares = core_shares(result, cores=2)
    assert shares["model"] == pytest.approx(19.3 * 56.4 / 2000, abs=0.001)
    assert sum(shares.values()) == pytest.approx(0.976, abs=0.01)  # what was measured, plus idle, is ~all
    table = format_table([result], bound_fps=103.6, cores=2, per_core=[51.7, 51.9])
    assert "| pull | 795 | 14.1 | 56.4 | **0.54** | 2 % | 19.3 | 6.7 | 4.6 | 1.2 | 2.1 |" in table
    assert "pull: where the cores went: model 54 %, rest of the worker 19 %" in table
