"""The local stack: Pub/Sub emulator + GCS emulator + gunicorn workers behind one command.

Usage::

    python -m deploy.local up [--workers 2] [--port 8080] [--topic frames] [--bucket frames] ...
    python -m deploy.local status
    python -m deploy.local restart      # workers killed or crashed: start them again, emulators untouched
    python -m deploy.local down

    handle = start_stack(StackConfig(port=None, stack_dir=tmp))   # Python API (tests, deploy/demo.py)
    ...; stop_stack(handle)

``up`` starts the emulators, then the workers (one gunicorn, N processes, one thread each) and waits
for ``GET /readyz``, then creates the topic, the dead-letter topic with a pull subscription, and the
push subscription to the workers; it writes the settings file that every part reads and records pids
and logs in the stack dir (``$FRAME_FANOUT_STACK`` or ``~/.cache/frame-fanout/stack``). Any failure
stops what was started. ``down`` stops exactly the recorded process groups.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.emulators import (
    REPO_ROOT,
    EmulatorError,
    ManagedProcess,
    free_port,
    host_port,
    port_in_use,
    process_running,
    spawn,
    start_pubsub_emulator,
    start_storage_emulator,
    wait_http_ok,
)
from deploy.stack_config import (
    PUBSUB,
    PULL_WORKERS,
    STOP_ORDER,
    STORAGE,
    WORKERS,
    ComponentRecord,
    StackConfig,
    StackConfigError,
    StackState,
    config_from_dict,
    config_to_dict,
    dead_letter_subscription_request,
    gunicorn_command,
    pull_subscription_request,
    pull_workers_command,
    push_subscription_request,
    stack_settings,
)
from framecontract import settings as fc_settings
from framecontract.endpoints import PUSH_PATH, READY_PATH
from framecontract.settings import Settings, topic_path

Say = Callable[[str], None]


class StackError(RuntimeError):
    """The local stack could not be started or stopped; the message says what and where to look."""


class StackAlreadyUp(StackError):
    """``up`` found a running stack in the stack dir."""


@dataclass
class StackHandle:
    """A started (or recorded) stack: its processes, settings and where its files are.

    Usage: ``handle.settings.worker_url``; ``handle.processes["workers"].log_path``
    """

    stack_dir: Path
    settings_file: Path
    state: StackState
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    settings: Settings | None = None

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process (producer, collector) that must use THIS stack.

        ``base`` (default ``os.environ``) + the stack's settings as env vars, which win over any
        inherited ``PUBSUB_EMULATOR_HOST`` etc. (env vars beat the settings file in load_settings).
        """
        if self.settings is None:
            raise StackError(f"the stack in {self.stack_dir} did not finish starting; no settings")
        env = dict(os.environ if base is None else base)
        env.update(self.settings.to_env())
        env.update({"FRAME_FANOUT_SETTINGS": str(self.settings_file), "FRAME_FANOUT_STACK": str(self.stack_dir)})
        return env


@dataclass(frozen=True)
class ComponentStatus:
    """One row of ``status``."""

    name: str
    pid: int
    alive: bool
    url: str | None
    log: str


def _quiet(_msg: str) -> None:
    pass


def resolve_paths(config: StackConfig) -> tuple[Path, Path]:
    """(stack dir, settings file): explicit config values, else ``FRAME_FANOUT_STACK`` / ``_SETTINGS``.

    An explicit stack dir without an explicit settings file keeps the settings inside that dir.
    """
    stack_dir = Path(config.stack_dir) if config.stack_dir else fc_settings.stack_dir()
    if config.settings_file:
        settings_file = Path(config.settings_file)
    elif config.stack_dir:
        settings_file = stack_dir / "settings.json"
    else:
        settings_file = fc_settings.settings_path()
    return stack_dir, settings_file


# ---------------------------------------------------------------- Pub/Sub admin, against one emulator


def pubsub_admin_clients(emulator_host: str) -> tuple[Any, Any]:
    """(PublisherClient, SubscriberClient) GAPIC clients on a plaintext channel to ``emulator_host``.

    Explicit channels instead of ``PUBSUB_EMULATOR_HOST`` so this never touches the process environment.
    """
    import grpc
    from google.pubsub_v1 import PublisherClient, SubscriberClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    publisher = PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    subscriber = SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host)))
    return publisher, subscriber


