"""Google client construction, for the emulators and for production alike.

Usage::

    storage_client = make_storage_client(settings)
    publisher = make_publisher(settings)
"""

from __future__ import annotations

from typing import Any

from framecontract.settings import Settings

NO_CREDENTIALS_HELP = (
    "no Google Cloud credentials found; run 'gcloud auth application-default login' (or set "
    "GOOGLE_APPLICATION_CREDENTIALS), or start the local stack with 'python -m deploy.local up'"
)


class NoCredentialsError(RuntimeError):
    """No emulator configured and no Google credentials: the message says what to do."""

    def __init__(self) -> None:
        super().__init__(NO_CREDENTIALS_HELP)


def make_storage_client(settings: Settings) -> Any:
    """A ``google.cloud.storage.Client``; under the emulator it needs no credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    settings.apply_emulator_env()
    if settings.storage_emulator_host:
        return storage.Client(project=settings.project, credentials=AnonymousCredentials())
    try:
        return storage.Client(project=settings.project)
    except DefaultCredentialsError:
        raise NoCredentialsError() from None


def make_publisher(settings: Settings, **kwargs: Any) -> Any:
    """A ``google.cloud.pubsub_v1.PublisherClient`` (emulator when ``pubsub_emulator_host`` is set)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import pubsub_v1

    settings.apply_emulator_env()
    try:
        return pubsub_v1.PublisherClient(**kwargs)
    except DefaultCredentialsError:
        raise NoCredentialsError() from None
