"""The calibration profile: distributions, entry choice, JSON, and calibration from recorded run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.planner.calibrate import calibrate, delivery_delay_from_run, entry_from_run, stage_times
from loadtest.planner.profile import (
    DEFAULT_PROFILE,
    Distribution,
    Profile,
    ProfileError,
    StartupEntry,
    load_profile,
    profile_from_json,
    provenance_line,
    save_profile,
)

FIXTURES = Path(__file__).parent / "fixtures"
PULL_RUN = FIXTURES / "planner-pull-2fps"
FRONTDOOR_RUN = FIXTURES / "planner-frontdoor-4users"


def test_distribution_quantiles_sampling_and_mean() -> None:
    d = Distribution.from_values([10, 20, 30, 40, 50])
    assert d.quantiles_ms[0] == 10 and d.quantiles_ms[50] == 30 and d.quantiles_ms[100] == 50
    assert d.quantiles_ms[25] == 20                    # linear between order statistics
    assert d.sample_s(0.0) == 0.010 and d.sample_s(0.5) == 0.030
    assert d.mean_s == pytest.approx(0.030)
    assert d.scaled(2).mean_s == pytest.approx(0.060)
    assert Distribution.constant(7).sample_s(0.99) == 0.007


def test_distribution_rejects_what_is_not_one() -> None:
    with pytest.raises(ProfileError, match="no measured values"):
        Distribution.from_values([])
    with pytest.raises(ProfileError, match="101 ascending quantiles, got 3"):
        Distribution((1.0, 2.0, 3.0))


def test_an_entry_from_a_pull_pipeline_run() -> None:
    entry = entry_from_run(PULL_RUN, cores=2)
    assert (entry.kind, entry.delivery, entry.processes, entry.concurrency_per_process) == ("frame", "pull", 2, 3.0)
    assert entry.samples == 60 and entry.image_bytes == 163759
    assert entry.observed["good_per_s"] == pytest.approx(2.0, rel=0.05)
    assert entry.load == {"rate_fps": 2.0, "duration_s": 30.0, "frames": 60}
    records = [json.loads(line) for line in (PULL_RUN / "pull-workers.log").read_text().splitlines()
               if '"frame processed"' in line]
    locks = sorted(r["latency_ms"]["model"] + r["latency_ms"]["draw"] for r in records)
    assert entry.lock.quantiles_ms[0] == pytest.approx(locks[0]) and entry.lock.quantiles_ms[100] == pytest.approx(
        locks[-1])


def test_an_entry_from_a_front_door_run() -> None:
    entry = entry_from_run(FRONTDOOR_RUN, cores=2, role="validation")
    assert (entry.kind, entry.delivery, entry.processes, entry.role) == ("request", "direct", 2, "validation")
    assert entry.concurrency_per_process == 2.0        # 4 users over 2 processes
    assert entry.samples == 60 and entry.observed["requests"] == 747
    assert entry.load["users"] == 4 and entry.load["client"] == "study"


def test_stage_times_split_the_work() -> None:
    lock, outside, cpu = stage_times({"decode": 2.5, "queue": 40, "model": 30, "draw": 1.5, "encode": 2,
                                      "store_image": 3, "store": 8, "total": 84})
    assert (lock, outside, cpu) == (31.5, 12.5, 36.0)   # store includes store_image


def test_delivery_time_of_a_light_run() -> None:
    delivery = delivery_delay_from_run(PULL_RUN)
    assert 0 <= delivery.quantiles_ms[0] <= delivery.quantiles_ms[50] <= delivery.quantiles_ms[100] < 1000
    with pytest.raises(ProfileError, match="no frame records to measure the delivery time from"):
        delivery_delay_from_run(FRONTDOOR_RUN)


def test_calibrate_round_trips_through_json(tmp_path: Path) -> None:
    startup = [StartupEntry(1, (0.5, 0.4, 0.6), 240.0), StartupEntry(2, (0.3,), 250.0)]
    profile = calibrate([PULL_RUN], startup, "python -m loadtest calibrate x", cores=2,
                        validation_dirs=[FRONTDOOR_RUN], delivery_run=PULL_RUN, http_rtt_s=0.0001)
    path = tmp_path / "p.json"
    save_profile(profile, path)
    again = load_profile(path)
    assert [(e.id, e.role) for e in again.entries] == [("planner-pull-2fps", "calibration"),
                                                      ("planner-frontdoor-4users", "validation")]
    assert again.entries[0].lock == profile.entries[0].lock
    assert again.startup_s(1) == 0.5 and again.startup_s(2) == 0.3 and again.startup_s(4) == 0.3
    assert again.peak_rss_mib == 250.0 and again.http_rtt_s == 0.0001
    assert again.delivery_delay == profile.delivery_delay and again.delivery_source == "planner-pull-2fps"
    line = provenance_line(again, again.entries[0])
    assert " on 2 cores by python -m loadtest calibrate (2 runs)\n  service: planner-pull-2fps (frame, 60 " in line
    assert line.endswith("\n  startup (measured, median): 0.5 s on 1 core, 0.3 s on 2 cores; peak RSS 250 MiB "
                         "per process")
    assert again.provenance["command"] == "python -m loadtest calibrate x"


def test_the_planner_uses_calibration_entries_nearest_in_concurrency_then_least_contended(tmp_path: Path) -> None:
    base = entry_from_run(PULL_RUN, cores=2)
    import dataclasses

    busy = dataclasses.replace(base, id="busy", host={"host_mean": 99.0})
    calm = dataclasses.replace(base, id="calm", host={"host_mean": 40.0})
    deep = dataclasses.replace(base, id="deep", concurrency_per_process=100.0)
    held_out = dataclasses.replace(base, id="held-out", host={"host_mean": 1.0}, role="validation")
    profile = Profile({}, (busy, calm, deep, held_out), ())
    assert profile.service("frame", 3).id == "calm"
    assert profile.service("frame", 60).id == "deep"
    with pytest.raises(ProfileError, match="has no 'request' calibration entry"):
        profile.service("request", 1)


def test_profile_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError) as missing:
        load_profile(tmp_path / "none.json")
    assert str(missing.value) == (f"{tmp_path / 'none.json'}: no such profile; record one with "
                                  "python -m loadtest calibrate")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ProfileError, match="bad.json: not JSON"):
        load_profile(tmp_path / "bad.json")
    with pytest.raises(ProfileError, match=r"^x.json: not a planner profile \(format 1\)"):
        profile_from_json({"format": 9}, "x.json")


def test_the_committed_profile_loads_and_says_where_it_came_from() -> None:
    profile = load_profile(DEFAULT_PROFILE)
    assert {e.kind for e in profile.entries if e.role == "calibration"} == {"frame", "request"}
    assert any(e.role == "validation" for e in profile.entries)
    assert profile.startup and profile.delivery_delay is not None
    assert profile.provenance["command"].startswith("python -m loadtest calibrate ")
