"""Pull workers against the real Pub/Sub and storage emulators: settling, dead letters, backoff, stops, flow control."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.emulators import free_port
from framecontract.clients import make_publisher, make_storage_client, make_subscriber
from framecontract.layout import frame_objects, job_prefix
from framecontract.records import DetectionsRecord, ErrorRecord
from framecontract.settings import Settings, subscription_path, topic_path
from tests.waiting import wait_for
from tests.worker.conftest import frame_attributes
from worker.frames import ImageLimits
from worker.handler import FrameHandler
from worker.pull import PullConfig, restart_delay_s, run_process, transient_backoff_s
from worker.runner import PipelineRunner
from worker.storage import ResultStore

REPO = Path(__file__).resolve().parents[2]
MAX_ATTEMPTS = 5




@pytest.fixture
def pull_settings(pubsub_settings: Settings) -> Iterator[Settings]:
    """A topic with a pull subscription: dead letter after 5 attempts, and a short retry policy (1-2 s) that the local
    stack does not set (deploy/stack_config.py RETRY_POLICY), so the redelivery tests do not wait on the 10 s lease."""
    publisher, subscriber = make_publisher(pubsub_settings), make_subscriber(pubsub_settings)
    project = pubsub_settings.project
    dead_topic = topic_path(project, pubsub_settings.topic + "-dead")
    publisher.create_topic(name=dead_topic)
    subscriber.create_subscription(name=subscription_path(project, pubsub_settings.topic + "-dead-pull"),
                                   topic=dead_topic)
    settings = dataclasses.replace(pubsub_settings, subscription=pubsub_settings.subscription + "-pull")
    subscriber.create_subscription(request={
        "name": settings.subscription_path, "topic": settings.topic_path, "ack_deadline_seconds": 10,
        "retry_policy": {"minimum_backoff": {"seconds": 1}, "maximum_backoff": {"seconds": 2}},
        "dead_letter_policy": {"dead_letter_topic": dead_topic, "max_delivery_attempts": MAX_ATTEMPTS},
    })
    yield settings
    subscriber.close()


def publish(settings: Settings, frames: list[tuple[bytes, dict[str, str]]]) -> None:
    publisher = make_publisher(settings)
    for future in [publisher.publish(settings.topic_path, data, **attrs) for data, attrs in frames]:
        future.result(timeout=30)


def detections_in(settings: Settings, job_id: str) -> list[str]:
    client = make_storage_client(settings)
    return sorted(b.name for b in client.list_blobs(settings.bucket, prefix=job_prefix(job_id) + "detections/"))


class CountingHandler:
    """The real frame handler, counting what reaches it."""

    def __init__(self, inner: FrameHandler) -> None:
        self.inner = inner
        self.calls: list[tuple[float, dict[str, str]]] = []

    def handle(self, message: Any, received: float | None = None) -> Any:
        self.calls.append((time.monotonic(), message.attributes))
        return self.inner.handle(message, received)


def make_handler(settings: Settings, pipeline: Any) -> CountingHandler:
    store = ResultStore.from_settings(settings, make_storage_client(settings))
    return CountingHandler(FrameHandler(PipelineRunner(pipeline, 3), store, settings.bucket, 30.0,
                                        ImageLimits.for_push()))


@pytest.fixture
def running_worker(pull_settings: Settings, pipeline: Any) -> Iterator[Callable[..., CountingHandler]]:
    """Start :func:`run_process` in a thread (the real subscriber, the session's pipeline); stopped after."""
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(settings: Settings = pull_settings, max_held: int = 3) -> CountingHandler:
        handler = make_handler(settings, pipeline)
        stop = threading.Event()
        config = PullConfig(settings=settings, max_held=max_held, grace_s=5)
        thread = threading.Thread(target=run_process, args=(config, stop, handler), daemon=True)
        thread.start()
        stops.append((stop, thread))
        return handler

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=20)


