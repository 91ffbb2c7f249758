"""Shared fixtures: the real emulators, and per-test buckets, topics and subscriptions on them.

Usage (in any test)::

    def test_x(gcs_settings):            # a fresh bucket on the storage emulator
        client = make_storage_client(gcs_settings)

    def test_y(pubsub_settings):         # + a fresh topic and a pull subscription on it
        make_publisher(pubsub_settings).publish(pubsub_settings.topic_path, b"...").result()

The session never reads the user's settings file or stack: ``FRAME_FANOUT_SETTINGS`` and
``FRAME_FANOUT_STACK`` point into a temp dir and inherited ``PUBSUB_EMULATOR_HOST``,
``STORAGE_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT`` and ``FRAMES_*`` are cleared first.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may look for Google's metadata server (a link-local address, not this machine): google-auth
# reads this once, at import, when it looks for default credentials.
os.environ["NO_GCE_CHECK"] = "true"

from deploy.emulators import EmulatorError, EmulatorNotInstalled, host_port, start_pubsub_emulator
from deploy.storage_emulator import StorageEmulator, StorageEmulatorError
from framecontract.settings import ENV_VARS, Settings


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def frame_fanout_test_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Session-wide: settings file and stack dir in a temp dir; no inherited emulator/resource env vars."""
    base = tmp_path_factory.mktemp("frame-fanout-env")
    patch = pytest.MonkeyPatch()
    for var in ENV_VARS.values():
        patch.delenv(var, raising=False)
    patch.setenv("FRAME_FANOUT_SETTINGS", str(base / "settings.json"))
    patch.setenv("FRAME_FANOUT_STACK", str(base / "stack"))
    yield base
    patch.undo()


@pytest.fixture(scope="session")
def pubsub_emulator(frame_fanout_test_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Google's Pub/Sub emulator on a free port for the session; yields ``"127.0.0.1:PORT"``.

    The process environment is left alone (clients get the host through ``Settings``). Missing Java or
    emulator → the tests using it ERROR with what to install (they are not skipped).
    """
    log_path = tmp_path_factory.mktemp("pubsub-emulator") / "pubsub-emulator.log"
    problem = None
    try:
        proc = start_pubsub_emulator(log_path=log_path)
    except EmulatorNotInstalled as exc:
        problem = f"Pub/Sub emulator unavailable: {exc}"
    except EmulatorError as exc:
        problem = f"Pub/Sub emulator did not start: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)  # an ERROR, not a skip: the tests need the real emulator
    try:
        yield host_port(proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def storage_emulator(frame_fanout_test_env: Path) -> Iterator[StorageEmulator]:
    """The patched in-memory GCS emulator in a thread, on a free port; ``.url``, ``.wipe()``.

    The process environment is left alone (clients get the URL through ``Settings``).
    """
    problem = None
    try:
        emulator = StorageEmulator().start()
    except StorageEmulatorError as exc:
        problem = f"storage emulator unavailable: {exc}"
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_settings(storage_emulator: StorageEmulator) -> Settings:
    """Settings(project="test-project", bucket=<unique, created>, storage_emulator_host=<url>)."""
    from framecontract.clients import make_storage_client

    settings = Settings(
        project="test-project", bucket=_unique("test-bucket"), storage_emulator_host=storage_emulator.url
    )
    make_storage_client(settings).create_bucket(settings.bucket)
    return settings


@pytest.fixture
def pubsub_settings(gcs_settings: Settings, pubsub_emulator: str) -> Iterator[Settings]:
    """``gcs_settings`` + ``pubsub_emulator_host``, a created unique ``topic`` and a pull ``subscription`` on it."""
    import dataclasses

    from framecontract.clients import make_publisher, make_subscriber

    settings = dataclasses.replace(
        gcs_settings, pubsub_emulator_host=pubsub_emulator,
        topic=_unique("test-topic"), subscription=_unique("test-sub"),
    )
    publisher = make_publisher(settings)
    subscriber = make_subscriber(settings)
    try:
        publisher.create_topic(name=settings.topic_path)
        subscriber.create_subscription(name=settings.subscription_path, topic=settings.topic_path)
        yield settings
    finally:
        with contextlib.suppress(Exception):  # best-effort clean-up of per-test resources
            subscriber.delete_subscription(subscription=settings.subscription_path)
            publisher.delete_topic(topic=settings.topic_path)
        subscriber.close()
        publisher.transport.close()
