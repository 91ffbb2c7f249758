"""Pull workers: Pub/Sub pull subscribers running the same frame handler as the push endpoint.

Usage::

    python -m worker.pull                              # one process per core, subscription from the settings
    python -m worker.pull --processes 4 --max-held 3 --status-port 8081

A supervisor starts ``--processes`` worker processes (one pipeline each, one inference thread) and
restarts any that dies. Each process holds at most ``--max-held`` messages: one in inference, one being
stored, one ready, so the model never waits on storage and nothing sits in a local buffer. It asks for
messages with unary Pull requests for exactly as many as it has free slots, and extends the ack deadline
of a message it has held for half of it (:class:`Leases`). Not StreamingPull: the Pub/Sub emulator hands
a stream the whole backlog whatever its flow control says (measured: 100 of 100 messages went to the
first stream of a client allowed 3), so a process killed there took every waiting frame down with it,
each redelivered and counted as a delivery attempt, and with two kills frames were dead-lettered
(docs/faults.md). Pulling only what it can start, a killed process loses at most ``--max-held``
messages, which come back when their deadline runs out, on Google Cloud as on the emulator. Settling a
message:

- processed, duplicate, error recorded → ack (after both result objects are written);
- unidentifiable (:class:`~worker.errors.BadRequestError`) → nack: redelivered until the dead-letter
  policy moves it aside, as push's 400 does;
- transient (:class:`~worker.errors.TransientError`: storage down, budget exceeded) → not acked and
  released with an ack deadline of a backoff that doubles with each delivery attempt (2 s … 60 s),
  so a failing dependency is retried slowly, never in a hot loop.

Acks are Acknowledge requests, confirmed when they return (with exactly-once delivery on the
subscription, as on Google Cloud, a failed ack is logged: the create-only writes stay the dedupe either
way). SIGTERM or SIGINT: stop pulling, finish what is running, nack whatever is still held, exit within
``--grace`` seconds. ``--status-port`` serves ``/healthz``, ``/readyz`` (every process pulling) and
``/metrics`` (all processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from framecontract.endpoints import HEALTH_PATH, METRICS_PATH, READY_PATH
from framecontract.settings import Settings, load_settings, subscription_path
from worker.errors import BadRequestError, TransientError
from worker.frames import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE

log = logging.getLogger("worker.pull")

DEFAULT_MAX_HELD = 3
"""Messages one process holds: one in inference, one storing, one ready to start."""
BACKOFF_MIN_S = 2
BACKOFF_MAX_S = 60
MAX_LEASE_S = 600
"""How long a held message's ack deadline keeps being extended (a frame takes well under a second)."""
LEASE_S = 10
"""A held message's ack deadline, extended by as much when half of it is gone: a process that dies without
a goodbye (SIGKILL, OOM, a lost instance) has its messages delivered again within 10 s. The local stack's
pull subscription has it as its ack deadline; on another subscription it is set when a message arrives.
With exactly-once delivery, 60 s (as the client library does: shorter leases there risk refused acks)."""
EXACTLY_ONCE_LEASE_S = 60
PULL_WAIT_S = 5.0
"""One Pull request waits at most this long for messages before the process asks again (and sees a stop)."""
PULL_RETRY_S = 1.0
"""Pause after a Pull request failed with a retryable error (Pub/Sub unavailable, too busy)."""
EMPTY_PAUSE_S = 0.2
"""Pause after an empty Pull response that came back early. The emulator holds an empty Pull ~4 s
(measured); Google Cloud may answer one at once, and an idle subscription must not become a hot loop."""
RESTART_BACKOFF_S = (1.0, 30.0)


def transient_backoff_s(delivery_attempt: int | None) -> int:
    """Seconds before a message that failed transiently comes back: 2, 4, 8 … 60 by delivery attempt.

    >>> [transient_backoff_s(a) for a in (None, 1, 2, 3, 6, 10)]
    [2, 2, 4, 8, 60, 60]
    """
    attempt = max(delivery_attempt or 1, 1)
    return int(min(BACKOFF_MIN_S * 2 ** min(attempt - 1, 16), BACKOFF_MAX_S))


