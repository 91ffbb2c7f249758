"""Google client construction, for the emulators and for production alike.

Usage::

    storage_client = make_storage_client(settings)
    publisher = make_publisher(settings)
"""

from __future__ import annotations

from typing import Any

from framecontract.settings import Settings


def make_storage_client(settings: Settings) -> Any:
    """A ``google.cloud.storage.Client``; under the emulator it needs no credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    settings.apply_emulator_env()
    if settings.storage_emulator_host:
        return storage.Client(project=settings.project, credentials=AnonymousCredentials())
    return storage.Client(project=settings.project)


def make_publisher(settings: Settings, **kwargs: Any) -> Any:
    """A ``google.cloud.pubsub_v1.PublisherClient`` (emulator when ``pubsub_emulator_host`` is set)."""
    from google.cloud import pubsub_v1

    settings.apply_emulator_env()
    return pubsub_v1.PublisherClient(**kwargs)
