"""Publishing frames: batched, flow-controlled (bounded memory), every outcome counted.

Usage::

    client = make_publisher(settings, **PublishLimits().client_kwargs())
    publisher = FramePublisher(client, settings.topic_path)
    publisher.publish(message.data, message.attributes, frame_index=7)   # blocks while too much is pending
    publisher.flush(timeout=60)          # wait until every publish has succeeded or failed
    publisher.succeeded, publisher.failures

``publish`` blocks (flow control ``BLOCK``) while more than ``max_pending_bytes`` or
``max_pending_messages`` are unconfirmed, so a slow or stalled Pub/Sub slows the reader down
instead of filling memory. Futures are not kept: done-callbacks count successes and keep the
first failures, so a job of any length needs constant memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from framecontract.message import MAX_MESSAGE_BYTES

MAX_FAILURES_KEPT = 20


@dataclass(frozen=True)
class PublishLimits:
    """Batching and flow-control settings of the Pub/Sub publisher client."""

    batch_max_bytes: int = 4_000_000
    """Send a publish request when this many bytes are batched (server limit 10 MB per request)."""
    batch_max_messages: int = 100
    batch_max_latency_s: float = 0.02
    max_pending_bytes: int = 48_000_000
    """Unconfirmed bytes before ``publish`` blocks: bounds memory; must exceed one message (10 MB)."""
    max_pending_messages: int = 400

    def __post_init__(self) -> None:
        if self.max_pending_bytes < MAX_MESSAGE_BYTES:
            raise ValueError("max_pending_bytes must hold at least one maximal message (10 MB)")

    def client_kwargs(self) -> dict[str, Any]:
        """``batch_settings`` and ``publisher_options`` for ``pubsub_v1.PublisherClient``."""
        from google.cloud.pubsub_v1 import types

        return {
            "batch_settings": types.BatchSettings(
                max_bytes=self.batch_max_bytes,
                max_latency=self.batch_max_latency_s,
                max_messages=self.batch_max_messages,
            ),
            "publisher_options": types.PublisherOptions(
                flow_control=types.PublishFlowControl(
                    message_limit=self.max_pending_messages,
                    byte_limit=self.max_pending_bytes,
                    limit_exceeded_behavior=types.LimitExceededBehavior.BLOCK,
                )
            ),
        }


@dataclass(frozen=True, slots=True)
class PublishFailure:
    """A frame that could not be published, and why."""

    frame_index: int
    error: BaseException


class FramePublisher:
    """Publishes frame messages to one topic and keeps count of what was confirmed."""

    def __init__(self, client: Any, topic_path: str,
                 on_settled: Callable[[int, bool], None] | None = None) -> None:
        self._client = client
        self.topic_path = topic_path
        self._on_settled = on_settled
        """Called with ``(frame_index, ok)`` as each publish succeeds or fails (e.g. :class:`ConfirmedPrefix`)."""
        self._lock = threading.Condition()
        self.submitted = 0
        self.succeeded = 0
        self.failed = 0
        self.failures: list[PublishFailure] = []
        """The first :data:`MAX_FAILURES_KEPT` failures, in completion order."""

    @property
    def pending(self) -> int:
        """Messages submitted but neither confirmed nor failed yet."""
        with self._lock:
            return self.submitted - self.succeeded - self.failed

    def publish(self, data: bytes, attributes: dict[str, str], frame_index: int) -> None:
        """Submit one message; blocks while the flow-control limits are reached."""
        with self._lock:
            self.submitted += 1
        try:
            future = self._client.publish(self.topic_path, data, **attributes)
        except BaseException as exc:
            self._record(frame_index, exc)
            raise
        future.add_done_callback(lambda done: self._record(frame_index, done.exception()))

    def _record(self, frame_index: int, error: BaseException | None) -> None:
        if self._on_settled is not None:  # first: once flush() returns, every outcome has been passed on
            self._on_settled(frame_index, error is None)
        with self._lock:
            if error is None:
                self.succeeded += 1
            else:
                self.failed += 1
                if len(self.failures) < MAX_FAILURES_KEPT:
                    self.failures.append(PublishFailure(frame_index, error))
            self._lock.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted message has succeeded or failed; False if ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: self.submitted == self.succeeded + self.failed, timeout)

    def close(self) -> None:
        """Stop the client's background batching (call after :meth:`flush`)."""
        self._client.stop()