@dataclass(frozen=True)
class PullConfig:
    """What a pull process needs. ``from_env`` reads what ``worker.app.WorkerConfig`` reads, plus
    ``FRAMES_SUBSCRIPTION`` (via the settings), ``PULL_MAX_HELD`` and ``PULL_GRACE_S``."""

    settings: Settings
    pipeline_path: Path | None = None
    warmup: bool = True
    max_held: int = DEFAULT_MAX_HELD
    frame_budget_s: float = 30.0
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_image_side: int = DEFAULT_MAX_SIDE
    grace_s: float = 8.0
    """After SIGTERM: time to finish running frames (Cloud Run allows 10 s)."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_held <= 100:
            raise ValueError(f"--max-held must be 1-100, got {self.max_held}")
        if not 0 < self.grace_s <= 600:
            raise ValueError(f"--grace must be > 0 and <= 600 s, got {self.grace_s:g}")

    @property
    def subscription_path(self) -> str:
        return subscription_path(self.settings.project, self.settings.subscription)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> PullConfig:
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {
            "settings": load_settings(environ=env),
            "pipeline_path": Path(env["WORKER_PIPELINE"]) if env.get("WORKER_PIPELINE") else None,
            "warmup": env.get("WORKER_WARMUP", "1") != "0",
            "max_held": int(env.get("PULL_MAX_HELD", str(DEFAULT_MAX_HELD))),
            "frame_budget_s": float(env.get("WORKER_FRAME_BUDGET_S", "30")),
            "max_image_pixels": int(env.get("WORKER_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))),
            "max_image_side": int(env.get("WORKER_MAX_IMAGE_SIDE", str(DEFAULT_MAX_SIDE))),
            "grace_s": float(env.get("PULL_GRACE_S", "8")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


# ---------------------------------------------------------------- one process


class HeldMessages:
    """Counts the messages a process holds, and the most it ever held (flow control, observed)."""

    def __init__(self) -> None:
        from worker.metrics import PULL_HELD, PULL_HELD_MAX

        self._lock = threading.Lock()
        self.now = 0
        self.most = 0
        self._gauge, self._most_gauge = PULL_HELD, PULL_HELD_MAX

    def __enter__(self) -> HeldMessages:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self._gauge.inc()
            self._most_gauge.set(self.most)
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.now -= 1
            self._gauge.dec()


class MessageSettler:
    """What runs for each message: handle it, then ack, nack or delay it."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.held = HeldMessages()

    def __call__(self, message: Any) -> None:
        from worker.handler import InboundMessage
        from worker.metrics import PULL_NOT_ACKED, REQUEST_SECONDS, record_outcome

        received = time.perf_counter()
        with self.held:
            inbound = InboundMessage(
                message_id=message.message_id,
                data=message.data,
                attributes=dict(message.attributes),
                publish_time=str(message.publish_time) if message.publish_time else None,
                delivery_attempt=message.delivery_attempt,
            )
            try:
                outcome = self.handler.handle(inbound, received=received)
            except BadRequestError as exc:
                PULL_NOT_ACKED.labels(error_class="bad-request").inc()
                log.warning("unidentifiable message, nacked", extra={"fields": {
                    "reason": exc.reason, "message_id": message.message_id,
                    "delivery_attempt": message.delivery_attempt}})
                message.nack()
                return
            except TransientError as exc:
                delay = transient_backoff_s(message.delivery_attempt)
                PULL_NOT_ACKED.labels(error_class="transient").inc()
                log.warning("transient failure, redelivery delayed", extra={"fields": {
                    "reason": exc.reason, "message_id": message.message_id, "retry_in_s": delay,
                    "delivery_attempt": message.delivery_attempt}})
                message.modify_ack_deadline(delay)
                message.drop()  # no longer extended: Pub/Sub delivers it again after `delay`
                return
            except Exception:
                PULL_NOT_ACKED.labels(error_class="unexpected").inc()
                log.exception("unexpected failure, nacked", extra={"fields": {"message_id": message.message_id}})
                message.nack()
                return
            self._ack(message)
            outcome.latency_ms["total"] = round((time.perf_counter() - received) * 1000, 2)
            record_outcome(outcome)
            REQUEST_SECONDS.labels(route="pull").observe(time.perf_counter() - received)
            log.info(f"frame {outcome.status}", extra={"fields": outcome.log_fields(message.message_id)})

    @staticmethod
    def _ack(message: Any) -> None:
        try:
            message.ack()
        except Exception as exc:  # noqa: BLE001 - the results are stored create-only: a redelivery is a duplicate
            log.warning("ack not confirmed", extra={"fields": {"message_id": message.message_id,
                                                               "error": f"{type(exc).__name__}: {exc}"[:300]}})


