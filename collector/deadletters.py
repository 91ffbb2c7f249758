"""Dead letters: the frames Pub/Sub gave up on, read from the dead-letter subscription without consuming them.

Usage::

    reader = DeadLetterReader.from_settings(settings)    # None when the settings name no dead-letter subscription
    letters = reader.for_job("demo")                     # {frame_index: DeadLetter}; DeadLetterError if unreadable

A frame whose message failed ``max_delivery_attempts`` times (its worker process crashed on it, it was
refused, storage stayed down longer than the retries) is forwarded by Pub/Sub to the dead-letter topic,
whose pull subscription keeps it (the local stack's ``<topic>-dead-letter-pull``; on Google Cloud
``deploy.gcp``'s ``<name>-frames-dead-letter-keep``, retained 7 days). Such a frame will not be processed
unless someone publishes it again, so the collector reports it as ``dead-lettered`` rather than
``missing``.

Reading is non-destructive: every message pulled is released again at once (ack deadline 0), whatever
job it belongs to, so other jobs' dead letters and whoever else reads the subscription (an operator
re-publishing them) see them as before. While one read runs (a few pulls), another reader sees fewer of
them; each read raises the dead letters' own delivery count on that subscription, which has no
dead-letter policy of its own. The messages are matched to the job by their frame attributes
(:func:`framecontract.message.parse_frame_attributes`); messages that name no frame are skipped. Pull
with ``return_immediately`` may return fewer messages than there are, so a dead letter missed by one
read shows as ``missing`` until the next. A read stops after :data:`MAX_SCANNED` messages.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from framecontract.message import parse_frame_attributes
from framecontract.settings import Settings

DELIVERY_COUNT_ATTRIBUTE = "CloudPubSubDeadLetterSourceDeliveryCount"
SOURCE_SUBSCRIPTION_ATTRIBUTE = "CloudPubSubDeadLetterSourceSubscription"
PULL_BATCH = 1000
"""Messages per pull request (Pub/Sub's most)."""
MAX_SCANNED = 50_000
"""Messages one read looks at, at most (all jobs together): a backlog of dead letters larger than this is
not read to its end, and the report says so."""
RELEASE_BATCH = 1000


class DeadLetterError(RuntimeError):
    """The dead-letter subscription could not be read (missing, no permission, Pub/Sub unreachable)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One frame message that Pub/Sub moved to the dead-letter topic."""

    job_id: str
    frame_index: int
    timestamp_us: int
    delivery_attempts: int | None
    """How many times Pub/Sub delivered it before giving up (``CloudPubSubDeadLetterSourceDeliveryCount``)."""
    source_subscription: str | None
    message_id: str
    """The dead letter's own message id (a new one: forwarding publishes it again)."""
    dead_lettered_at: str | None
    """When it was forwarded to the dead-letter topic (its publish time there), ISO 8601."""

    def to_dict(self) -> dict[str, object]:
        return {
            "frame_index": self.frame_index,
            "timestamp_us": self.timestamp_us,
            "delivery_attempts": self.delivery_attempts,
            "source_subscription": self.source_subscription,
            "message_id": self.message_id,
            "dead_lettered_at": self.dead_lettered_at,
        }

    def reason(self) -> str:
        """``dead-lettered after 5 delivery attempts`` (the report's and the detections file's ``error``)."""
        attempts = f" after {self.delivery_attempts} delivery attempts" if self.delivery_attempts else ""
        return f"dead-lettered{attempts}"


def dead_letter_from_message(message_id: str, attributes: Mapping[str, str], publish_time: str | None) -> \
        DeadLetter | None:
    """The frame a dead-lettered message carried, or None when its attributes name no frame."""
    identity = parse_frame_attributes(attributes).identity
    if identity is None:
        return None
    count = attributes.get(DELIVERY_COUNT_ATTRIBUTE, "")
    return DeadLetter(
        job_id=identity.job_id,
        frame_index=identity.frame_index,
        timestamp_us=identity.timestamp_us,
        delivery_attempts=int(count) if count.isdigit() else None,
        source_subscription=attributes.get(SOURCE_SUBSCRIPTION_ATTRIBUTE) or None,
        message_id=message_id,
        dead_lettered_at=publish_time,
    )


def by_frame(letters: Iterable[DeadLetter], job_id: str) -> dict[int, DeadLetter]:
    """The job's dead letters by frame index (a frame dead-lettered twice, e.g. after a resume: the latest)."""
    found: dict[int, DeadLetter] = {}
    for letter in letters:
        if letter.job_id != job_id:
            continue
        previous = found.get(letter.frame_index)
        if previous is None or (letter.dead_lettered_at or "") >= (previous.dead_lettered_at or ""):
            found[letter.frame_index] = letter
    return found


class DeadLetterReader:
    """Reads dead letters from one pull subscription and releases every message it pulled (module docstring)."""

    def __init__(self, subscriber: Any, subscription_path: str, max_scanned: int = MAX_SCANNED) -> None:
        self.subscriber = subscriber
        self.subscription_path = subscription_path
        self.max_scanned = max_scanned
        self.truncated = False
        """The last read stopped at ``max_scanned`` messages."""

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterReader | None:
        """A reader of ``settings.dead_letter_subscription``, or None when the settings name none."""
        path = settings.dead_letter_subscription_path
        if path is None:
            return None
        from framecontract.clients import make_subscriber

        try:
            return cls(make_subscriber(settings), path)
        except Exception as exc:  # noqa: BLE001 - credentials are looked up when the client is built
            raise DeadLetterError(f"cannot create a Pub/Sub client: {type(exc).__name__}: {exc}") from None

    def read(self) -> list[DeadLetter]:
        """Every dead letter the subscription returns now (all jobs), each released again at once."""
        letters: list[DeadLetter] = []
        ack_ids: list[str] = []
        self.truncated = False
        try:
            try:
                while len(ack_ids) < self.max_scanned:
                    batch = min(PULL_BATCH, self.max_scanned - len(ack_ids))
                    with warnings.catch_warnings():  # return_immediately is deprecated, and what a read needs
                        warnings.simplefilter("ignore", DeprecationWarning)
                        response = self.subscriber.pull(
                            request={"subscription": self.subscription_path, "max_messages": batch,
                                     "return_immediately": True},
                            timeout=30,
                        )
                    received = list(response.received_messages)
                    if not received:
                        break
                    for item in received:
                        ack_ids.append(item.ack_id)
                        message = item.message
                        published = message.publish_time.isoformat() if message.publish_time else None
                        letter = dead_letter_from_message(message.message_id, dict(message.attributes), published)
                        if letter is not None:
                            letters.append(letter)
                else:
                    self.truncated = True
            finally:
                self._release(ack_ids)
        except DeadLetterError:
            raise
        except Exception as exc:  # noqa: BLE001 - gRPC / google.api_core errors: one line for the user
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DeadLetterError(f"cannot read dead letters from {self.subscription_path}: {first}") from None
        return letters

    def for_job(self, job_id: str) -> dict[int, DeadLetter]:
        """The job's dead letters by frame index."""
        return by_frame(self.read(), job_id)

    def _release(self, ack_ids: list[str]) -> None:
        """Ack deadline 0 for everything pulled: available again at once, to every reader."""
        for start in range(0, len(ack_ids), RELEASE_BATCH):
            self.subscriber.modify_ack_deadline(
                request={"subscription": self.subscription_path, "ack_ids": ack_ids[start:start + RELEASE_BATCH],
                         "ack_deadline_seconds": 0},
                timeout=30,
            )
