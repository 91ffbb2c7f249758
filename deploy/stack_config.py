"""The local stack's pure parts: its configuration, the Pub/Sub requests it makes, its state file.

Usage::

    config = StackConfig(workers=2, topic="frames")
    request = push_subscription_request(config, worker_url="http://127.0.0.1:8080")
    state = StackState.read(stack_dir)   # None when nothing was started there

No processes and no network here (see deploy/local.py for those).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from framecontract.endpoints import PUSH_PATH
from framecontract.settings import Settings, subscription_path, topic_path

STATE_FILE = "stack.json"
STATE_VERSION = 1
DEFAULT_APP = "worker.app:create_app()"
RETRY_POLICY = None
"""The local subscriptions have NO retry policy (Google Cloud's do: deploy.gcp). Under one, the emulator
(0.8.20) stops delivering messages whose delivery failed while others were failing too. Measured, min 1 s /
max 10 s (also 2/8, 1/4, 1/2): 2-6 pushes answered 503 were pushed at 0, 1 and 4 s and then never again,
nor dead-lettered, in 400 s; 8 pulled messages whose ack deadline a worker set to 2 s came back at 2 and 6 s
and then never (8 of 8 got their 5 attempts without the policy; a message failing alone gets them either
way). Without a policy a failed push comes back about 1 s after its answer, and a pulled message when the
delay the pull worker set runs out (2, 4, 8 ... s by attempt: worker/pull.py); docs/faults.md has what
outage each setting rides out."""

# Start order; stop order is PUBSUB first (no more deliveries), then the workers, then storage.
PUBSUB, STORAGE, WORKERS, PULL_WORKERS = "pubsub-emulator", "storage-emulator", "workers", "pull-workers"
STOP_ORDER = (PUBSUB, PULL_WORKERS, WORKERS, STORAGE)
MODES = ("pull", "push")
"""How frames reach the workers: ``pull`` (pull processes, as many as asked, each holding a few
messages: uses every core) or ``push`` (the emulator pushes to gunicorn, at most 2 requests in flight)."""


class StackConfigError(ValueError):
    """A stack configuration that cannot work."""


@dataclass(frozen=True)
class StackConfig:
    """What ``deploy.local up`` starts. Ports: None or 0 → a free port.

    Usage: ``StackConfig(workers=2, port=None, stack_dir=tmp_path)``
    """

    workers: int = 2
    mode: str = "pull"
    pull_max_held: int = 3
    status_port: int | None = None
    """Pull workers' /healthz, /readyz, /metrics (None or 0: a free port)."""
    port: int | None = 8080
    pubsub_port: int | None = 8085
    storage_port: int | None = 9023
    host: str = "127.0.0.1"
    project: str = "local-project"
    topic: str = "frames"
    bucket: str = "frames"
    ack_deadline: int = 60
    max_delivery_attempts: int = 5
    app: str = DEFAULT_APP
    worker_timeout: int = 120
    ready_timeout: float = 90.0
    stack_dir: Path | None = None
    settings_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def subscription(self) -> str:
        """``<topic>-pull`` or ``<topic>-push``: the subscription that delivers frames to the workers."""
        return f"{self.topic}-{self.mode}"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}-dead-letter"

    @property
    def dead_letter_subscription(self) -> str:
        return f"{self.topic}-dead-letter-pull"


