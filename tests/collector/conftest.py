"""Collector fixtures shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from framecontract.clients import make_storage_client
from framecontract.settings import Settings


@pytest.fixture
def bucket(gcs_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: ANN201
    """The test bucket, with the environment pointing the CLI at it (and at no settings file)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_settings.storage_emulator_host or "")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", gcs_settings.project)
    monkeypatch.setenv("FRAMES_BUCKET", gcs_settings.bucket)
    monkeypatch.setenv("FRAME_FANOUT_SETTINGS", str(tmp_path / "no-settings.json"))
    return make_storage_client(gcs_settings).bucket(gcs_settings.bucket)
