"""Starting, finding and stopping the emulators."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from google.api_core.exceptions import PreconditionFailed

from deploy import emulators as em
from framecontract.clients import make_publisher, make_storage_client, make_subscriber
from framecontract.settings import Settings


def test_pubsub_round_trip_with_attributes(pubsub_settings: Settings) -> None:
    publisher = make_publisher(pubsub_settings)
    attributes = {"job_id": "demo", "frame_index": "7", "timestamp_us": "700000", "schema": "1"}
    data = b"\xff\xd8\xff\xe0 not really a jpeg \x00\x01"
    message_id = publisher.publish(pubsub_settings.topic_path, data, **attributes).result(timeout=30)

    subscriber = make_subscriber(pubsub_settings)
    try:
        response = subscriber.pull(subscription=pubsub_settings.subscription_path, max_messages=10, timeout=30)
        assert len(response.received_messages) == 1
        received = response.received_messages[0]
        assert received.message.message_id == message_id
        assert received.message.data == data
        assert dict(received.message.attributes) == attributes
        subscriber.acknowledge(subscription=pubsub_settings.subscription_path, ack_ids=[received.ack_id])
    finally:
        subscriber.close()


def test_clients_reach_the_emulators_through_settings_alone(pubsub_settings: Settings) -> None:
    """No *_EMULATOR_HOST in the environment: the settings carry the hosts to the clients."""
    assert "PUBSUB_EMULATOR_HOST" not in os.environ and "STORAGE_EMULATOR_HOST" not in os.environ
    assert pubsub_settings.pubsub_emulator_host and pubsub_settings.pubsub_emulator_host.startswith("127.0.0.1:")
    topic = make_publisher(pubsub_settings).get_topic(topic=pubsub_settings.topic_path, timeout=10)
    assert topic.name == pubsub_settings.topic_path
    assert make_storage_client(pubsub_settings).lookup_bucket(pubsub_settings.bucket) is not None
    assert "PUBSUB_EMULATOR_HOST" not in os.environ and "STORAGE_EMULATOR_HOST" not in os.environ


def test_missing_pubsub_emulator_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(em.EmulatorNotInstalled) as info:
        em.find_pubsub_emulator(sdk_roots=(tmp_path,))
    message = str(info.value)
    assert message.startswith(em.PUBSUB_INSTALL_HINT)
    assert "`gcloud components install pubsub-emulator`" in message
    assert "`google-cloud-cli-pubsub-emulator` package" in message
    assert str(tmp_path / em.EMULATOR_RELPATH) in message

    with pytest.raises(em.EmulatorNotInstalled, match="gcloud components install pubsub-emulator"):
        em.start_pubsub_emulator(emulator_path=tmp_path / "cloud-pubsub-emulator")


def test_missing_java_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(em.EmulatorNotInstalled, match="openjdk-17-jre-headless") as info:
        em.find_java()
    assert "no `java` on PATH" in str(info.value)


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(em.EmulatorNotInstalled, match=r"Java 17 .* is version 11"):
        em.find_java()


@pytest.mark.parametrize(
    ("output", "major"),
    [('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8), ('version "21" 2023', 21),
     ("garbage", None)],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert em.parse_java_major(output) == major


def test_storage_emulator_subprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = em.start_storage_emulator(default_bucket="frames", log_path=tmp_path / "storage.log")
    try:
        assert proc.alive()
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proc.url)  # restored after the test
        settings = Settings(project="p", bucket="frames", storage_emulator_host=proc.url)
        bucket = make_storage_client(settings).bucket("frames")
        bucket.blob("a").upload_from_string(b"1", if_generation_match=0)
        with pytest.raises(PreconditionFailed):
            bucket.blob("a").upload_from_string(b"2", if_generation_match=0)
    finally:
        assert proc.stop() is True
    assert not proc.alive()
    assert em.group_members(proc.pgid) == []
    assert proc.stop() is False  # idempotent


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(em.EmulatorError, match=f"port 127.0.0.1:{port} is already in use"):
            em.start_storage_emulator(port=port, log_path=tmp_path / "s.log")


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    # a leader and a child that both ignore SIGTERM
    proc = em.spawn("stubborn", ["bash", "-c", "trap '' TERM; sleep 300 & wait"], tmp_path / "stubborn.log")
    import time

    deadline = time.monotonic() + 5
    while len(em.group_members(proc.pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(em.group_members(proc.pgid)) == 2
    assert proc.stop(timeout=0.5) is True
    assert em.group_members(proc.pgid) == []
    assert proc.popen is not None and proc.popen.returncode is not None  # reaped, no zombie


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    proc = em.spawn("crasher", ["bash", "-c", "echo 'boom: no model'; exit 3"], tmp_path / "crash.log")
    with pytest.raises(em.EmulatorError, match=r"(?s)crasher exited with code 3 .*boom: no model"):
        em.wait_http_ok(proc, f"http://127.0.0.1:{em.free_port()}/", timeout=10)


def test_process_running_is_false_for_a_zombie_and_a_gone_pid() -> None:
    """A killed worker nobody has reaped yet is a zombie: its gauges must be dropped like a gone one's."""
    import subprocess
    import time

    from deploy.emulators import process_running

    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert process_running(sleeper.pid)
        sleeper.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{sleeper.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        assert not process_running(sleeper.pid)  # not reaped yet: still in /proc
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not process_running(sleeper.pid)