class HoldWindow:
    """The slots for messages a process may hold: one when it starts, one more for each message it settles,
    up to ``limit`` (a slow start, as Pub/Sub's push window).

    A frame that crashes its process (a bad node, native code) takes every message held beside it down
    too, and each of those deliveries counts towards the dead-letter limit. Messages whose lease ran out
    together come back together; a restarted process that took them all at once would crash on the same
    frame with the same neighbours again, and innocent frames were dead-lettered beside it
    (tests/e2e/test_faults.py). A process that has not yet settled anything holds one message.

    >>> window = HoldWindow(3); window.acquire(0); window.acquire_free()
    True
    0
    >>> window.release(settled=True); window.acquire(0), window.acquire_free()
    (True, 1)
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.granted = 1
        self._free = threading.Semaphore(1)
        self._lock = threading.Lock()

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one free slot, waiting at most ``timeout`` seconds."""
        return self._free.acquire(timeout=timeout)

    def acquire_free(self) -> int:
        """Take every other free slot at once; returns how many."""
        taken = 0
        while self._free.acquire(blocking=False):
            taken += 1
        return taken

    def release(self, settled: bool = False) -> None:
        """Give a slot back; ``settled``: its message was handled, so the window may grow by one."""
        with self._lock:
            if settled and self.granted < self.limit:
                self.granted += 1
                self._free.release()
        self._free.release()


class PulledMessage:
    """One message from a Pull response, settled through the process's :class:`Leases`."""

    def __init__(self, received: Any, leases: Leases) -> None:
        message = received.message
        self.ack_id: str = received.ack_id
        self.message_id: str = message.message_id
        self.data: bytes = message.data
        self.attributes = dict(message.attributes)
        self.publish_time = message.publish_time or None
        self.delivery_attempt: int | None = received.delivery_attempt or None
        self.received_at = time.monotonic()
        self.extended_at = self.received_at
        self._leases = leases

    def ack(self) -> None:
        try:
            self._leases.acknowledge(self)
        finally:
            self.drop()

    def nack(self) -> None:
        """Available again at once (or after the subscription's retry policy's backoff, if it has one)."""
        try:
            self.modify_ack_deadline(0)
        finally:
            self.drop()

    def modify_ack_deadline(self, seconds: int) -> None:
        self._leases.modify([self], seconds)

    def drop(self) -> None:
        """No longer held: its deadline is not extended any more."""
        self._leases.forget(self)


