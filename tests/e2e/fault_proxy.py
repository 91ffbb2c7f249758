"""A fault-injecting TCP proxy for tests: put it between the workers and the storage emulator.

Usage::

    proxy = FaultProxy(upstream=("127.0.0.1", storage_port)).start()   # listens on a free port
    env = {"STORAGE_EMULATOR_HOST": proxy.url}                          # the workers talk to the proxy
    proxy.set_mode("refuse")     # new connections refused (listening socket closed), open ones reset
    proxy.set_mode("freeze")     # connections accepted, nothing forwarded either way, all held open
    proxy.set_mode("pass")       # forward again; held connections carry on where they stopped
    proxy.stop()

The in-memory storage emulator loses its objects when it is restarted, so an outage is made here
rather than by stopping it. ``refuse`` is a server that is down (``ECONNREFUSED`` for new connections,
``ECONNRESET`` for the ones that were open); ``freeze`` is a hung server (a process stopped with
SIGSTOP, a stuck load balancer): connections are accepted and requests go unanswered until ``pass``,
when what was held is delivered as if the server had only paused. The upstream is connected lazily,
one upstream connection per accepted connection, so the proxy can be started before the emulator.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["pass", "refuse", "freeze"]
MODES: tuple[Mode, ...] = ("pass", "refuse", "freeze")
CHUNK = 64 * 1024


@dataclass
class ModeChange:
    """One switch of mode, for the test's figures (``time.monotonic()`` and the wall clock)."""

    mode: Mode
    monotonic: float
    wall: float


@dataclass(eq=False)
class _Pair:
    """One proxied connection: the client's socket and the upstream's."""

    client: socket.socket
    upstream: socket.socket | None = None
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        """Close both sides with a TCP reset (SO_LINGER 0), as a crashed server would."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for sock in (self.client, self.upstream):
                if sock is None:
                    continue
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    sock.close()

    def attach(self, upstream: socket.socket) -> bool:
        """Set the upstream socket; False (and it is reset) if the pair was closed meanwhile. The storage
        emulator serves one connection at a time: an upstream connection left open would stall it."""
        with self.lock:
            if not self.closed:
                self.upstream = upstream
                return True
        with contextlib.suppress(OSError):
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        upstream.close()
        return False

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            for sock in (self.client, self.upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


class FaultProxy:
    """A TCP proxy to ``upstream`` whose mode a test switches (see the module docstring). Thread-safe."""

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.mode: Mode = "pass"
        self.changes: list[ModeChange] = []
        self.accepted = 0
        self.reset_connections = 0
        self._lock = threading.Lock()
        self._flowing = threading.Event()  # set while mode == "pass"
        self._flowing.set()
        self._listener: socket.socket | None = None
        self._pairs: set[_Pair] = set()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        """``http://host:port``: the ``STORAGE_EMULATOR_HOST`` value that goes through the proxy."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FaultProxy:
        self._listen()
        self.changes.append(ModeChange("pass", time.monotonic(), time.time()))
        return self

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True,
                         name=f"fault-proxy-accept-{self.port}").start()

    def _close_listener(self) -> None:
        """Stop listening: connecting now gets ECONNREFUSED (the accept thread ends by itself)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # stops listening now, even while accept() is waiting
            listener.close()

    def set_mode(self, mode: Mode) -> None:
        """Switch to ``mode`` at once (see the module docstring)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        with self._lock:
            if mode == self.mode:
                return
            previous, self.mode = self.mode, mode
            self.changes.append(ModeChange(mode, time.monotonic(), time.time()))
            if mode == "refuse":
                self._flowing.clear()
                self._close_listener()  # new connections: ECONNREFUSED
                for pair in list(self._pairs):  # open ones: ECONNRESET
                    pair.reset()
                    self.reset_connections += 1
                self._pairs.clear()
            elif mode == "freeze":
                self._flowing.clear()
                if previous == "refuse":
                    self._listen()
            else:
                if previous == "refuse":
                    self._listen()
                self._flowing.set()

    def stop(self) -> None:
        self._stopped.set()
        self._flowing.set()
        with self._lock:
            self._close_listener()
            for pair in list(self._pairs):
                pair.close()
            self._pairs.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ plumbing

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed (refuse, stop)
            client.settimeout(None)
            pair = _Pair(client)
            with self._lock:
                if self.mode == "refuse" or self._stopped.is_set():  # accepted just before the switch
                    pair.reset()
                    continue
                self.accepted += 1
                self._pairs.add(pair)
            threading.Thread(target=self._serve, args=(pair,), daemon=True).start()

    def _serve(self, pair: _Pair) -> None:
        try:
            self._wait_flowing(pair)  # frozen: accepted, but not even connected upstream
            if pair.closed:
                return
            upstream = socket.create_connection(self.upstream, timeout=10)
            upstream.settimeout(None)
        except OSError:
            pair.reset()
            self._forget(pair)
            return
        if not pair.attach(upstream):
            self._forget(pair)
            return
        back = threading.Thread(target=self._pump, args=(pair, upstream, pair.client), daemon=True)
        back.start()
        self._pump(pair, pair.client, upstream)
        back.join()
        pair.close()
        self._forget(pair)

    def _wait_flowing(self, pair: _Pair) -> None:
        while not self._flowing.wait(timeout=0.2):
            if pair.closed or self._stopped.is_set():
                return

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        """Copy ``source`` → ``sink``; while frozen, hold each chunk until the proxy flows again."""
        try:
            while not pair.closed:
                data = source.recv(CHUNK)
                if not data:
                    self._wait_flowing(pair)
                    with contextlib.suppress(OSError):
                        sink.shutdown(socket.SHUT_WR)
                    return
                self._wait_flowing(pair)
                if pair.closed:
                    return
                sink.sendall(data)
        except OSError:
            pair.reset()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
