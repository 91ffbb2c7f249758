"""Where things are: project, topic, bucket, emulators. Shared by every part.

Usage::

    settings = load_settings()           # env vars, else the local stack's settings file
    settings.apply_emulator_env()        # so the Google client libraries find the emulators

Precedence, highest first: explicit overrides (CLI flags) > environment variables > the settings
file written by ``python -m deploy.local up`` > defaults.

Environment variables: ``GOOGLE_CLOUD_PROJECT``, ``FRAMES_TOPIC``, ``FRAMES_SUBSCRIPTION``,
``FRAMES_BUCKET``, ``PUBSUB_EMULATOR_HOST``, ``STORAGE_EMULATOR_HOST``,
``FRAME_FANOUT_SETTINGS`` (path of the settings file), ``FRAME_FANOUT_CACHE`` (cache folder).
"""

from __future__ import annotations

import dataclasses
import json
import os
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
}


class SettingsError(ValueError):
    """Settings that are missing or malformed."""


def cache_dir() -> Path:
    """Cache for models, sample media and tool venvs: ``$FRAME_FANOUT_CACHE`` or ``~/.cache/frame-fanout``."""
    override = os.environ.get("FRAME_FANOUT_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "frame-fanout"


def stack_dir() -> Path:
    """State of the local stack (pids, logs, settings): ``$FRAME_FANOUT_STACK`` or ``<cache>/stack``."""
    override = os.environ.get("FRAME_FANOUT_STACK")
    return Path(override).expanduser() if override else cache_dir() / "stack"


def settings_path() -> Path:
    """The settings file: ``$FRAME_FANOUT_SETTINGS`` or ``<stack dir>/settings.json``."""
    override = os.environ.get("FRAME_FANOUT_SETTINGS")
    return Path(override).expanduser() if override else stack_dir() / "settings.json"


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

    def apply_emulator_env(self) -> None:
        """Export the emulator hosts so google-cloud-pubsub / -storage talk to the emulators."""
        if self.pubsub_emulator_host:
            os.environ["PUBSUB_EMULATOR_HOST"] = self.pubsub_emulator_host
        if self.storage_emulator_host:
            os.environ["STORAGE_EMULATOR_HOST"] = self.storage_emulator_host

    @property
    def topic_path(self) -> str:
        return f"projects/{self.project}/topics/{self.topic}"

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{self.subscription}"

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


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from overrides > environment > settings file > defaults."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    file_override = environ.get("FRAME_FANOUT_SETTINGS")
    values.update(read_settings_file(Path(file_override).expanduser() if file_override else settings_path()))
    for name, var in ENV_VARS.items():
        if environ.get(var):
            values[name] = environ[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return Settings(**values)
