"""Fixtures of the producer tests (the emulator fixtures are in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.producer.helpers import write_synthetic_video

SYNTHETIC_FRAMES = 24
SYNTHETIC_FPS = 12.0


@pytest.fixture
def synthetic_video(tmp_path: Path) -> Path:
    """A 2-second MJPG AVI, 24 frames at 12 fps, 160x120, frame i of brightness ``brightness_of(i)``."""
    return write_synthetic_video(tmp_path / "clip.avi", SYNTHETIC_FRAMES, SYNTHETIC_FPS)


@pytest.fixture(scope="session")
def vtest_path() -> Path:
    """OpenCV's vtest.avi from the asset cache (``make test`` fetches it; else AssetMissingError says how)."""
    from framecontract.assets import asset_path

    return asset_path("vtest")
