"""Scenarios: a load profile plus the deploy settings an experiment needs (YAML; pure validation).

Usage::

    scenario = load_scenario("study-autoscaling")          # a name in loadtest/scenarios/ or a path
    scenario = parse_scenario(yaml.safe_load(text), "x.yml")   # ScenarioError lists every problem
    scenario.load.users, scenario.deploy.max_instances
    gcp_flags(scenario.deploy)       # ['--concurrency', '80', '--min-instances', '0', ...] for deploy.gcp
    with_overrides(scenario, users=200, duration_s=60)

A scenario file::

    name: study-autoscaling
    description: App Engine autoscaling, the study's second run, as Cloud Run
    study: 0 % failures, ~300 req/s, p95 ~6 s, 13 instances      # optional: what the study saw
    load: {users: 1000, spawn_rate: 100, duration_s: 300, fps: 0, image: dog, processes: auto, client: study}
    deploy: {target: cloud-run, concurrency: 80, min_instances: 0, max_instances: 100,
             cpu: 1, memory: 2Gi, cpu_boost: false, startup_delay_s: 0}

``load.client`` is the client profile (:mod:`loadtest.profiles`): ``study`` (default; the study's
closed loop, no wait) or ``retry-after`` (waits what a 429/503's ``Retry-After`` asks).
``deploy.target: local`` takes ``workers`` (gunicorn processes of the local stack) and
``startup_delay_s`` instead of the Cloud Run settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.profiles import CLIENT_PROFILES, DEFAULT_PROFILE

SCENARIO_DIR = Path(__file__).parent / "scenarios"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MEMORY_PATTERN = re.compile(r"(\d+)(Mi|Gi)")
CLOUD_RUN_CPUS = (1, 2, 4, 6, 8)
MAX_MEMORY_MI = 32 * 1024
TARGETS = ("cloud-run", "local")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message lists every problem, one per line."""


@dataclass(frozen=True)
class LoadProfile:
    """What Locust does: users, spawn rate, duration, per-user rate (0 = no wait), image, processes, and
    the client profile (``study`` or ``retry-after``)."""

    users: int
    spawn_rate: float
    duration_s: int
    fps: float = 0.0
    image: str = "dog"
    processes: int | str = "auto"
    client: str = DEFAULT_PROFILE


@dataclass(frozen=True)
class DeploySettings:
    """Where the load goes; for Cloud Run the ``python -m deploy.gcp`` flags, for local the stack's workers."""

    target: str
    concurrency: int | None = None
    min_instances: int | None = None
    max_instances: int | None = None
    cpu: int | None = None
    memory: str | None = None
    cpu_boost: bool = False
    startup_delay_s: float = 0.0
    workers: int | None = None


@dataclass(frozen=True)
class Scenario:
    """One experiment: a name, what it is, what the study saw, its load profile and deploy settings."""

    name: str
    description: str
    load: LoadProfile
    deploy: DeploySettings
    study: str | None = None
    source: str = "<scenario>"


# ------------------------------------------------------------------ field checks (each returns a problem or None)

Check = Callable[[Any], str | None]


def _int(low: int, high: int) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if not low <= value <= high:
            return f"must be between {low} and {high}, got {value}"
        return None
    return check


def _number(low: float, high: float, low_open: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        if value > high or value < low or (low_open and value == low):
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            return f"must be {bound} and <= {high:g}, got {value:g}"
        return None
    return check


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"must be a non-empty string, got {value!r}"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r}"


def _name(value: Any) -> str | None:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        return f"must match [a-z0-9][a-z0-9-]* (at most 63 characters), got {value!r}"
    return None


def _processes(value: Any) -> str | None:
    if value == "auto":
        return None
    problem = _int(1, 64)(value)
    return None if problem is None else f"must be 'auto' or an integer between 1 and 64, got {value!r}"


def _client(value: Any) -> str | None:
    return None if value in CLIENT_PROFILES else f"must be one of {', '.join(CLIENT_PROFILES)}, got {value!r}"


def _target(value: Any) -> str | None:
    return None if value in TARGETS else f"must be one of {', '.join(TARGETS)}, got {value!r}"


def _cpu(value: Any) -> str | None:
    if isinstance(value, bool) or value not in CLOUD_RUN_CPUS:
        return f"must be one of {', '.join(map(str, CLOUD_RUN_CPUS))} (Cloud Run vCPUs), got {value!r}"
    return None


def _memory(value: Any) -> str | None:
    match = MEMORY_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return f"must look like 512Mi or 2Gi, got {value!r}"
    mebibytes = int(match[1]) * (1024 if match[2] == "Gi" else 1)
    if not 128 <= mebibytes <= MAX_MEMORY_MI:
        return f"must be between 128Mi and 32Gi, got {value}"
    return None


TOP_FIELDS: dict[str, tuple[Check, bool]] = {
    "name": (_name, True), "description": (_text, True), "study": (_text, False),
    "load": (lambda v: None, True), "deploy": (lambda v: None, True),
}
LOAD_FIELDS: dict[str, tuple[Check, bool]] = {
    "users": (_int(1, 100_000), True),
    "spawn_rate": (_number(0, 10_000, low_open=True), True),
    "duration_s": (_int(1, 86_400), True),
    "fps": (_number(0, 1000), False),
    "image": (_text, False),
    "processes": (_processes, False),
    "client": (_client, False),
}
CLOUD_RUN_FIELDS: dict[str, tuple[Check, bool]] = {
    "target": (_target, True),
    "concurrency": (_int(1, 1000), True),
    "min_instances": (_int(0, 1000), True),
    "max_instances": (_int(1, 1000), True),
    "cpu": (_cpu, True),
    "memory": (_memory, True),
    "cpu_boost": (_bool, False),
    "startup_delay_s": (_number(0, 600), False),
}
LOCAL_FIELDS: dict[str, tuple[Check, bool]] = {
    "target": (_target, True),
    "workers": (_int(1, 64), True),
    "startup_delay_s": (_number(0, 600), False),
}


