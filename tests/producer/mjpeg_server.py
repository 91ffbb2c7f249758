"""A real MJPEG-over-HTTP camera for the tests: ``multipart/x-mixed-replace`` on 127.0.0.1, in a thread.

Usage::

    with MjpegServer(jpegs, fps=25, drop_first_after=10, credentials=("user", "secret")) as server:
        url = server.url("user", "secret")          # http://user:secret@127.0.0.1:PORT/stream
        ...
        server.frames_sent, server.connections

Each connection streams ``jpegs`` from the start, in a loop, at ``fps``. With ``drop_first_after=N``
the *first* connection sends N whole frames and half of the next, then the server closes the socket
(a camera rebooting, a Wi-Fi drop): the client must reconnect. With ``credentials`` every request
needs HTTP auth (401 otherwise): Basic, or with ``auth="digest"`` Digest (RFC 7616, MD5, qop=auth)
as many IP cameras demand; ``auth="basic+digest"`` offers both (Basic first) and takes either;
``auth="negotiate"`` asks for a scheme the producer does not speak. After ``max_connections``
connections every request gets 503 (a camera that never comes back).

A hostile camera, on its first connection only: ``trickle_first_after=N`` sends N whole frames, then
the next part one byte every ``trickle_interval`` seconds; ``trickle_headers=True`` sends the
response's status line and headers that way. Either goes on until the part (or the headers) is
complete, the client leaves or the server stops; the next connections are served normally.
``authorizations`` lists the ``Authorization`` header of every request, in order (``""`` if none).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import cv2
import numpy as np

BOUNDARY = "frameboundary"


def vtest_jpegs(path: str, count: int, quality: int = 80) -> list[bytes]:
    """The first ``count`` frames of a video as JPEGs."""
    capture = cv2.VideoCapture(path)
    jpegs = []
    while len(jpegs) < count:
        ok, image = capture.read()
        assert ok, f"{path} has fewer than {count} frames"
        jpegs.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    capture.release()
    return jpegs


def closest_frame(image: np.ndarray, jpegs: list[bytes]) -> int:
    """Index of the served JPEG that ``image`` (a decoded published frame) came from."""
    diffs = []
    for data in jpegs:
        served = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if served.shape != image.shape:
            served = cv2.resize(served, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_AREA)
        diffs.append(float(np.mean(cv2.absdiff(served, image))))
    return int(np.argmin(diffs))


class MjpegServer:
    """The camera; see the module docstring."""

    def __init__(self, jpegs: list[bytes], fps: float = 25.0, drop_first_after: int | None = None,
                 credentials: tuple[str, str] | None = None, content_length: bool = True,
                 max_connections: int | None = None, auth: str = "basic", trickle_first_after: int | None = None,
                 trickle_headers: bool = False, trickle_interval: float = 0.01) -> None:
        self.jpegs, self.fps, self.drop_first_after = jpegs, fps, drop_first_after
        self.trickle_first_after, self.trickle_headers = trickle_first_after, trickle_headers
        self.trickle_interval = trickle_interval
        self.authorizations: list[str] = []
        self.auth = auth
        self.nonce = secrets.token_hex(16)
        self.max_connections = max_connections
        self.refused = 0
        self.credentials, self.content_length = credentials, content_length
        self.frames_sent = 0
        self.connections = 0
        self.unauthorized = 0
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 — the http.server API
                with server._lock:
                    server.authorizations.append(self.headers.get("Authorization", ""))
                if self.path != "/stream":
                    self.send_error(404, "no such stream")
                    return
                if server.credentials is not None and not server._authorized(self.headers.get("Authorization", "")):
                    with server._lock:
                        server.unauthorized += 1
                    self.send_response(401)
                    for challenge in server.challenges():
                        self.send_header("WWW-Authenticate", challenge)
                    self.end_headers()
                    return
                with server._lock:
                    if server.max_connections is not None and server.connections >= server.max_connections:
                        server.refused += 1
                        self.send_error(503, "camera offline")
                        return
                    server.connections += 1
                    connection = server.connections
                head = (f"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n"
                        "Cache-Control: no-cache\r\n\r\n").encode()
                if connection == 1 and server.trickle_headers:
                    if not server._trickle(self, head):
                        return
                else:
                    self.wfile.write(head)
                server._stream(self, connection)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mjpeg-server", daemon=True)

    def challenges(self) -> list[str]:
        """The ``WWW-Authenticate`` headers of a 401 answer, in order."""
        basic = 'Basic realm="camera"'
        digest = f'Digest realm="camera", qop="auth", nonce="{self.nonce}", algorithm=MD5'
        return {"basic": [basic], "digest": [digest], "basic+digest": [basic, digest],
                "negotiate": ["Negotiate"]}[self.auth]

    def _authorized(self, header: str) -> bool:
        """Does the ``Authorization`` header carry the credentials, in a scheme this camera offers?"""
        assert self.credentials is not None
        user, password = self.credentials
        if self.auth in ("basic", "basic+digest") and header.startswith("Basic "):
            return header == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.auth not in ("digest", "basic+digest") or not header.startswith("Digest "):
            return False
        fields = urllib.request.parse_keqv_list(urllib.request.parse_http_list(header[len("Digest "):]))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - what Digest auth specifies

        try:
            ha1 = md5(f"{user}:camera:{password}")
            ha2 = md5(f"GET:{fields['uri']}")
            expected = md5(f"{ha1}:{self.nonce}:{fields['nc']}:{fields['cnonce']}:auth:{ha2}")
        except KeyError:
            return False
        return (fields.get("username"), fields.get("nonce"), fields.get("response")) == (user, self.nonce, expected)

    def _stream(self, handler: BaseHTTPRequestHandler, connection: int) -> None:
        sent = 0
        next_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                data = self.jpegs[sent % len(self.jpegs)]
                headers = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                if self.content_length:
                    headers += f"Content-Length: {len(data)}\r\n"
                part = headers.encode() + b"\r\n" + data + b"\r\n"
                if connection == 1 and self.drop_first_after is not None and sent == self.drop_first_after:
                    handler.wfile.write(part[: len(part) // 2])
                    handler.wfile.flush()
                    return  # the handler returns: HTTP/1.0, so the server closes the socket mid-part
                if connection == 1 and sent == self.trickle_first_after:
                    if not self._trickle(handler, part):
                        return
                else:
                    handler.wfile.write(part)
                handler.wfile.flush()
                sent += 1
                with self._sent:
                    self.frames_sent += 1
                    self._sent.notify_all()
                next_at += 1 / self.fps
                time.sleep(max(0.0, next_at - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
            return

    def _trickle(self, handler: BaseHTTPRequestHandler, data: bytes) -> bool:
        """Send ``data`` one byte every ``trickle_interval`` s; False if the server stopped or the client left first."""
        try:
            for at in range(len(data)):
                if self._stopping.is_set():
                    return False
                handler.wfile.write(data[at:at + 1])
                handler.wfile.flush()
                time.sleep(self.trickle_interval)  # the camera's pace, not the test's synchronisation
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def url(self, user: str | None = None, password: str | None = None, path: str = "/stream") -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}{path}"

    def wait_for_frames(self, count: int, timeout: float = 20.0) -> None:
        """Return once ``count`` frames have been sent (over all connections); fail after ``timeout``."""
        with self._sent:
            sent = self._sent.wait_for(lambda: self.frames_sent >= count, timeout)
            assert sent, f"only {self.frames_sent} frames sent in {timeout} s"

    def __enter__(self) -> MjpegServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
