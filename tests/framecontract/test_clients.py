"""Without an emulator and without Google credentials, every CLI says what to do in one line.

Runs the real CLIs in subprocesses with an empty gcloud config, no GOOGLE_APPLICATION_CREDENTIALS,
and NO_GCE_CHECK=true (so nothing looks for the GCE metadata server): the production code path up to
the point where the Google client libraries look for credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from framecontract.clients import NO_CREDENTIALS_HELP, NoCredentialsError, make_publisher, make_storage_client
from framecontract.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_credentials_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")}
    env |= {"CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "NO_GCE_CHECK": "true",
            "FRAME_FANOUT_SETTINGS": str(tmp_path / "no-settings.json"), "GOOGLE_CLOUD_PROJECT": "p"}
    return env


def test_producer_without_credentials(no_credentials_env, tmp_path) -> None:
    from tests.producer.helpers import write_synthetic_video  # a tiny real video

    video = tmp_path / "clip.avi"
    write_synthetic_video(video, frames=3, fps=10)
    proc = subprocess.run([sys.executable, "-m", "producer", str(video)], env=no_credentials_env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: {NO_CREDENTIALS_HELP}"


def test_collector_without_credentials(no_credentials_env) -> None:
    proc = subprocess.run([sys.executable, "-m", "collector.cli", "status", "--job", "x"], env=no_credentials_env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: {NO_CREDENTIALS_HELP}"


def test_clients_raise_no_credentials_error(monkeypatch, tmp_path) -> None:
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    with pytest.raises(NoCredentialsError, match="gcloud auth application-default login"):
        make_storage_client(Settings(project="p"))
    with pytest.raises(NoCredentialsError):
        make_publisher(Settings(project="p"))