def create_topics(emulator_host: str, config: StackConfig) -> None:
    """The frames topic, the dead-letter topic and a pull subscription that keeps dead letters."""
    publisher, subscriber = pubsub_admin_clients(emulator_host)
    try:
        publisher.create_topic(name=topic_path(config.project, config.topic), timeout=30)
        publisher.create_topic(name=topic_path(config.project, config.dead_letter_topic), timeout=30)
        subscriber.create_subscription(request=dead_letter_subscription_request(config), timeout=30)
    finally:
        publisher.transport.close()
        subscriber.transport.close()


def create_frames_subscription(emulator_host: str, config: StackConfig, worker_url: str) -> None:
    """The subscription that delivers frames: pull (for ``worker.pull``) or push to the workers' endpoint;
    both with the dead-letter policy (and no retry policy: deploy.stack_config.RETRY_POLICY says why)."""
    _publisher, subscriber = pubsub_admin_clients(emulator_host)
    request = (pull_subscription_request(config) if config.mode == "pull"
               else push_subscription_request(config, worker_url))
    try:
        subscriber.create_subscription(request=request, timeout=30)
    finally:
        _publisher.transport.close()
        subscriber.transport.close()


# ---------------------------------------------------------------- start / stop


def _record(proc: ManagedProcess) -> ComponentRecord:
    return ComponentRecord(name=proc.name, pid=proc.pid, start_time=proc.start_time, url=proc.url,
                           log=str(proc.log_path), cmd=list(proc.cmd))


def _process_from_record(rec: ComponentRecord) -> ManagedProcess:
    return ManagedProcess(name=rec.name, pid=rec.pid, log_path=Path(rec.log), url=rec.url,
                          start_time=rec.start_time, cmd=list(rec.cmd))


def load_stack(stack_dir: Path | None = None) -> StackHandle | None:
    """The stack recorded in ``stack_dir`` (default: ``FRAME_FANOUT_STACK`` / cache), or None."""
    stack_dir = Path(stack_dir) if stack_dir else fc_settings.stack_dir()
    state = StackState.read(stack_dir)
    if state is None:
        return None
    processes = {rec.name: _process_from_record(rec) for rec in state.components}
    settings_file = Path(state.settings_file)
    settings = None
    if state.complete and settings_file.exists():
        settings = Settings(**fc_settings.read_settings_file(settings_file))
    return StackHandle(stack_dir=stack_dir, settings_file=settings_file, state=state,
                       processes=processes, settings=settings)


def stack_status(handle: StackHandle) -> list[ComponentStatus]:
    """Each recorded component: pid, alive or not, URL, log."""
    return [
        ComponentStatus(name=rec.name, pid=rec.pid, alive=handle.processes[rec.name].alive(), url=rec.url, log=rec.log)
        for rec in handle.state.components
    ]