class Leases:
    """The messages a process holds, and the Pub/Sub requests that settle them or extend their deadlines."""

    def __init__(self, subscriber: Any, subscription: str, lease_s: int = LEASE_S,
                 subscription_deadline_s: int | None = None) -> None:
        self.subscriber = subscriber
        self.subscription = subscription
        self.ack_deadline_s = max(int(lease_s), 10)
        self.set_on_arrival = subscription_deadline_s != self.ack_deadline_s
        """Whether a new message's deadline must be changed to the lease (one request per Pull): not when the
        subscription's own ack deadline is the lease already, as on the local stack."""
        self._held: dict[str, PulledMessage] = {}
        self._lock = threading.Lock()

    def hold(self, received: list[Any]) -> list[PulledMessage]:
        """Hold the messages of a Pull response; their ack deadline becomes the lease (one request)."""
        messages = [PulledMessage(item, self) for item in received]
        with self._lock:
            self._held.update((m.ack_id, m) for m in messages)
        if not self.set_on_arrival:
            return messages
        try:
            self.modify(messages, self.ack_deadline_s)
        except Exception as exc:  # noqa: BLE001 - they keep the subscription's deadline; extended later
            log.warning("could not set the lease of new messages", extra={"fields": {"error": str(exc)[:200]}})
        return messages

    def forget(self, message: PulledMessage) -> None:
        with self._lock:
            self._held.pop(message.ack_id, None)

    def held(self) -> list[PulledMessage]:
        with self._lock:
            return list(self._held.values())

    def acknowledge(self, message: PulledMessage) -> None:
        self.subscriber.acknowledge(request={"subscription": self.subscription, "ack_ids": [message.ack_id]},
                                    timeout=60)

    def modify(self, messages: list[PulledMessage], seconds: int) -> None:
        if messages:
            self.subscriber.modify_ack_deadline(request={
                "subscription": self.subscription, "ack_ids": [m.ack_id for m in messages],
                "ack_deadline_seconds": int(seconds)}, timeout=60)

    def extend_due(self, now: float | None = None) -> int:
        """Extend by a whole ack deadline every held message that has used half of its current one (for at
        most :data:`MAX_LEASE_S`); returns how many were extended."""
        from worker.metrics import PULL_LEASE_EXTENSIONS

        now = time.monotonic() if now is None else now
        due = [m for m in self.held()
               if now - m.extended_at >= self.ack_deadline_s / 2 and now - m.received_at < MAX_LEASE_S]
        if not due:
            return 0
        try:
            self.modify(due, self.ack_deadline_s)
        except Exception as exc:  # noqa: BLE001 - tried again next round; a lapse means a redelivery, a duplicate
            log.warning("lease extension failed", extra={"fields": {"messages": len(due), "error": str(exc)[:200]}})
            return 0
        for message in due:
            message.extended_at = now
        PULL_LEASE_EXTENSIONS.inc(len(due))
        return len(due)

    def release_all(self) -> int:
        """Nack whatever is still held (stopping): Pub/Sub delivers it again at once, to another process."""
        held = self.held()
        try:
            self.modify(held, 0)
        except Exception as exc:  # noqa: BLE001 - they come back when their deadline runs out anyway
            log.warning("could not release held messages", extra={"fields": {"error": str(exc)[:200]}})
        with self._lock:
            self._held.clear()
        return len(held)


def pull_messages(subscriber: Any, subscription: str, count: int, wait_s: float = PULL_WAIT_S) -> list[Any]:
    """Up to ``count`` messages: one Pull request, waiting at most ``wait_s``; ``[]`` when none came or Pub/Sub
    was briefly unavailable (asked again by the caller); other errors (no such subscription, no permission)
    raise."""
    from google.api_core import exceptions as gexc

    try:
        response = subscriber.pull(request={"subscription": subscription, "max_messages": count},
                                   timeout=wait_s, retry=None)
    except gexc.DeadlineExceeded:
        return []
    except (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.Aborted, gexc.ResourceExhausted,
            gexc.Unknown) as exc:
        log.warning("pull failed, asking again", extra={"fields": {"error": f"{type(exc).__name__}: {exc}"[:200]}})
        time.sleep(PULL_RETRY_S)
        return []
    return list(response.received_messages)


def build_handler(config: PullConfig) -> Any:
    """The pipeline (warmed), the result store and the frame handler of one process."""
    import numpy as np

    from framecontract.clients import make_storage_client
    from worker.frames import ImageLimits
    from worker.handler import FrameHandler
    from worker.pipeline import DEFAULT_PIPELINE, Pipeline
    from worker.runner import PipelineRunner
    from worker.storage import ResultStore

    pipeline = Pipeline.from_yaml(config.pipeline_path or DEFAULT_PIPELINE)
    if config.warmup:
        pipeline.run(np.zeros((64, 64, 3), dtype=np.uint8))
    bucket = config.settings.bucket
    store = ResultStore.from_settings(config.settings, make_storage_client(config.settings))
    runner = PipelineRunner(pipeline, max_in_flight=config.max_held)
    limits = ImageLimits.for_push(config.max_image_pixels, config.max_image_side)
    return FrameHandler(runner, store, bucket, config.frame_budget_s, limits)