def test_backoff_and_restart_schedules() -> None:
    assert [transient_backoff_s(a) for a in (None, 1, 2, 3, 4, 5, 6, 99)] == [2, 2, 4, 8, 16, 32, 60, 60]
    assert [restart_delay_s(n) for n in (0, 1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_frames_are_stored_once_each_and_a_duplicate_adds_nothing(pull_settings, running_worker, vtest_jpeg) -> None:
    frames = [(vtest_jpeg, frame_attributes("pull-a", i)) for i in range(8)]
    publish(pull_settings, frames + [frames[3]])  # frame 3 twice
    handler = running_worker()
    names = wait_for(lambda: len(detections_in(pull_settings, "pull-a")) == 8, 60, "8 detections records")
    assert names
    wait_for(lambda: len(handler.calls) == 9, 30, "the duplicate to be delivered too")
    bucket = make_storage_client(pull_settings).bucket(pull_settings.bucket)
    for index in range(8):
        record = DetectionsRecord.from_json(bucket.blob(frame_objects("pull-a", index, index * 100_000)
                                                        .detections).download_as_bytes())
        assert record.belongs_to("pull-a", index, index * 100_000) and record.model == "model.nanodet"
        assert any(d.label == "person" for d in record.detections)
    assert len(detections_in(pull_settings, "pull-a")) == 8


def test_a_poison_frame_gets_an_error_record_and_is_not_delivered_again(pull_settings, running_worker) -> None:
    publish(pull_settings, [(b"\xff\xd8 not a jpeg", frame_attributes("pull-b", 0))])
    handler = running_worker()
    bucket = make_storage_client(pull_settings).bucket(pull_settings.bucket)
    error = frame_objects("pull-b", 0, 0).error
    wait_for(lambda: bucket.get_blob(error) is not None, 30, "the error record")
    assert ErrorRecord.from_json(bucket.blob(error).download_as_bytes()).reason == (
        "image data is not a JPEG image (JPEG marker expected at byte 2)")
    # acked: after more than the subscription's retry backoff and ack deadline, still one delivery
    time.sleep(12)
    assert len(handler.calls) == 1


def test_an_unidentifiable_message_is_nacked_until_it_is_dead_lettered(pull_settings, running_worker) -> None:
    publish(pull_settings, [(b"x", {"job_id": "../etc", "frame_index": "1", "timestamp_us": "0"})])
    handler = running_worker()
    dead_subscription = subscription_path(pull_settings.project, pull_settings.topic + "-dead-pull")
    subscriber = make_subscriber(pull_settings)

    def dead_lettered() -> Any:
        return subscriber.pull(subscription=dead_subscription, max_messages=1, timeout=5).received_messages

    received = wait_for(dead_lettered, 90, "the message in the dead-letter topic", every_s=1)
    assert received[0].message.attributes["job_id"] == "../etc"
    assert received[0].message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == str(MAX_ATTEMPTS)
    assert len(handler.calls) == MAX_ATTEMPTS


def test_storage_down_delays_redelivery_instead_of_a_hot_loop(pull_settings, running_worker, vtest_jpeg) -> None:
    publish(pull_settings, [(vtest_jpeg, frame_attributes("pull-c", 0))])
    dead = dataclasses.replace(pull_settings, storage_emulator_host=f"http://127.0.0.1:{free_port()}")
    handler = running_worker(dead)
    wait_for(lambda: len(handler.calls) >= 2, 60, "a redelivery after the transient failure")
    first, second = handler.calls[0][0], handler.calls[1][0]
    assert second - first >= 1.5, "a transient failure must come back after the backoff (2 s), not at once"


def test_exactly_once_subscriptions_keep_one_result(pubsub_settings, pipeline, running_worker, vtest_jpeg) -> None:
    """Exactly-once delivery: the lease becomes 60 s and acks are confirmed requests. The emulator accepts the
    setting but does not enforce it (../shared/notes/emulators.md); the create-only writes keep one result."""
    settings = dataclasses.replace(pubsub_settings, subscription=pubsub_settings.subscription + "-eo")
    make_subscriber(settings).create_subscription(request={
        "name": settings.subscription_path, "topic": settings.topic_path, "enable_exactly_once_delivery": True})
    frames = [(vtest_jpeg, frame_attributes("pull-d", i)) for i in range(3)]
    publish(settings, frames + frames[:1])
    handler = running_worker(settings)
    wait_for(lambda: len(handler.calls) == 4, 60, "four deliveries")
    wait_for(lambda: len(detections_in(settings, "pull-d")) == 3, 30, "three results")
    time.sleep(1)
    assert len(detections_in(settings, "pull-d")) == 3


# ---------------------------------------------------------------- the real CLI: supervisor and processes


def metrics_of(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def ready(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
    except OSError:
        return False


@pytest.fixture
def pull_cli(pull_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, int]]]:
    procs: list[subprocess.Popen] = []

    def start(*extra: str) -> tuple[subprocess.Popen, int]:
        port = free_port()
        env = dict(os.environ) | pull_settings.to_env() | {
            "FRAME_FANOUT_SETTINGS": str(tmp_path / "none.json"),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / f"metrics-{len(procs)}"),
        }
        (tmp_path / f"metrics-{len(procs)}").mkdir()
        proc = subprocess.Popen([sys.executable, "-m", "worker.pull", "--processes", "2", "--status-port", str(port),
                                 *extra], env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        procs.append(proc)
        wait_for(lambda: ready(port) or proc.poll() is not None, 90, "the pull workers to be ready")
        assert proc.poll() is None, "the pull workers exited while starting"
        return proc, port

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.e2e
def test_sigterm_mid_job_then_restart_completes_every_frame_once(pull_settings, pull_cli, vtest_jpeg) -> None:
    publish(pull_settings, [(vtest_jpeg, frame_attributes("pull-e", i)) for i in range(40)])
    proc, _port = pull_cli()
    wait_for(lambda: len(detections_in(pull_settings, "pull-e")) >= 5, 60, "some frames done")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, "the supervisor must stop cleanly within the grace period"
    done_before = len(detections_in(pull_settings, "pull-e"))
    assert done_before < 40, "the job was not stopped mid-way; make it longer"
    pull_cli()
    wait_for(lambda: len(detections_in(pull_settings, "pull-e")) == 40, 120, "all 40 frames after the restart")


@pytest.mark.e2e
def test_kill_9_mid_job_loses_nothing_and_held_messages_stay_within_the_limit(pull_settings, pull_cli,
                                                                             vtest_jpeg) -> None:
    publish(pull_settings, [(vtest_jpeg, frame_attributes("pull-f", i)) for i in range(40)])
    proc, port = pull_cli("--max-held", "2")
    wait_for(lambda: len(detections_in(pull_settings, "pull-f")) >= 5, 60, "some frames done")
    held = metrics_of(port)
    assert 1 <= held["pull_messages_held_max"] <= 2, held
    os.killpg(proc.pid, signal.SIGKILL)  # supervisor and processes, no goodbye
    proc.wait()
    _proc, port = pull_cli("--max-held", "2")
    wait_for(lambda: len(detections_in(pull_settings, "pull-f")) == 40, 120, "all 40 frames after the restart")
    metrics = metrics_of(port)
    assert metrics["pull_messages_held_max"] <= 2
    assert metrics['frames_total{outcome="processed"}'] + metrics.get('frames_total{outcome="duplicate"}', 0) >= 1


class RecordingSubscriber:
    """Records the deadline changes a :class:`~worker.pull.Leases` sends (the schedule is pure logic; the real
    requests are exercised against the emulator by the tests above)."""

    def __init__(self) -> None:
        self.modified: list[tuple[list[str], int]] = []

    def modify_ack_deadline(self, request: dict[str, Any], timeout: float) -> None:
        self.modified.append((list(request["ack_ids"]), request["ack_deadline_seconds"]))


def received(ack_id: str) -> Any:
    from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

    return ReceivedMessage(ack_id=ack_id, message=PubsubMessage(data=b"x", message_id=ack_id))


def test_leases_are_set_on_arrival_only_when_the_subscription_deadline_differs_and_extended_at_half() -> None:
    from worker.pull import LEASE_S, MAX_LEASE_S, Leases

    same = RecordingSubscriber()
    Leases(same, "s", LEASE_S, subscription_deadline_s=LEASE_S).hold([received("a")])
    assert same.modified == []
    other = RecordingSubscriber()
    leases = Leases(other, "s", LEASE_S, subscription_deadline_s=60)
    a, b = leases.hold([received("a"), received("b")])
    assert other.modified == [(["a", "b"], LEASE_S)]
    for message in (a, b):
        message.received_at = message.extended_at = 100.0
    assert leases.extend_due(now=100.0 + LEASE_S / 2 - 0.1) == 0
    assert leases.extend_due(now=100.0 + LEASE_S / 2) == 2
    assert other.modified[-1] == (["a", "b"], LEASE_S)
    assert leases.extend_due(now=100.0 + LEASE_S / 2 + 1) == 0  # just extended
    b.drop()
    assert leases.extend_due(now=100.0 + LEASE_S) == 1 and other.modified[-1] == (["a"], LEASE_S)
    assert leases.extend_due(now=100.0 + MAX_LEASE_S) == 0  # held too long: left to lapse
    assert leases.release_all() == 1 and other.modified[-1] == (["a"], 0) and leases.held() == []


def test_a_process_holds_one_message_until_it_has_settled_one_then_grows_to_its_limit() -> None:
    from worker.pull import HoldWindow

    window = HoldWindow(3)
    assert window.acquire(0) and window.acquire_free() == 0 and not window.acquire(0)
    window.release()  # a Pull that brought nothing: the window does not grow
    assert window.acquire(0) and window.acquire_free() == 0
    window.release(settled=True)
    assert window.acquire(0) and window.acquire_free() == 1
    window.release(settled=True)
    window.release(settled=True)
    assert window.acquire(0) and window.acquire_free() == 2 and window.granted == 3
    for _ in range(3):
        window.release(settled=True)
    assert window.acquire(0) and window.acquire_free() == 2, "never more than the limit"
