"""Live sources: HTTP(S) MJPEG cameras, RTSP and other network streams, webcams — with reconnects.

Usage::

    source = open_live_source("rtsp://user:pass@10.0.0.5:554/stream1", reconnect_timeout=60)
    source.info.name                 # 'rtsp://***@10.0.0.5:554/stream1' — credentials never leave
    for frame in source.frames():    # timestamp_us = capture wall-clock time, µs since the epoch
        ...
    source.gaps                      # one dict per reconnect, for the manifest
    source.interrupt()               # from another thread: stop waiting for frames or a reconnect

A live source is opened by connecting and receiving its first frame, so an unreachable camera,
bad credentials or a URL that serves no video fail *before* a job exists. After that, a dropped
connection, no whole frame for ``frame_timeout`` seconds (a stalled server, or one trickling bytes
that never make a frame) or an ended stream is logged and reconnected with exponential backoff
(0.5 s doubling to 10 s); the outage is recorded as a gap (last frame before, first frame after,
reason, attempts). A source unreachable for ``reconnect_timeout`` seconds
raises :class:`StreamUnavailableError`: the job ends ``failed``, with what it had published.

``http(s)://`` is read by the producer itself when the server answers ``multipart/x-mixed-replace``
(MJPEG, as most IP cameras serve it; see :mod:`producer.mjpeg`): each part is one JPEG, there is no
demuxer to confuse, and the URL's credentials go out only in answer to the camera's 401 challenge,
in the scheme it names: Digest when it offers Digest, Basic only when Basic is all it offers
(:mod:`producer.httpauth`), over http and https alike. Any other HTTP content (an MP4, MPEG-TS, HLS)
and every other scheme (``rtsp``, ``rtsps``, ``rtmp``, ``tcp``, ``udp``, ``srt``, ...) go to OpenCV's
FFmpeg backend (RTSP over TCP unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` says otherwise). A webcam is
opened by index through V4L2.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from secrets import token_hex
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

import cv2
import numpy as np
import requests
import urllib3

from producer.errors import InputError, ProducerError
from producer.httpauth import authorization, choose_challenge, parse_challenges
from producer.mjpeg import MjpegProtocolError, MultipartJpegParser, boundary_from_content_type, is_multipart
from producer.options import DEFAULT_FRAME_TIMEOUT_S
from producer.redact import AmbiguousUrlError, parse_source_url, redact_url, scrub, url_secrets
from producer.sources import DecodedFrame, SourceInfo
from producer.timestamps import usable_fps

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
FRAME_TIMEOUT_S = DEFAULT_FRAME_TIMEOUT_S
"""No whole frame for this long counts as a dropped connection, however many bytes trickle in."""
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
MAX_GAPS_RECORDED = 1000
"""Gaps kept for the manifest; later ones are only counted (``gaps_total``) and logged."""
HTTP_CHUNK_BYTES = 65_536
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "rtp", "srt", "tcp", "udp", "mms", "mmsh", "hls"})


class StreamUnavailableError(ProducerError):
    """A live source cannot be reached (at the start, or for longer than the reconnect timeout). Exit 1."""


class StreamLost(Exception):
    """The connection to a live source dropped, stalled or ended."""


def backoff_delays(initial: float = BACKOFF_INITIAL_S, maximum: float = BACKOFF_MAX_S,
                   multiplier: float = 2.0) -> Iterator[float]:
    """0.5, 1, 2, 4, 8, 10, 10, ... seconds between reconnect attempts (pure).

    >>> import itertools; list(itertools.islice(backoff_delays(), 7))
    [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    """
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * multiplier, maximum)


class WallClock:
    """Capture timestamps: wall-clock µs since the epoch, forced strictly increasing.

    The system clock can step back (NTP); timestamps of one job must not, or sampling and ordering
    break. A step back is absorbed by continuing 1 µs after the previous timestamp.
    """

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self.last_us: int | None = None

    def now_us(self) -> int:
        now = self._now_ns() // 1000
        if self.last_us is not None and now <= self.last_us:
            now = self.last_us + 1
        self.last_us = now
        return now


@dataclass
class Gap:
    """An outage of a live source: from the last frame before it to the first frame after it."""

    reason: str
    after_timestamp_us: int | None
    lost_at_us: int
    resumed_timestamp_us: int | None = None
    reconnect_attempts: int = 0

    def to_manifest(self) -> dict[str, Any]:
        """The gap as recorded in the manifest's ``gaps``."""
        end = self.resumed_timestamp_us
        start = self.after_timestamp_us if self.after_timestamp_us is not None else self.lost_at_us
        return {
            "after_timestamp_us": self.after_timestamp_us,
            "resumed_timestamp_us": end,
            "seconds": round((end - start) / 1e6, 3) if end is not None else None,
            "reason": self.reason,
            "reconnect_attempts": self.reconnect_attempts,
        }


class Connection(Protocol):
    """One connection to a live source; ``images()`` raises :class:`StreamLost` when it drops."""

    first_image: np.ndarray
    """The frame received while connecting (also the first one ``images()`` yields)."""
    fps: float | None

    def images(self) -> Iterator[np.ndarray]: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


class LiveSource:
    """A live :class:`~producer.sources.FrameSource` that reconnects. Use :func:`open_live_source`."""

    def __init__(self, info: SourceInfo, connect: Callable[[], Connection], first: Connection,
                 reconnect_timeout: float, secrets: tuple[str, ...] = (), clock: WallClock | None = None) -> None:
        self.info = info
        self._connect = connect
        self._connection: Connection | None = first
        self.reconnect_timeout = reconnect_timeout
        self._secrets = secrets
        self._clock = clock or WallClock()
        self._interrupted = threading.Event()
        self._gaps: list[Gap] = []
        self.gaps_total = 0
        self._taken = False
        self.reader = "ffmpeg"
        """What reads the frames: ``mjpeg`` (the producer's own parser), ``ffmpeg`` or ``v4l2``."""

    @property
    def gaps(self) -> list[dict[str, Any]]:
        """The recorded outages, as manifest entries."""
        return [gap.to_manifest() for gap in self._gaps]

    def frames(self) -> Iterator[DecodedFrame]:
        """Frames until :meth:`interrupt`, reconnecting as needed; can be taken once."""
        if self._taken:
            raise RuntimeError("frames() can be iterated only once")
        self._taken = True
        pending_gap: Gap | None = None
        while self._connection is not None:
            connection, reason = self._connection, "the stream ended"
            try:
                for image in connection.images():
                    timestamp_us = self._clock.now_us()
                    if pending_gap is not None:
                        pending_gap.resumed_timestamp_us = timestamp_us
                        log.warning("%s: reconnected after %.1f s (%d attempts)", self.info.name,
                                    (timestamp_us - (pending_gap.after_timestamp_us or pending_gap.lost_at_us)) / 1e6,
                                    pending_gap.reconnect_attempts)
                        pending_gap = None
                    yield DecodedFrame(timestamp_us, image)
                    if self._interrupted.is_set():
                        return
            except StreamLost as exc:
                reason = scrub(str(exc), self._secrets)
            finally:
                connection.close()
                self._connection = None
            if self._interrupted.is_set():
                return
            pending_gap = self._record_gap(reason)
            self._connection = self._reconnect(pending_gap)

    def _record_gap(self, reason: str) -> Gap:
        gap = Gap(reason, self._clock.last_us, time.time_ns() // 1000)
        self.gaps_total += 1
        if len(self._gaps) < MAX_GAPS_RECORDED:
            self._gaps.append(gap)
        log.warning("%s: %s; reconnecting (giving up after %g s)", self.info.name, reason, self.reconnect_timeout)
        return gap

    def _reconnect(self, gap: Gap) -> Connection | None:
        """A new connection, ``None`` if interrupted; :class:`StreamUnavailableError` after the timeout."""
        deadline = time.monotonic() + self.reconnect_timeout
        last_error = "no attempt made (--reconnect-timeout 0)"
        for delay in backoff_delays():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._interrupted.wait(min(delay, remaining)):
                return None
            gap.reconnect_attempts += 1
            try:
                return self._connect()
            except (StreamLost, ProducerError) as exc:
                last_error = scrub(str(exc), self._secrets)
                log.info("%s: reconnect attempt %d failed: %s", self.info.name, gap.reconnect_attempts, last_error)
            if self._interrupted.is_set():
                return None
        raise StreamUnavailableError(
            f"{self.info.name}: stream lost ({gap.reason}) and not back after {self.reconnect_timeout:g} s "
            f"({gap.reconnect_attempts} reconnect attempts; last: {last_error})",
            "check the camera and the network, or raise --reconnect-timeout; the frames published before "
            "the loss are in the job",
        )

    def interrupt(self) -> None:
        """Stop reading soon, from any thread: ends a reconnect wait and unblocks a pending read if it can."""
        self._interrupted.set()
        connection = self._connection
        if connection is not None:
            connection.interrupt()

    def close(self) -> None:
        self.interrupt()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


# --- OpenCV (FFmpeg / V4L2) connections ---------------------------------------------------------


class CaptureConnection:
    """A ``cv2.VideoCapture`` on a stream or a webcam. Safe to close from another thread mid-read."""

    def __init__(self, capture: cv2.VideoCapture, first_image: np.ndarray) -> None:
        self._capture = capture
        self.first_image = first_image
        self.fps = usable_fps(capture.get(cv2.CAP_PROP_FPS))
        self._lock = threading.Lock()
        self._closed = False

    def images(self) -> Iterator[np.ndarray]:
        yield self.first_image
        while True:
            with self._lock:
                if self._closed:
                    return
                ok, image = self._capture.read()
            if not ok or image is None:
                raise StreamLost("no frame received (stream ended, dropped or stalled)")
            yield image

    def interrupt(self) -> None:
        """Nothing to do: OpenCV's read timeout bounds how long a read can block."""

    def close(self) -> None:
        # never release the capture while another thread is inside read(): wait for that read to end
        with self._lock:
            if not self._closed:
                self._closed = True
                self._capture.release()


def prefer_rtsp_over_tcp() -> None:
    """RTSP over TCP by default (UDP loses packets on busy or NATed links); an explicit setting wins."""
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")


def connect_capture(target: str | int, name: str, secrets: tuple[str, ...],
                    connect_timeout: float, frame_timeout: float) -> CaptureConnection:
    """Open a stream URL (FFmpeg) or a webcam index (V4L2) and read its first frame; :class:`StreamLost` if not.

    OpenCV's read timeout bounds each ``read()``, which reads packets until a frame decodes: a deadline
    per frame, however slowly the bytes come.
    """
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(connect_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(frame_timeout * 1000)]
    if isinstance(target, int):
        capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
    else:
        prefer_rtsp_over_tcp()
        capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise StreamLost("no such device, or it is busy" if isinstance(target, int)
                         else "FFmpeg cannot open it (unreachable, refused, or not a stream it can read)")
    ok, image = capture.read()
    if not ok or image is None:
        capture.release()
        raise StreamLost(f"it opened but sent no frame within {frame_timeout:g} s")
    return CaptureConnection(capture, image)


# --- HTTP(S) MJPEG ------------------------------------------------------------------------------


def late_frame_message(frame_timeout: float) -> str:
    """Why a connection that delivers no whole frame in time is dropped."""
    return f"no whole frame within {frame_timeout:g} s (a stalled or trickling server)"


def late_connect_message(seconds: float) -> str:
    """Why a connection that has not delivered its first frame in time is dropped."""
    return f"no frame within {seconds:g} s of connecting (a stalled or trickling server)"


_ON_CONNECT: contextvars.ContextVar[Callable[[socket.socket], None] | None] = contextvars.ContextVar(
    "producer_live_on_connect", default=None)
"""Told the socket of every HTTP connection this thread opens while a :class:`ConnectWatchdog` is on."""


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        report = _ON_CONNECT.get()
        if report is not None and self.sock is not None:
            report(self.sock)


class _WatchedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        report = _ON_CONNECT.get()
        if report is not None and self.sock is not None:
            report(self.sock)


class _WatchedHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections report their sockets to :data:`_ON_CONNECT` (no proxy support)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def watched_session() -> requests.Session:
    """A session whose direct connections a :class:`ConnectWatchdog` can cut (through a proxy it cannot)."""
    session = requests.Session()
    session.mount("http://", _WatchedAdapter())
    session.mount("https://", _WatchedAdapter())
    return session


class ConnectWatchdog:
    """Shuts down the connections opened inside ``with`` once ``seconds`` have passed.

    Usage::

        with ConnectWatchdog(11.0) as watchdog:
            response = watched_session().get(url, stream=True, timeout=(10, 1))
            ...                                  # read the first frame
        if watchdog.expired: ...

    A socket timeout bounds each read, not a whole response: a server sending its status line,
    headers or first frame a byte at a time would hold a plain ``requests.get`` for ever.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        """Did the time run out before the ``with`` block ended? Final once the block has ended."""
        self._ended = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._token: contextvars.Token[Callable[[socket.socket], None] | None] | None = None

    @property
    def last_socket(self) -> socket.socket | None:
        """The socket opened last (the one a streaming response reads from), ``None`` before any."""
        with self._lock:
            return self._sockets[-1] if self._sockets else None

    def _register(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut_down(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.expired = True
            for sock in self._sockets:
                _shut_down(sock)

    def __enter__(self) -> ConnectWatchdog:
        self._token = _ON_CONNECT.set(self._register)
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()
        with self._lock:
            self._ended = True
        if self._token is not None:
            _ON_CONNECT.reset(self._token)


def _shut_down(sock: socket.socket) -> None:
    """End any read blocked on ``sock`` (a close from another thread would not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class MjpegConnection:
    """One HTTP response streaming ``multipart/x-mixed-replace`` JPEGs; a whole frame due every ``frame_timeout`` s."""

    def __init__(self, response: requests.Response, name: str, frame_timeout: float = FRAME_TIMEOUT_S,
                 sock: socket.socket | None = None) -> None:
        self._response = response
        self._socket = sock
        """What ``response`` reads from (http.client lets go of it when the server closes after the response)."""
        self._parser = MultipartJpegParser(boundary_from_content_type(response.headers.get("Content-Type", "")))
        self._ready: list[bytes] = []
        self._name = name
        self._frame_timeout = frame_timeout
        self.fps: float | None = None
        self.parts_undecodable = 0
        self.first_image = self._next_image()

    def _next_image(self) -> np.ndarray:
        deadline = time.monotonic() + self._frame_timeout
        while True:
            while self._ready:
                data = self._ready.pop(0)
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if image is not None:
                    return image
                self.parts_undecodable += 1
                log.warning("%s: skipped a part that is not a decodable JPEG (%d bytes)", self._name, len(data))
            chunk = self._read(deadline)
            try:
                self._ready.extend(self._parser.feed(chunk))
            except MjpegProtocolError as exc:
                raise StreamLost(f"not a valid MJPEG stream: {exc}") from None

    def _read(self, deadline: float) -> bytes:
        """The next bytes off the socket, waiting at most until ``deadline``; :class:`StreamLost` if none."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StreamLost(late_frame_message(self._frame_timeout))
        self._limit_read_wait(remaining)
        try:
            chunk = self._response.raw.read1(HTTP_CHUNK_BYTES)
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as exc:
            if time.monotonic() >= deadline:
                raise StreamLost(late_frame_message(self._frame_timeout)) from None
            raise StreamLost(f"connection lost ({type(exc).__name__}: {exc})") from None
        if not chunk:
            raise StreamLost("the server closed the connection")
        return chunk

    def _limit_read_wait(self, seconds: float) -> None:
        """Let the next socket read wait no longer than ``seconds`` (the frame's deadline)."""
        sock = self._socket or getattr(getattr(self._response.raw, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # closed by interrupt(): the read fails at once
                sock.settimeout(max(seconds, 0.001))

    def images(self) -> Iterator[np.ndarray]:
        image: np.ndarray | None = self.first_image
        while image is not None:
            yield image
            image = self._next_image()

    def interrupt(self) -> None:
        self.close()

    def close(self) -> None:
        self._response.close()


HTTP_HEADERS = {"Accept": "multipart/x-mixed-replace, */*"}


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """requests' ``auth`` that adds nothing: no credentials from the URL or ``~/.netrc`` on a first request."""
    return request


def http_get(url: str, connect_timeout: float, frame_timeout: float) -> requests.Response:
    """GET ``url`` streaming; the URL's credentials only in answer to a 401, in the scheme it asks for.

    The first request carries no credentials at all, over http or https. A 401 is answered once:
    with Digest if the camera offers Digest, with Basic only if Basic is all it offers
    (:func:`producer.httpauth.choose_challenge`). :class:`StreamLost` for a challenge that cannot be
    answered (no credentials in the URL, or only schemes other than Basic and Digest).
    """
    parsed = parse_source_url(url)
    user, password = parsed.credentials() or ("", None)
    bare = parsed.without_userinfo()
    timeout = (connect_timeout, frame_timeout)
    session = watched_session()
    response = session.get(bare, stream=True, timeout=timeout, auth=_no_auth, headers=HTTP_HEADERS)
    if response.status_code != 401:
        return response
    response.close()
    target = response.url  # after any redirect: the URL that asked for credentials
    challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
    challenge = choose_challenge(challenges)
    if not challenges:
        raise StreamLost("the server answered HTTP 401 without naming an authentication scheme (no WWW-Authenticate)")
    if challenge is None:
        offered = ", ".join(sorted({c.scheme.capitalize() for c in challenges}))
        raise StreamLost(f"the server asks for {offered} authentication (HTTP 401); the producer answers only "
                         "Basic and Digest")
    if parsed.userinfo is None:
        scheme = target.split("://", 1)[0]
        raise StreamLost(f"the server asks for a user name and password (HTTP 401, {challenge.scheme.capitalize()}) "
                         f"and the URL has none: write them as {scheme}://USER:PASSWORD@host/...")
    header = authorization(challenge, user, password or "", "GET", request_target(target), cnonce=token_hex(16))
    return session.get(target, stream=True, timeout=timeout, auth=_no_auth,
                       headers={**HTTP_HEADERS, "Authorization": header})


def request_target(url: str) -> str:
    """The path and query of ``url`` as sent in the request line (what Digest's ``uri`` must repeat).

    >>> request_target("http://cam:8080/video.cgi?channel=1#x")
    '/video.cgi?channel=1'
    """
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def connect_http(url: str, name: str, connect_timeout: float,
                 frame_timeout: float = FRAME_TIMEOUT_S) -> MjpegConnection | None:
    """An MJPEG connection, ``None`` if the server answers something that is not multipart (for FFmpeg).

    :class:`StreamLost` when the server cannot be reached, refuses (HTTP status) or sends no JPEG,
    or when the first frame is not whole ``connect_timeout + frame_timeout`` seconds after the start.
    """
    with ConnectWatchdog(connect_timeout + frame_timeout) as watchdog:
        try:
            connection = _connect_http(url, name, connect_timeout, frame_timeout, watchdog)
        except StreamLost:
            if not watchdog.expired:
                raise
            connection = None
    if watchdog.expired:  # whatever came back came through a socket shut down half-way
        if connection is not None:
            connection.close()
        raise StreamLost(late_connect_message(watchdog.seconds))
    return connection


def _connect_http(url: str, name: str, connect_timeout: float, frame_timeout: float,
                  watchdog: ConnectWatchdog) -> MjpegConnection | None:
    try:
        response = http_get(url, connect_timeout, frame_timeout)
    except requests.RequestException as exc:
        raise StreamLost(f"cannot connect ({type(exc).__name__}: {exc})") from None
    if response.status_code in (401, 403):
        response.close()
        raise StreamLost(f"the server refused the credentials (HTTP {response.status_code})")
    if response.status_code != 200:
        response.close()
        raise StreamLost(f"the server answered HTTP {response.status_code} {response.reason}")
    if not is_multipart(response.headers.get("Content-Type")):
        response.close()
        return None
    try:
        return MjpegConnection(response, name, frame_timeout, watchdog.last_socket)
    except (StreamLost, MjpegProtocolError) as exc:
        response.close()
        raise StreamLost(str(exc)) from None


# --- opening ------------------------------------------------------------------------------------


def open_live_source(target: str | int, reconnect_timeout: float, *, connect_timeout: float = CONNECT_TIMEOUT_S,
                     frame_timeout: float = FRAME_TIMEOUT_S) -> LiveSource:
    """Connect to a stream URL or a webcam index and read the first frame; :class:`StreamUnavailableError` if not.

    ``frame_timeout``: no whole frame for this many seconds is a lost connection (then reconnects).
    """
    if isinstance(target, int):
        name, kind, secrets, capture_target = f"webcam {target}", "webcam", (), target
    else:
        name, kind, secrets = redact_url(target), "stream", url_secrets(target)
        try:  # FFmpeg splits at the first '/', '?' or '#': give it the user name and password percent-encoded
            capture_target = parse_source_url(target).with_encoded_userinfo()
        except AmbiguousUrlError as exc:
            raise InputError(str(exc), exc.remedy) from None
    scheme = target.split("://", 1)[0].lower() if isinstance(target, str) else ""

    def connect_with_ffmpeg() -> Connection:
        return connect_capture(capture_target, name, secrets, connect_timeout, frame_timeout)

    connect: Callable[[], Connection] = connect_with_ffmpeg
    reader = "v4l2" if kind == "webcam" else "ffmpeg"
    try:
        first: Connection | None = None
        if scheme in ("http", "https"):
            first = connect_http(str(target), name, connect_timeout, frame_timeout)
            if first is not None:
                reader = "mjpeg"

                def connect_mjpeg() -> Connection:
                    connection = connect_http(str(target), name, connect_timeout, frame_timeout)
                    if connection is None:
                        raise StreamLost("the server no longer serves multipart/x-mixed-replace")
                    return connection

                connect = connect_mjpeg
        if first is None:
            first = connect()
    except StreamLost as exc:
        problem = scrub(str(exc), secrets)
        if kind == "webcam":
            raise StreamUnavailableError(
                f"cannot open webcam {target} ({problem})",
                "check that the camera is connected ('ls /dev/video*'), not in use by another program, and that "
                "you may read it (group 'video')") from None
        raise StreamUnavailableError(
            f"cannot read the stream {name}: {problem}",
            "check the URL, that the camera is on and reachable from here, and its user name and password") from None
    height, width = first.first_image.shape[:2]
    info = SourceInfo(name=name, kind=kind, clock="wallclock", fps=first.fps,
                      width=width, height=height, frame_count=None)
    source = LiveSource(info, connect, first, reconnect_timeout, secrets)
    source.reader = reader
    log.info("%s: connected (%s), %dx%d", name, reader, width, height)
    return source