def _check_mapping(data: Any, path: str, fields: Mapping[str, tuple[Check, bool]], problems: list[str],
                   elsewhere: tuple[str, Mapping[str, Any]] | None = None) -> dict:
    """Check one mapping against ``fields``; append problems; return the valid known values.

    ``elsewhere`` = (what, fields) names keys that belong to another variant (e.g. the other deploy target).
    """
    prefix = f"{path}." if path else ""
    if not isinstance(data, dict):
        problems.append(f"{path or 'the file'}: must be a mapping of keys to values, got {type(data).__name__}")
        return {}
    values = {}
    for key in data:
        if key not in fields and elsewhere and key in elsewhere[1]:
            problems.append(f"{prefix}{key}: is a setting of {elsewhere[0]}, not of this one (it takes "
                            f"{', '.join(fields)})")
        elif key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(fields)}"
            problems.append(f"{prefix}{key}: unknown key ({hint})")
    for key, (check, required) in fields.items():
        if key not in data:
            if required:
                problems.append(f"{prefix}{key}: missing")
            continue
        problem = check(data[key])
        if problem:
            problems.append(f"{prefix}{key}: {problem}")
        else:
            values[key] = data[key]
    return values


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate a loaded YAML document; :class:`ScenarioError` lists every problem as ``source: key: problem``."""
    problems: list[str] = []
    top = _check_mapping(data, "", TOP_FIELDS, problems)
    load = _check_mapping(top["load"], "load", LOAD_FIELDS, problems) if "load" in top else {}
    deploy: dict[str, Any] = {}
    if "deploy" in top:
        raw = top["deploy"]
        target = raw.get("target") if isinstance(raw, dict) else None
        if target == "local":
            deploy = _check_mapping(raw, "deploy", LOCAL_FIELDS, problems, ("target cloud-run", CLOUD_RUN_FIELDS))
        else:
            deploy = _check_mapping(raw, "deploy", CLOUD_RUN_FIELDS, problems, ("target local", LOCAL_FIELDS))
        lo, hi = deploy.get("min_instances"), deploy.get("max_instances")
        if lo is not None and hi is not None and lo > hi:
            problems.append(f"deploy.min_instances: must not exceed max_instances ({lo} > {hi})")
    if problems:
        raise ScenarioError("\n".join(f"{source}: {p}" for p in problems))
    return Scenario(
        name=top["name"], description=top["description"].strip(), study=top.get("study"),
        load=LoadProfile(**load), deploy=DeploySettings(**deploy), source=source,
    )


def scenario_path(spec: str | Path) -> Path:
    """A path as given if it exists, else ``loadtest/scenarios/<spec>.yml``; ScenarioError if neither."""
    path = Path(spec)
    if path.is_file():
        return path
    candidate = SCENARIO_DIR / f"{spec}.yml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("*.yml")))
    raise ScenarioError(f"no scenario {str(spec)!r}: not a file, and not one of: {known}")


def load_scenario(spec: str | Path) -> Scenario:
    """Read and validate a scenario file (see :func:`scenario_path` for ``spec``)."""
    import yaml

    path = scenario_path(spec)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, str(path))


def with_overrides(scenario: Scenario, **changes: Any) -> Scenario:
    """The scenario with load-profile fields replaced (``None`` values ignored), validated again."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return scenario
    load = {**dataclasses.asdict(scenario.load), **changes}
    document = {"name": scenario.name, "description": scenario.description, "load": load,
                "deploy": {k: v for k, v in dataclasses.asdict(scenario.deploy).items() if v is not None}}
    if scenario.study:
        document["study"] = scenario.study
    allowed = LOCAL_FIELDS if scenario.deploy.target == "local" else CLOUD_RUN_FIELDS
    document["deploy"] = {k: v for k, v in document["deploy"].items() if k in allowed}
    return parse_scenario(document, f"{scenario.source} (with overrides {', '.join(sorted(changes))})")


def gcp_flags(deploy: DeploySettings) -> list[str]:
    """The ``python -m deploy.gcp`` flags for Cloud Run settings (empty for a local target)."""
    if deploy.target != "cloud-run":
        return []
    flags = ["--concurrency", str(deploy.concurrency), "--min-instances", str(deploy.min_instances),
             "--max-instances", str(deploy.max_instances), "--cpu", str(deploy.cpu), "--memory", str(deploy.memory)]
    # explicit both ways: deploy.gcp's --cpu-boost defaults to on, and its other defaults may change
    flags.append("--cpu-boost" if deploy.cpu_boost else "--no-cpu-boost")
    flags += ["--startup-delay", f"{deploy.startup_delay_s:g}"]
    return flags


def worker_env(deploy: DeploySettings) -> dict[str, str]:
    """Worker environment a scenario needs (``WORKER_STARTUP_DELAY_S`` when it simulates initialisation)."""
    return {"WORKER_STARTUP_DELAY_S": f"{deploy.startup_delay_s:g}"} if deploy.startup_delay_s else {}
