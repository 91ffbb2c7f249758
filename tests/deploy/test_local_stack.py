"""The local stack: pure parts (requests, state file) and real up/status/down cycles with a stand-in app."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import local
from deploy.emulators import group_members
from deploy.stack_config import (
    ComponentRecord,
    StackConfig,
    StackConfigError,
    StackState,
    dead_letter_subscription_request,
    gunicorn_command,
    pull_subscription_request,
    pull_workers_command,
    push_subscription_request,
    stack_settings,
)
from framecontract.settings import Settings, load_settings

# A stand-in for worker.app: ready at once, records every push, fails the ones marked fail=1.
FAKE_APP = '''
import json, os
from flask import Flask, request

def create_app():
    app = Flask(__name__)
    out = os.environ["FAKE_PUSH_LOG"]

    @app.get("/readyz")
    def readyz():
        return "ready", 200

    @app.post("/pubsub/push")
    def push():
        envelope = request.get_json(force=True)
        with open(out, "a") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "envelope": envelope,
                                 "env": {k: os.environ.get(k) for k in
                                         ("GOOGLE_CLOUD_PROJECT", "FRAMES_BUCKET", "STORAGE_EMULATOR_HOST",
                                          "PUBSUB_EMULATOR_HOST", "FRAMES_TOPIC", "FRAMES_SUBSCRIPTION")}}) + "\\n")
        if envelope["message"].get("attributes", {}).get("fail") == "1":
            return "transient trouble", 503
        return "", 204

    return app
'''


# ---------------------------------------------------------------- pure parts


def test_push_subscription_request_fields() -> None:
    config = StackConfig(project="p", topic="frames", ack_deadline=60, max_delivery_attempts=7, mode="push")
    request = push_subscription_request(config, "http://127.0.0.1:8080/")
    assert request == {
        "name": "projects/p/subscriptions/frames-push",
        "topic": "projects/p/topics/frames",
        "push_config": {"push_endpoint": "http://127.0.0.1:8080/pubsub/push"},
        "ack_deadline_seconds": 60,
        "dead_letter_policy": {"dead_letter_topic": "projects/p/topics/frames-dead-letter", "max_delivery_attempts": 7},
    }  # no retry policy: the emulator stalls messages under one (deploy.stack_config.RETRY_POLICY)
    # the dict is accepted by the real request type
    from google.pubsub_v1.types import Subscription

    sub = Subscription(request)
    assert "retry_policy" not in sub
    assert sub.dead_letter_policy.max_delivery_attempts == 7


def test_pull_mode_is_the_default_and_its_subscription_has_the_same_policies_and_the_lease_as_deadline() -> None:
    from worker.pull import LEASE_S

    config = StackConfig(project="p", topic="frames", ack_deadline=60, max_delivery_attempts=7)
    assert config.mode == "pull" and config.subscription == "frames-pull"
    request = pull_subscription_request(config)
    push = push_subscription_request(StackConfig(project="p", topic="frames", ack_deadline=60,
                                                 max_delivery_attempts=7, mode="push"), "http://x")
    assert request == {k: v for k, v in push.items() if k != "push_config"} | {
        "name": "projects/p/subscriptions/frames-pull", "ack_deadline_seconds": LEASE_S}
    from google.pubsub_v1.types import Subscription

    assert Subscription(request).dead_letter_policy.max_delivery_attempts == 7
    assert pull_workers_command("/py", StackConfig(workers=3, pull_max_held=4), 9000) == [
        "/py", "-m", "worker.pull", "--processes", "3", "--max-held", "4", "--status-port", "9000",
        "--status-host", "127.0.0.1"]


def test_dead_letter_subscription_request() -> None:
    request = dead_letter_subscription_request(StackConfig(project="p", topic="t"))
    assert request["name"] == "projects/p/subscriptions/t-dead-letter-pull"
    assert request["topic"] == "projects/p/topics/t-dead-letter"
    assert "push_config" not in request


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"max_delivery_attempts": 4}, "5-100"), ({"max_delivery_attempts": 101}, "5-100"),
     ({"ack_deadline": 5}, "10-600"), ({"workers": 0}, "workers"), ({"app": "noapp"}, "module:callable"),
     ({"port": 70000}, "0-65535")],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(StackConfigError, match=message):
        StackConfig(**kwargs)


def test_gunicorn_command_uses_the_worker_gunicorn_config() -> None:
    cmd = gunicorn_command("/py", StackConfig(workers=3), 8123)
    assert cmd[:3] == ["/py", "-m", "gunicorn"]
    assert cmd[cmd.index("--workers") + 1] == "3"
    assert cmd[cmd.index("--config") + 1] == "python:worker.gunicorn_conf"
    assert cmd[cmd.index("--bind") + 1] == "127.0.0.1:8123"
    assert cmd[cmd.index("--timeout") + 1] == "120"
    assert cmd[-1] == "worker.app:create_app()"


def test_settings_to_env_round_trips_through_load_settings() -> None:
    settings = stack_settings(StackConfig(project="p", topic="t", bucket="b"), "127.0.0.1:1", "http://127.0.0.1:2",
                              "http://127.0.0.1:3")
    env = settings.to_env()
    assert env["GOOGLE_CLOUD_PROJECT"] == "p" and env["FRAMES_SUBSCRIPTION"] == "t-pull"
    loaded = load_settings(environ=env | {"FRAME_FANOUT_SETTINGS": "/nonexistent/settings.json"})
    assert loaded == Settings(**{**settings.__dict__, "worker_url": None})


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = StackState(stack_dir=str(tmp_path), settings_file=str(tmp_path / "settings.json"), config={"workers": 2})
    state.components.append(ComponentRecord("workers", 123, 456, "http://127.0.0.1:1", "/x.log", ["gunicorn"]))
    state.write(tmp_path)
    assert (tmp_path / "workers.pid").read_text().strip() == "123"
    assert StackState.read(tmp_path) == state
    StackState.remove(tmp_path)
    assert StackState.read(tmp_path) is None
    assert not (tmp_path / "workers.pid").exists()


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{not json")
    with pytest.raises(StackConfigError, match="is corrupt"):
        StackState.read(tmp_path)


def test_resolve_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert local.resolve_paths(StackConfig(stack_dir=tmp_path)) == (tmp_path, tmp_path / "settings.json")
    monkeypatch.setenv("FRAME_FANOUT_STACK", str(tmp_path / "s"))
    monkeypatch.setenv("FRAME_FANOUT_SETTINGS", str(tmp_path / "f.json"))
    assert local.resolve_paths(StackConfig()) == (tmp_path / "s", tmp_path / "f.json")


def test_cli_down_and_status_when_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert local.main(["--stack-dir", str(tmp_path), "down"]) == 0
    assert "nothing running" in capsys.readouterr().out
    assert local.main(["--stack-dir", str(tmp_path), "status"]) == 1
    assert "nothing running" in capsys.readouterr().out


# ---------------------------------------------------------------- real stacks


def _children() -> set[int]:
    """Live (non-zombie) child processes of this test process."""
    me, kids = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == me and fields[0] not in ("Z", "X"):
                kids.add(int(entry.name))
    return kids


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _pushes(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def fake_app(tmp_path: Path) -> tuple[str, dict[str, str], Path]:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "fakeworker.py").write_text(textwrap.dedent(FAKE_APP))
    push_log = tmp_path / "pushes.jsonl"
    return "fakeworker:create_app()", {"PYTHONPATH": str(app_dir), "FAKE_PUSH_LOG": str(push_log)}, push_log


@pytest.fixture
def stack_config(tmp_path: Path, fake_app: tuple[str, dict[str, str], Path]) -> StackConfig:
    app, env, _log = fake_app
    return StackConfig(workers=2, port=0, pubsub_port=0, storage_port=0, project="stack-test", topic="frames",
                       bucket="frames", app=app, extra_env=env, stack_dir=tmp_path / "stack", ready_timeout=60,
                       mode="push")  # the stand-in app records what the emulator pushes


@pytest.fixture
def running_stack(stack_config: StackConfig) -> Iterator[local.StackHandle]:
    handle = local.start_stack(stack_config)
    try:
        yield handle
    finally:
        local.stop_stack(handle)


@pytest.mark.e2e
def test_up_status_down_cycle(stack_config: StackConfig, fake_app: tuple[str, dict[str, str], Path]) -> None:
    _app, _env, push_log = fake_app
    before = _children()
    handle = local.start_stack(stack_config)
    try:
        settings = handle.settings
        assert settings is not None and settings.worker_url
        assert load_settings(environ={"FRAME_FANOUT_SETTINGS": str(handle.settings_file)}) == settings
        assert handle.settings_file == stack_config.stack_dir / "settings.json"

        rows = local.stack_status(handle)
        assert [r.name for r in rows] == ["pubsub-emulator", "storage-emulator", "workers"]
        assert all(r.alive for r in rows)
        assert all(Path(r.log).exists() for r in rows)
        recorded = local.load_stack(stack_config.stack_dir)
        assert recorded is not None and recorded.settings == settings
        assert [r.alive for r in local.stack_status(recorded)] == [True, True, True]
        child_env = handle.env({"PUBSUB_EMULATOR_HOST": "127.0.0.1:1", "FRAMES_TOPIC": "elsewhere"})
        assert load_settings(environ=child_env) == settings

        with pytest.raises(local.StackAlreadyUp, match="already up"):
            local.start_stack(stack_config)

        publisher, subscriber = local.pubsub_admin_clients(settings.pubsub_emulator_host)
        try:
            message = {"data": b"\xff\xd8frame", "attributes": {"job_id": "j", "frame_index": "3"}}
            publisher.publish(topic=settings.topic_path, messages=[message], timeout=30)
        finally:
            publisher.transport.close()
            subscriber.transport.close()
        pushes = _wait_for(lambda: _pushes(push_log), 30, "the push to reach the workers")
        message = pushes[0]["envelope"]["message"]
        assert message["attributes"] == {"job_id": "j", "frame_index": "3"}
        assert message["data"] == "/9hmcmFtZQ=="  # base64 of the bytes published
        assert pushes[0]["envelope"]["subscription"] == "projects/stack-test/subscriptions/frames-push"
        assert pushes[0]["env"] == {
            "GOOGLE_CLOUD_PROJECT": "stack-test", "FRAMES_BUCKET": "frames",
            "STORAGE_EMULATOR_HOST": settings.storage_emulator_host,
            "PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host,
            "FRAMES_TOPIC": "frames", "FRAMES_SUBSCRIPTION": "frames-push",
        }
        groups = [p.pgid for p in handle.processes.values()]
    finally:
        stopped = local.stop_stack(handle)

    assert stopped == ["pubsub-emulator", "workers", "storage-emulator"]
    assert all(group_members(g) == [] for g in groups)
    assert _children() == before
    assert not handle.settings_file.exists()
    assert local.load_stack(stack_config.stack_dir) is None
    assert local.stop_stack(handle) == []  # idempotent


@pytest.mark.e2e
def test_failed_push_goes_to_dead_letter(running_stack: local.StackHandle,
                                         fake_app: tuple[str, dict[str, str], Path]) -> None:
    _app, _env, push_log = fake_app
    settings = running_stack.settings
    assert settings is not None and settings.pubsub_emulator_host
    publisher, subscriber = local.pubsub_admin_clients(settings.pubsub_emulator_host)
    try:
        publisher.publish(topic=settings.topic_path, messages=[{"data": b"x", "attributes": {"fail": "1"}}])
        dead_letters = f"projects/{settings.project}/subscriptions/frames-dead-letter-pull"

        def pulled():
            return subscriber.pull(subscription=dead_letters, max_messages=1, timeout=10).received_messages

        received = _wait_for(pulled, 60, "the message to be dead-lettered after 5 failed pushes")
    finally:
        publisher.transport.close()
        subscriber.transport.close()
    assert received[0].message.attributes["fail"] == "1"
    assert received[0].message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert len(_pushes(push_log)) == 5


@pytest.mark.e2e
def test_failed_up_stops_what_it_started(tmp_path: Path, fake_app: tuple[str, dict[str, str], Path]) -> None:
    _app, env, _log = fake_app
    config = StackConfig(port=0, pubsub_port=0, storage_port=0, app="fakeworker:no_such_factory()", extra_env=env,
                         stack_dir=tmp_path / "stack", ready_timeout=60)
    before = _children()
    expected = r"(?s)up failed: workers exited .*Failed to find attribute 'no_such_factory'"
    with pytest.raises(local.StackError, match=expected):
        local.start_stack(config)
    assert _children() == before
    assert local.load_stack(config.stack_dir) is None
    assert not (config.stack_dir / "settings.json").exists()
    assert (config.stack_dir / "workers.log").exists()  # logs stay for the post-mortem


def test_busy_port_fails_before_starting_anything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        before = _children()
        with pytest.raises(local.StackError, match=f"already in use: workers port 127.0.0.1:{port}"):
            local.start_stack(StackConfig(port=port, pubsub_port=0, storage_port=0, stack_dir=tmp_path))
        assert _children() == before
        assert local.load_stack(tmp_path) is None
