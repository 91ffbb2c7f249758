"""Scenario validation: every problem reported, with exact messages; the shipped scenarios are valid."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from loadtest.scenario import (
    SCENARIO_DIR,
    ScenarioError,
    gcp_flags,
    load_scenario,
    parse_scenario,
    with_overrides,
    worker_env,
)

GOOD = {
    "name": "exp",
    "description": "an experiment",
    "load": {"users": 100, "spawn_rate": 10, "duration_s": 60},
    "deploy": {"target": "cloud-run", "concurrency": 30, "min_instances": 5, "max_instances": 100, "cpu": 1,
               "memory": "2Gi", "cpu_boost": True, "startup_delay_s": 10},
}


def problems(document: object) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(document, "x.yml")
    return str(info.value).splitlines()


def changed(path: str, value: object) -> dict:
    document = copy.deepcopy(GOOD)
    *parents, key = path.split(".")
    target = document
    for parent in parents:
        target = target[parent]
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return document


def test_good_scenario_parses_with_defaults() -> None:
    scenario = parse_scenario(GOOD, "x.yml")
    assert (scenario.load.users, scenario.load.fps, scenario.load.image, scenario.load.processes) == (100, 0, "dog",
                                                                                                     "auto")
    assert scenario.deploy.min_instances == 5 and scenario.study is None


def test_unknown_key_suggests_the_known_one() -> None:
    document = changed("load.users", KeyError)
    document["load"]["user"] = 5
    assert problems(document) == [
        "x.yml: load.user: unknown key (did you mean 'users'?)",
        "x.yml: load.users: missing",
    ]


def test_unknown_key_without_a_close_match_lists_the_keys() -> None:
    assert problems(changed("colour", "red")) == [
        "x.yml: colour: unknown key (known keys: name, description, study, load, deploy)"]


@pytest.mark.parametrize(("path", "value", "message"), [
    ("load.users", "many", "x.yml: load.users: must be an integer, got 'many'"),
    ("load.users", True, "x.yml: load.users: must be an integer, got True"),
    ("load.users", 0, "x.yml: load.users: must be between 1 and 100000, got 0"),
    ("load.spawn_rate", 0, "x.yml: load.spawn_rate: must be > 0 and <= 10000, got 0"),
    ("load.fps", -1, "x.yml: load.fps: must be >= 0 and <= 1000, got -1"),
    ("load.processes", "many", "x.yml: load.processes: must be 'auto' or an integer between 1 and 64, got 'many'"),
    ("name", "Study 1", "x.yml: name: must match [a-z0-9][a-z0-9-]* (at most 63 characters), got 'Study 1'"),
    ("description", " ", "x.yml: description: must be a non-empty string, got ' '"),
    ("deploy.cpu", 3, "x.yml: deploy.cpu: must be one of 1, 2, 4, 6, 8 (Cloud Run vCPUs), got 3"),
    ("deploy.memory", "2GB", "x.yml: deploy.memory: must look like 512Mi or 2Gi, got '2GB'"),
    ("deploy.memory", "64Gi", "x.yml: deploy.memory: must be between 128Mi and 32Gi, got 64Gi"),
    ("deploy.cpu_boost", "yes", "x.yml: deploy.cpu_boost: must be true or false, got 'yes'"),
    ("deploy.target", "gke", "x.yml: deploy.target: must be one of cloud-run, local, got 'gke'"),
    ("deploy.min_instances", 200, "x.yml: deploy.min_instances: must not exceed max_instances (200 > 100)"),
    ("deploy.concurrency", KeyError, "x.yml: deploy.concurrency: missing"),
    ("load", [1, 2], "x.yml: load: must be a mapping of keys to values, got list"),
])
def test_one_problem_one_message(path: str, value: object, message: str) -> None:
    assert problems(changed(path, value)) == [message]


def test_every_problem_is_listed() -> None:
    document = changed("load.users", -5)
    document["load"]["duration_s"] = 1.5
    del document["deploy"]
    assert problems(document) == [
        "x.yml: deploy: missing",
        "x.yml: load.users: must be between 1 and 100000, got -5",
        "x.yml: load.duration_s: must be an integer, got 1.5",
    ]


def test_local_target_takes_workers_not_cloud_run_settings() -> None:
    document = changed("deploy", {"target": "local", "workers": 2, "concurrency": 4})
    assert problems(document) == ["x.yml: deploy.concurrency: is a setting of target cloud-run, not of this one "
                                  "(it takes target, workers, startup_delay_s)"]
    document = changed("deploy.workers", 2)
    assert problems(document) == ["x.yml: deploy.workers: is a setting of target local, not of this one (it takes "
                                  "target, concurrency, min_instances, max_instances, cpu, memory, cpu_boost, "
                                  "startup_delay_s)"]
    assert problems(changed("deploy", {"target": "local"})) == ["x.yml: deploy.workers: missing"]


def test_not_a_mapping() -> None:
    assert problems(None) == ["x.yml: the file: must be a mapping of keys to values, got NoneType"]


def test_unknown_scenario_name() -> None:
    with pytest.raises(ScenarioError, match=r"^no scenario 'nope': not a file, and not one of: cameras-5fps, "):
        load_scenario("nope")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=rf"^{path}: not valid YAML: "):
        load_scenario(path)


def test_overrides_are_validated_too() -> None:
    scenario = parse_scenario(GOOD, "x.yml")
    assert with_overrides(scenario, users=200, duration_s=None).load.users == 200
    with pytest.raises(ScenarioError) as info:
        with_overrides(scenario, users=0)
    assert str(info.value) == "x.yml (with overrides users): load.users: must be between 1 and 100000, got 0"


def test_gcp_flags_and_worker_env() -> None:
    deploy = parse_scenario(GOOD, "x.yml").deploy
    assert gcp_flags(deploy) == ["--concurrency", "30", "--min-instances", "5", "--max-instances", "100",
                                 "--cpu", "1", "--memory", "2Gi", "--cpu-boost", "--startup-delay", "10"]
    assert worker_env(deploy) == {"WORKER_STARTUP_DELAY_S": "10"}
    off = parse_scenario(changed("deploy.cpu_boost", False), "x.yml").deploy
    assert gcp_flags(dataclasses.replace(off, startup_delay_s=0))[-3:] == ["--no-cpu-boost", "--startup-delay", "0"]
    local = parse_scenario(changed("deploy", {"target": "local", "workers": 2}), "x.yml").deploy
    assert gcp_flags(local) == [] and worker_env(local) == {}


def test_shipped_scenarios_are_valid_and_cover_the_study() -> None:
    names = {load_scenario(path).name for path in SCENARIO_DIR.glob("*.yml")}
    assert {"study-single-instance", "study-autoscaling", "study-startup-delay", "study-min-instances-0",
            "study-min-instances-5", "study-2cpu-concurrency-100", "study-1cpu-concurrency-30",
            "local-study-short"} <= names
    for path in SCENARIO_DIR.glob("*.yml"):
        assert load_scenario(path).name == path.stem, f"{path.name}: name must match the file name"