def run_process(config: PullConfig, stop: threading.Event, handler: Any | None = None) -> None:
    """Pull and settle messages until ``stop`` is set; then drain within ``config.grace_s``.

    Usage (tests)::

        stop = threading.Event(); threading.Thread(target=run_process, args=(config, stop)).start()
    """
    from framecontract.clients import make_subscriber
    from worker.metrics import PULL_READY

    handler = handler or build_handler(config)
    subscriber = make_subscriber(config.settings)
    path = config.subscription_path
    executor = ThreadPoolExecutor(max_workers=config.max_held, thread_name_prefix="pull-frame")
    try:
        found = subscriber.get_subscription(subscription=path, timeout=30)
        leases = Leases(subscriber, path, EXACTLY_ONCE_LEASE_S if found.enable_exactly_once_delivery else LEASE_S,
                        subscription_deadline_s=found.ack_deadline_seconds)
        settler = MessageSettler(handler)
        slots = HoldWindow(config.max_held)
        leasing_done = threading.Event()
        threading.Thread(target=_extend_leases, args=(leases, leasing_done), name="pull-leases", daemon=True).start()

        def settle(message: PulledMessage) -> None:
            try:
                settler(message)
            finally:
                message.drop()
                slots.release(settled=True)

        PULL_READY.inc()
        log.info("pull worker ready", extra={"fields": {
            "subscription": path, "max_held": config.max_held, "pid": os.getpid(),
            "exactly_once": bool(found.enable_exactly_once_delivery), "ack_deadline_s": leases.ack_deadline_s,
            "bucket": config.settings.bucket}})
        try:
            while not stop.is_set():
                if not slots.acquire(timeout=0.5):
                    continue
                free = 1 + slots.acquire_free()
                asked = time.monotonic()
                received = pull_messages(subscriber, path, free)
                if not received and time.monotonic() - asked < EMPTY_PAUSE_S:
                    stop.wait(EMPTY_PAUSE_S)
                for message in leases.hold(received):
                    if stop.is_set():  # arrived after the stop: back to Pub/Sub at once
                        message.nack()
                        slots.release()
                    else:
                        executor.submit(settle, message)
                for _ in range(free - len(received)):
                    slots.release()
        finally:
            log.info("stopping: no new messages; finishing the running ones, nacking the rest")
            PULL_READY.dec()
            executor.shutdown(wait=False)
            deadline = time.monotonic() + config.grace_s
            while leases.held() and time.monotonic() < deadline:
                time.sleep(0.05)
            leasing_done.set()
            released = leases.release_all()
            if released:
                log.info("released unfinished messages", extra={"fields": {"messages": released}})
    finally:
        subscriber.close()


def _extend_leases(leases: Leases, done: threading.Event) -> None:
    while not done.wait(timeout=1.0):
        leases.extend_due()


def _one_process(config: PullConfig) -> int:
    from worker.logs import configure_json_logging

    configure_json_logging()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_process(config, stop)
    except Exception:
        log.exception("pull worker failed")
        return 1
    return 0


# ---------------------------------------------------------------- the supervisor


@dataclass
class Child:
    index: int
    process: subprocess.Popen[bytes]
    started: float
    restarts: int = 0


def restart_delay_s(restarts: int) -> float:
    """Backoff before restarting a process that died: 1, 2, 4 … 30 s.

    >>> [restart_delay_s(n) for n in (0, 1, 2, 10)]
    [1.0, 2.0, 4.0, 30.0]
    """
    low, high = RESTART_BACKOFF_S
    return min(low * 2 ** min(restarts, 16), high)