def start_stack(config: StackConfig, say: Say | None = None) -> StackHandle:
    """Start the whole stack (see the module docstring); raises StackAlreadyUp or StackError.

    Usage: ``handle = start_stack(StackConfig(port=None, pubsub_port=None, storage_port=None, stack_dir=d))``
    """
    say = say or _quiet
    stack_dir, settings_file = resolve_paths(config)
    existing = load_stack(stack_dir)
    if existing is not None:
        rows = stack_status(existing)
        dead = [r.name for r in rows if not r.alive]
        if len(dead) < len(rows):
            if dead:
                raise StackAlreadyUp(f"the local stack is partly up ({', '.join(dead)} not running; stack dir "
                                     f"{stack_dir}): run `python -m deploy.local down`, then `up` again")
            raise StackAlreadyUp(f"the local stack is already up (stack dir {stack_dir}); "
                                 "`python -m deploy.local status` shows it, `down` stops it")
        say(f"clearing the record of a stopped stack in {stack_dir}")
        _forget(existing)

    busy = [f"{what} port {config.host}:{port}" for what, port in
            (("Pub/Sub emulator", config.pubsub_port), ("storage emulator", config.storage_port),
             ("workers", config.port)) if port and port_in_use(config.host, port)]
    if busy:
        raise StackError(f"already in use: {', '.join(busy)} (another stack or program? pass other ports, "
                         "or 0 for free ones)")

    stack_dir.mkdir(parents=True, exist_ok=True)
    state = StackState(stack_dir=str(stack_dir), settings_file=str(settings_file), config=config_to_dict(config))
    handle = StackHandle(stack_dir=stack_dir, settings_file=settings_file, state=state)

    def started(proc: ManagedProcess) -> None:
        handle.processes[proc.name] = proc
        state.components.append(_record(proc))
        state.write(stack_dir)

    try:
        state.write(stack_dir)
        say("starting the Pub/Sub emulator ...")
        pubsub = start_pubsub_emulator(port=config.pubsub_port, host=config.host,
                                       log_path=stack_dir / f"{PUBSUB}.log")
        started(pubsub)
        say(f"  Pub/Sub emulator at {host_port(pubsub)}")

        say("starting the storage emulator ...")
        storage = start_storage_emulator(port=config.storage_port, host=config.host, default_bucket=config.bucket,
                                         log_path=stack_dir / f"{STORAGE}.log")
        started(storage)
        say(f"  storage emulator at {storage.url} (bucket {config.bucket})")

        say(f"creating topics {config.topic}, {config.dead_letter_topic} (+ pull subscription "
            f"{config.dead_letter_subscription}) ...")
        create_topics(host_port(pubsub), config)

        port = config.port or free_port(config.host)
        if port_in_use(config.host, port):
            raise StackError(f"port {config.host}:{port} for the workers is already in use "
                             "(pass --port with another port, or 0 for a free one)")
        worker_url = f"http://{config.host}:{port}"
        settings = stack_settings(config, host_port(pubsub), storage.url, worker_url)
        env = _worker_env(config, settings, stack_dir, settings_file)
        cmd = gunicorn_command(sys.executable, config, port, no_control_socket=gunicorn_has_control_socket())
        say(f"starting {config.workers} worker process(es): {config.app} on {worker_url} "
            f"(the model loads at start; up to {config.ready_timeout:.0f} s) ...")
        workers = spawn(WORKERS, cmd, stack_dir / f"{WORKERS}.log", env=env, cwd=REPO_ROOT, url=worker_url)
        started(workers)
        waited = wait_http_ok(workers, worker_url + READY_PATH, config.ready_timeout, progress=5, say=say)
        say(f"  workers ready after {waited:.1f} s")

        if config.mode == "pull":
            say(f"creating pull subscription {config.subscription} ...")
            create_frames_subscription(host_port(pubsub), config, worker_url)
            status_port = config.status_port or free_port(config.host)
            status_url = f"http://{config.host}:{status_port}"
            say(f"starting {config.workers} pull worker process(es) on {config.subscription} "
                f"(status {status_url}) ...")
            pull = spawn(PULL_WORKERS, pull_workers_command(sys.executable, config, status_port),
                         stack_dir / f"{PULL_WORKERS}.log", env=env, cwd=REPO_ROOT, url=status_url)
            started(pull)
            waited = wait_http_ok(pull, status_url + READY_PATH, config.ready_timeout, progress=5, say=say)
            say(f"  pull workers ready after {waited:.1f} s")
        else:
            say(f"creating push subscription {config.subscription} -> {worker_url}{PUSH_PATH} ...")
            create_frames_subscription(host_port(pubsub), config, worker_url)

        settings.write(settings_file)
        handle.settings = settings
        state.complete = True
        state.write(stack_dir)
        say(f"settings written to {settings_file}")
        return handle
    except BaseException as exc:
        say(f"start failed ({type(exc).__name__}); stopping what was started ...")
        try:
            stop_stack(handle, say=say)
        except StackError as stop_exc:
            say(f"  while cleaning up: {stop_exc}")
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit: cleaned up, pass on
        what = str(exc) if isinstance(exc, StackError | EmulatorError) else f"{type(exc).__name__}: {exc}"
        raise StackError(f"up failed: {what}\n(stopped what had been started; logs in {stack_dir})") from exc