def validate(config: StackConfig) -> None:
    """Raise StackConfigError for values the emulator or gunicorn would reject."""
    problems = []
    if not 1 <= config.workers <= 64:
        problems.append(f"workers must be 1-64, got {config.workers}")
    if config.mode not in MODES:
        problems.append(f"mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    if not 1 <= config.pull_max_held <= 100:
        problems.append(f"pull max held must be 1-100, got {config.pull_max_held}")
    if not 10 <= config.ack_deadline <= 600:
        problems.append(f"ack deadline must be 10-600 s, got {config.ack_deadline}")
    if not 5 <= config.max_delivery_attempts <= 100:
        problems.append(f"max delivery attempts must be 5-100 (Pub/Sub's limits), got {config.max_delivery_attempts}")
    for name in ("port", "pubsub_port", "storage_port", "status_port"):
        value = getattr(config, name)
        if value is not None and not 0 <= value <= 65535:
            problems.append(f"{name} must be 0-65535, got {value}")
    if ":" not in config.app:
        problems.append(f"app must look like module:callable, got {config.app!r}")
    if problems:
        raise StackConfigError("; ".join(problems))


def push_endpoint(worker_url: str) -> str:
    return worker_url.rstrip("/") + PUSH_PATH


def push_subscription_request(config: StackConfig, worker_url: str) -> dict[str, Any]:
    """The ``SubscriberClient.create_subscription(request=...)`` body for the workers' push subscription:
    ack deadline and dead-letter policy, no retry policy (:data:`RETRY_POLICY` says why)."""
    return {
        "name": subscription_path(config.project, config.subscription),
        "topic": topic_path(config.project, config.topic),
        "push_config": {"push_endpoint": push_endpoint(worker_url)},
        "ack_deadline_seconds": config.ack_deadline,
        "dead_letter_policy": {
            "dead_letter_topic": topic_path(config.project, config.dead_letter_topic),
            "max_delivery_attempts": config.max_delivery_attempts,
        },
    }


PULL_ACK_DEADLINE_S = 10
"""The pull subscription's ack deadline: the pull workers' lease (``worker.pull.LEASE_S``), so a message
needs no deadline change when it arrives, and one held by a process that died comes back within 10 s."""


def pull_subscription_request(config: StackConfig) -> dict[str, Any]:
    """The pull subscription of the pull workers: the push subscription's dead-letter policy, no push
    endpoint, an ack deadline of :data:`PULL_ACK_DEADLINE_S` (the workers extend it while they hold a message)."""
    return {
        "name": subscription_path(config.project, config.subscription),
        "topic": topic_path(config.project, config.topic),
        "ack_deadline_seconds": PULL_ACK_DEADLINE_S,
        "dead_letter_policy": {
            "dead_letter_topic": topic_path(config.project, config.dead_letter_topic),
            "max_delivery_attempts": config.max_delivery_attempts,
        },
    }


def pull_workers_command(python: str, config: StackConfig, status_port: int) -> list[str]:
    """The pull workers: a supervisor and ``config.workers`` processes (``python -m worker.pull``)."""
    return [
        python, "-m", "worker.pull",
        "--processes", str(config.workers),
        "--max-held", str(config.pull_max_held),
        "--status-port", str(status_port),
        "--status-host", config.host,
    ]


def dead_letter_subscription_request(config: StackConfig) -> dict[str, Any]:
    """A pull subscription on the dead-letter topic, so dead letters are kept (and can be inspected)."""
    return {
        "name": subscription_path(config.project, config.dead_letter_subscription),
        "topic": topic_path(config.project, config.dead_letter_topic),
        "ack_deadline_seconds": 60,
    }


def gunicorn_command(python: str, config: StackConfig, port: int, no_control_socket: bool = False) -> list[str]:
    """The workers: one gunicorn, N processes, with the threads of ``worker.gunicorn_conf``.

    ``no_control_socket``: gunicorn >= 25 opens a control socket at ``~/.gunicorn/gunicorn.ctl`` by
    default, shared by every gunicorn of the user; the stack does not use it, so turn it off.
    """
    return [
        python, "-m", "gunicorn",
        "--config", "python:worker.gunicorn_conf",
        "--workers", str(config.workers),
        "--bind", f"{config.host}:{port}",
        "--timeout", str(config.worker_timeout),
        "--graceful-timeout", "10",
        *(["--no-control-socket"] if no_control_socket else []),
        config.app,
    ]


def stack_settings(config: StackConfig, pubsub_host: str, storage_url: str, worker_url: str) -> Settings:
    """The Settings every part reads to find the stack."""
    return Settings(
        project=config.project,
        topic=config.topic,
        subscription=config.subscription,
        bucket=config.bucket,
        pubsub_emulator_host=pubsub_host,
        storage_emulator_host=storage_url,
        worker_url=worker_url,
        dead_letter_subscription=config.dead_letter_subscription,
    )


@dataclass
class ComponentRecord:
    """One started process: enough to find, show and stop it later."""

    name: str
    pid: int
    start_time: int | None
    url: str | None
    log: str
    cmd: list[str]


@dataclass
class StackState:
    """``<stack dir>/stack.json``: what ``up`` started, written as it goes so ``down`` can undo it.

    Usage: ``state.write(stack_dir)``; ``StackState.read(stack_dir)``
    """

    stack_dir: str
    settings_file: str
    config: dict[str, Any]
    components: list[ComponentRecord] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    complete: bool = False
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StackConfigError(f"unknown stack state format (version {data.get('version')!r})")
        data["components"] = [ComponentRecord(**c) for c in data.get("components", [])]
        return cls(**data)

    def component(self, name: str) -> ComponentRecord | None:
        return next((c for c in self.components if c.name == name), None)

    def write(self, stack_dir: Path) -> Path:
        """Write ``stack.json`` and a ``<name>.pid`` file per component (atomically)."""
        stack_dir.mkdir(parents=True, exist_ok=True)
        path = stack_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)
        for comp in self.components:
            (stack_dir / f"{comp.name}.pid").write_text(f"{comp.pid}\n")
        return path

    @classmethod
    def read(cls, stack_dir: Path) -> StackState | None:
        """The recorded state, or None if nothing is recorded in ``stack_dir``."""
        try:
            text = (stack_dir / STATE_FILE).read_text()
        except FileNotFoundError:
            return None
        try:
            return cls.from_json(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise StackConfigError(f"{stack_dir / STATE_FILE} is corrupt ({exc}); remove it after checking "
                                   "that no emulator or gunicorn from an earlier `up` is still running") from exc

    @staticmethod
    def remove(stack_dir: Path) -> None:
        """Remove ``stack.json`` and the pid files (logs stay)."""
        for path in [stack_dir / STATE_FILE, *stack_dir.glob("*.pid")]:
            path.unlink(missing_ok=True)


def config_to_dict(config: StackConfig) -> dict[str, Any]:
    """JSON-able form of a config, for the state file."""
    data = asdict(config)
    for key in ("stack_dir", "settings_file"):
        if data[key] is not None:
            data[key] = str(data[key])
    return data


def config_from_dict(data: dict[str, Any]) -> StackConfig:
    """The config a state file recorded (:func:`config_to_dict` reversed)."""
    values = dict(data)
    for key in ("stack_dir", "settings_file"):
        if values.get(key) is not None:
            values[key] = Path(values[key])
    return StackConfig(**values)
