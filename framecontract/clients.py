"""Google client construction, for the emulators and for production alike.

Usage::

    storage_client = make_storage_client(settings)
    publisher = make_publisher(settings)
    subscriber = make_subscriber(settings)

The emulator hosts are passed to each client explicitly (an ``api_endpoint`` for storage, a
plaintext gRPC channel for Pub/Sub); nothing here reads or writes the process environment's
``*_EMULATOR_HOST`` variables, so two settings in one process reach two different stacks.
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

    if settings.storage_emulator_host:
        return storage.Client(project=settings.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": settings.storage_emulator_host})
    try:
        return storage.Client(project=settings.project)
    except DefaultCredentialsError:
        raise NoCredentialsError() from None


def make_publisher(settings: Settings, **kwargs: Any) -> Any:
    """A ``google.cloud.pubsub_v1.PublisherClient`` (emulator when ``pubsub_emulator_host`` is set)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import pubsub_v1

    if settings.pubsub_emulator_host:
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        kwargs["transport"] = PublisherGrpcTransport(channel=_emulator_channel(settings.pubsub_emulator_host))
    try:
        return pubsub_v1.PublisherClient(**kwargs)
    except DefaultCredentialsError:
        raise NoCredentialsError() from None


def make_subscriber(settings: Settings, **kwargs: Any) -> Any:
    """A ``google.cloud.pubsub_v1.SubscriberClient`` (emulator when ``pubsub_emulator_host`` is set)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import pubsub_v1

    if settings.pubsub_emulator_host:
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        kwargs["transport"] = SubscriberGrpcTransport(channel=_emulator_channel(settings.pubsub_emulator_host))
    try:
        return pubsub_v1.SubscriberClient(**kwargs)
    except DefaultCredentialsError:
        raise NoCredentialsError() from None


def _emulator_channel(host: str) -> Any:
    """A plaintext gRPC channel to the emulator, with the limits the client library sets on its own channels."""
    import grpc

    return grpc.insecure_channel(host, options=[("grpc.max_send_message_length", -1),
                                                ("grpc.max_receive_message_length", -1),
                                                ("grpc.keepalive_time_ms", 30000)])