class Supervisor:
    """Starts N pull processes, restarts the ones that die, stops them all on SIGTERM."""

    def __init__(self, argv: Sequence[str], processes: int, grace_s: float, env: dict[str, str]) -> None:
        self.argv, self.processes, self.grace_s, self.env = list(argv), processes, grace_s, env
        self.children: list[Child] = []
        self.stopping = threading.Event()

    def _spawn(self, index: int, restarts: int = 0) -> Child:
        process = subprocess.Popen([sys.executable, "-m", "worker.pull", "--one", *self.argv], env=self.env)
        return Child(index, process, time.monotonic(), restarts)

    def run(self) -> int:
        from prometheus_client import multiprocess

        self.children = [self._spawn(i) for i in range(self.processes)]
        pending: dict[int, float] = {}
        while not self.stopping.wait(timeout=0.5):
            for i, child in enumerate(self.children):
                code = child.process.poll()
                if code is None or i in pending:
                    continue
                multiprocess.mark_process_dead(child.process.pid)
                delay = restart_delay_s(child.restarts if time.monotonic() - child.started < 60 else 0)
                log.warning("pull process died, restarting", extra={"fields": {
                    "pid": child.process.pid, "exit_code": code, "restart_in_s": delay}})
                pending[i] = time.monotonic() + delay
            for i, due in list(pending.items()):
                if time.monotonic() >= due:
                    old = self.children[i]
                    restarts = old.restarts + 1 if time.monotonic() - old.started < 60 else 0
                    self.children[i] = self._spawn(i, restarts)
                    del pending[i]
        return self._stop_all()

    def _stop_all(self) -> int:
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + 2
        for child in self.children:
            try:
                child.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("pull process did not stop in time, killing", extra={"fields": {"pid": child.process.pid}})
                child.process.kill()
                child.process.wait()
        return 0


def serve_status(port: int, host: str, processes: int) -> ThreadingHTTPServer:
    """``/healthz``, ``/readyz`` (all ``processes`` subscribed) and ``/metrics`` (summed over processes)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    def ready_count() -> float:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        value = registry.get_sample_value("pull_processes_ready")
        return value or 0.0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == HEALTH_PATH:
                self._send(200, b"ok", "text/plain")
            elif self.path == READY_PATH:
                ready = ready_count()
                body = json.dumps({"ready": ready >= processes, "processes_ready": int(ready),
                                   "processes": processes}).encode()
                self._send(200 if ready >= processes else 503, body, "application/json")
            elif self.path == METRICS_PATH:
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:  # probes are not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="pull-status", daemon=True).start()
    return server


def default_processes() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker.pull", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--subscription", default=None, help="pull subscription (default FRAMES_SUBSCRIPTION)")
    parser.add_argument("--max-held", type=int, default=None,
                        help=f"messages one process holds (default PULL_MAX_HELD or {DEFAULT_MAX_HELD})")
    parser.add_argument("--grace", type=float, default=None, help="seconds to finish after SIGTERM (default 8)")
    parser.add_argument("--status-port", type=int, default=None, help="serve /healthz, /readyz, /metrics here")
    parser.add_argument("--status-host", default="127.0.0.1")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = PullConfig.from_env(max_held=args.max_held, grace_s=args.grace)
        if args.subscription:
            config = dataclasses.replace(config, settings=dataclasses.replace(config.settings,
                                                                              subscription=args.subscription))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.one:
        return _one_process(config)
    processes = args.processes or default_processes()
    if not 1 <= processes <= 256:
        print(f"error: --processes must be 1-256, got {processes}", file=sys.stderr)
        return 2
    from worker.logs import configure_json_logging

    configure_json_logging()
    env = dict(os.environ)
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="frame-fanout-pull-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = env["PROMETHEUS_MULTIPROC_DIR"]  # for this process's own reads
    child_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--one"]
    supervisor = Supervisor(_strip_processes(child_argv), processes, config.grace_s, env)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    server = serve_status(args.status_port, args.status_host, processes) if args.status_port is not None else None
    log.info("pull supervisor started", extra={"fields": {"processes": processes, "pid": os.getpid(),
                                                          "subscription": config.subscription_path}})
    try:
        return supervisor.run()
    finally:
        if server is not None:
            server.shutdown()


def _strip_processes(argv: list[str]) -> list[str]:
    """The child's arguments: the supervisor's minus ``--processes`` and ``--status-*``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--processes", "--status-port", "--status-host"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())