def gunicorn_has_control_socket() -> bool:
    """Whether the installed gunicorn has the (per-user, shared) control socket that we switch off."""
    try:
        from gunicorn import config as gconfig
    except ImportError as exc:
        raise StackError("gunicorn is not installed in this environment (pip install -e '.[dev]')") from exc
    return any("--no-control-socket" in (getattr(s, "cli", None) or []) for s in gconfig.KNOWN_SETTINGS)


def restart_workers(handle: StackHandle, say: Say | None = None) -> list[str]:
    """Start the stack's worker components again that are no longer running (killed, crashed), with the
    command and environment ``up`` gave them, and wait until they are ready. The emulators, and the
    results and messages they hold, are untouched. Returns the names restarted.

    Usage: ``os.killpg(handle.processes["pull-workers"].pgid, signal.SIGKILL); restart_workers(handle)``
    """
    say = say or _quiet
    if handle.settings is None:
        raise StackError(f"the stack in {handle.stack_dir} did not finish starting; nothing to restart")
    config = config_from_dict(handle.state.config)
    restarted = []
    for name in (WORKERS, PULL_WORKERS):
        proc = handle.processes.get(name)
        if proc is None or proc.alive():
            continue
        env = _worker_env(config, handle.settings, handle.stack_dir, handle.settings_file, fresh_metrics=False)
        _forget_dead_gauges(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
        if proc.popen is not None:
            proc.popen.poll()  # reap the dead one
        say(f"restarting {name}: {' '.join(proc.cmd)}")
        new = spawn(name, list(proc.cmd), proc.log_path, env=env, cwd=REPO_ROOT, url=proc.url)
        handle.processes[name] = new
        handle.state.components = [_record(new) if c.name == name else c for c in handle.state.components]
        handle.state.write(handle.stack_dir)
        assert new.url is not None
        waited = wait_http_ok(new, new.url + READY_PATH, config.ready_timeout, progress=5, say=say)
        say(f"  {name} ready after {waited:.1f} s")
        restarted.append(name)
    return restarted


def _forget_dead_gauges(metrics_dir: Path) -> None:
    """Drop the live gauges (in flight, held, processes ready) of processes killed without a goodbye, which
    would otherwise be summed forever, and tell a restarted supervisor its processes are ready too early."""
    from prometheus_client import multiprocess

    for path in metrics_dir.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not process_running(int(pid)):  # a zombie's gauges go too
            multiprocess.mark_process_dead(int(pid), str(metrics_dir))


def _worker_env(config: StackConfig, settings: Settings, stack_dir: Path, settings_file: Path,
                fresh_metrics: bool = True) -> dict[str, str]:
    metrics_dir = stack_dir / "metrics"  # prometheus_client multiprocess mode: /metrics sums all workers
    if fresh_metrics:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(settings.to_env())
    env.update({
        "FRAME_FANOUT_STACK": str(stack_dir),
        "FRAME_FANOUT_SETTINGS": str(settings_file),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "PYTHONUNBUFFERED": "1",
        "WORKER_PUSH_AUTH": "off",  # the emulator sends no OIDC token; on Google Cloud deploy.gcp sets the audience
    })
    env.update(config.extra_env)
    return env


def _forget(handle: StackHandle) -> None:
    """Remove the state files and the settings file this stack wrote."""
    StackState.remove(handle.stack_dir)
    if handle.settings_file.exists():
        try:
            recorded = fc_settings.read_settings_file(handle.settings_file)
        except fc_settings.SettingsError:
            recorded = {}
        ours = {c.url for c in handle.state.components}
        if not recorded or recorded.get("worker_url") in ours or recorded.get("storage_emulator_host") in ours:
            handle.settings_file.unlink(missing_ok=True)


def stop_stack(handle: StackHandle, say: Say | None = None, timeout: float = 20.0) -> list[str]:
    """Stop every recorded process group (Pub/Sub first, so no more pushes), remove settings and state.

    Returns the names of the components that were still running. Idempotent.
    """
    say = say or _quiet
    stopped, errors = [], []
    order = [n for n in STOP_ORDER if n in handle.processes] + [n for n in handle.processes if n not in STOP_ORDER]
    for name in order:
        proc = handle.processes[name]
        try:
            if proc.stop(timeout=timeout):
                stopped.append(name)
                say(f"stopped {name} (pid {proc.pid})")
        except (EmulatorError, OSError) as exc:
            errors.append(f"{name} (pid {proc.pid}): {exc}")
    if errors:
        raise StackError("could not stop: " + "; ".join(errors))
    _forget(handle)
    return stopped


# ---------------------------------------------------------------- CLI


def _print_status(handle: StackHandle) -> bool:
    rows = stack_status(handle)
    print(f"stack dir: {handle.stack_dir}" + ("" if handle.state.complete else "  (start did not complete)"))
    print(f"settings:  {handle.settings_file}" + ("" if handle.settings_file.exists() else " (missing)"))
    width = max(len(r.name) for r in rows) if rows else 10
    for r in rows:
        print(f"  {r.name:<{width}}  pid {r.pid:<7} {'alive' if r.alive else 'DEAD ':<5}  {r.url or '-'}  log {r.log}")
    return bool(rows) and all(r.alive for r in rows)


def _port_arg(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("port must be 0-65535 (0 = a free port)")
    return port


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__.splitlines()[0])
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="where pids, logs and settings go (default $FRAME_FANOUT_STACK or the cache)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the emulators and the workers, create topic/subscriptions/bucket")
    d = StackConfig()
    up.add_argument("--mode", choices=("pull", "push"), default=d.mode,
                    help="how frames reach the workers: pull (default: pull processes, uses every core) "
                         "or push (the emulator pushes 2 at a time to gunicorn)")
    up.add_argument("--workers", type=int, default=d.workers,
                    help="worker processes: pull workers in pull mode (and as many gunicorn processes for /predict)")
    up.add_argument("--port", type=_port_arg, default=d.port, help="workers' port (0 = free port)")
    up.add_argument("--pubsub-port", type=_port_arg, default=d.pubsub_port, help="Pub/Sub emulator port (0 = free)")
    up.add_argument("--storage-port", type=_port_arg, default=d.storage_port, help="storage emulator port (0 = free)")
    up.add_argument("--project", default=d.project)
    up.add_argument("--topic", default=d.topic)
    up.add_argument("--bucket", default=d.bucket)
    up.add_argument("--ack-deadline", type=int, default=d.ack_deadline, help="push subscription ack deadline, s")
    up.add_argument("--max-delivery-attempts", type=int, default=d.max_delivery_attempts, help="5-100")
    up.add_argument("--app", default=d.app, help="WSGI app for gunicorn (module:callable)")
    up.add_argument("--ready-timeout", type=float, default=d.ready_timeout, help="seconds to wait for /readyz")
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("restart", help="start the workers again if they died (the emulators and their data stay)")
    sub.add_parser("status", help="show the stack's components")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def out(msg: str) -> None:
        print(msg, flush=True)

    try:
        if args.command == "up":
            config = StackConfig(
                workers=args.workers, mode=args.mode, port=args.port, pubsub_port=args.pubsub_port,
                storage_port=args.storage_port,
                project=args.project, topic=args.topic, bucket=args.bucket, ack_deadline=args.ack_deadline,
                max_delivery_attempts=args.max_delivery_attempts, app=args.app, ready_timeout=args.ready_timeout,
                stack_dir=args.stack_dir,
            )
            try:
                handle = start_stack(config, say=out)
            except StackAlreadyUp as exc:
                print(exc)
                existing = load_stack(resolve_paths(config)[0])
                if existing:
                    _print_status(existing)
                return 0
            print("the local stack is up:")
            _print_status(handle)
            return 0
        handle = load_stack(args.stack_dir)
        if args.command == "down":
            if handle is None:
                print("nothing running")
                return 0
            stopped = stop_stack(handle, say=out)
            print("stopped: " + ", ".join(stopped) if stopped else "nothing running (cleared the stale record)")
            return 0
        if handle is None:
            print(f"nothing running (no stack recorded in {args.stack_dir or fc_settings.stack_dir()})")
            return 1
        if args.command == "restart":
            restarted = restart_workers(handle, say=out)
            print("restarted: " + ", ".join(restarted) if restarted else "the workers are running; nothing to do")
        return 0 if _print_status(handle) else 1
    except (StackError, StackConfigError, EmulatorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
