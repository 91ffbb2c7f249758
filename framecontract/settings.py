"""Where things are: project, topic, bucket, emulators. Shared by every part.

Usage::

    settings = load_settings()           # env vars, else the local stack's settings file
    client = make_storage_client(settings)   # framecontract.clients: the emulator hosts go to the client

Precedence, highest first: explicit overrides (CLI flags) > environment variables > the settings
file written by ``python -m deploy.local up`` > defaults.

Environment variables: ``GOOGLE_CLOUD_PROJECT``, ``FRAMES_TOPIC``, ``FRAMES_SUBSCRIPTION``,
``FRAMES_BUCKET``, ``PUBSUB_EMULATOR_HOST``, ``STORAGE_EMULATOR_HOST``, ``FRAMES_DEAD_LETTER_SUBSCRIPTION``
(the pull subscription that keeps the dead-letter topic's messages; the collector reads it),
``FRAME_FANOUT_SETTINGS`` (path of the settings file), ``FRAME_FANOUT_CACHE`` (cache folder).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_VARS = {
    "project": "GOOGLE_CLOUD_PROJECT",
    "topic": "FRAMES_TOPIC",
    "subscription": "FRAMES_SUBSCRIPTION",
    "bucket": "FRAMES_BUCKET",
    "pubsub_emulator_host": "PUBSUB_EMULATOR_HOST",
    "storage_emulator_host": "STORAGE_EMULATOR_HOST",
    "dead_letter_subscription": "FRAMES_DEAD_LETTER_SUBSCRIPTION",
}


def topic_path(project: str, topic: str) -> str:
    """``projects/<project>/topics/<topic>``."""
    return f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    """``projects/<project>/subscriptions/<subscription>``."""
    return f"projects/{project}/subscriptions/{subscription}"


class SettingsError(ValueError):
    """Settings that are missing or malformed."""


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Cache for models, sample media and tool venvs: ``$FRAME_FANOUT_CACHE`` or ``~/.cache/frame-fanout``.

    ``environ`` defaults to the process environment (the edge); tests pass their own.
    """
    env = _env(environ)
    override = env.get("FRAME_FANOUT_CACHE")
    if override:
        return Path(override).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frame-fanout"


def stack_dir(environ: Mapping[str, str] | None = None) -> Path:
    """State of the local stack (pids, logs, settings): ``$FRAME_FANOUT_STACK`` or ``<cache>/stack``."""
    override = _env(environ).get("FRAME_FANOUT_STACK")
    return Path(override).expanduser() if override else cache_dir(environ) / "stack"


def settings_path(environ: Mapping[str, str] | None = None) -> Path:
    """The settings file: ``$FRAME_FANOUT_SETTINGS`` or ``<stack dir>/settings.json``."""
    override = _env(environ).get("FRAME_FANOUT_SETTINGS")
    return Path(override).expanduser() if override else stack_dir(environ) / "settings.json"


@dataclass(frozen=True)
class Settings:
    """Names of the cloud resources and, locally, the emulator hosts."""

    project: str = "local-project"
    topic: str = "frames"
    subscription: str = "frames-push"
    bucket: str = "frames"
    pubsub_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    worker_url: str | None = None
    dead_letter_subscription: str | None = None
    """The pull subscription on the dead-letter topic (``None``: not known; the collector then cannot tell a
    dead-lettered frame from a missing one). Settings files written before it existed still load."""

    @property
    def dead_letter_subscription_path(self) -> str | None:
        if not self.dead_letter_subscription:
            return None
        return subscription_path(self.project, self.dead_letter_subscription)

    def to_env(self) -> dict[str, str]:
        """The settings as environment variables, for a child process (``load_settings`` reads them back)."""
        values = dataclasses.asdict(self)
        return {var: str(values[name]) for name, var in ENV_VARS.items() if values[name]}

    @property
    def topic_path(self) -> str:
        return topic_path(self.project, self.topic)

    @property
    def subscription_path(self) -> str:
        return subscription_path(self.project, self.subscription)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def write(self, path: Path | None = None) -> Path:
        """Write the settings file (atomically) and return its path."""
        path = path or settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)
        return path


def read_settings_file(path: Path) -> dict[str, Any]:
    """The settings file's values; empty if the file does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} does not hold a JSON object")
    known = {f.name for f in dataclasses.fields(Settings)}
    return {k: v for k, v in data.items() if k in known}


def load_settings(overrides: dict[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from overrides > environment > settings file > defaults."""
    environ = _env(environ)
    values: dict[str, Any] = {}
    values.update(read_settings_file(settings_path(environ)))
    for name, var in ENV_VARS.items():
        if environ.get(var):
            values[name] = environ[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Settings(**values)
