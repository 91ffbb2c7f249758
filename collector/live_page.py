"""``collector follow --serve HOST:PORT``: a small page with the live annotated frames and the counts.

Usage::

    page = LivePage.start("127.0.0.1", 8090)     # a daemon thread; page.url is where it listens
    page.show(jpeg_bytes)                        # the next frame, to every viewer of /stream.mjpg
    page.set_stats({"emitted": 12, ...})         # what /stats.json answers
    page.stop()

Routes: ``/`` the page (the stream in an ``<img>``, the stats refreshed every second);
``/stream.mjpg`` MJPEG over HTTP — ``multipart/x-mixed-replace; boundary=frame``, one JPEG part per
frame (each part's head sent right after the previous JPEG: :data:`PART_HEAD`), which browsers and
FFmpeg (ffplay, OpenCV) play; ``/frame.jpg`` the latest frame; ``/stats.json``.
A slow viewer skips frames rather than queueing them: each stream sends the latest frame whenever a
newer one exists, so memory is one frame whatever the number of viewers. Standard library only
(``http.server``); one thread per connection.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOUNDARY = "frame"
PART_HEAD = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode()
"""What goes before each JPEG of ``/stream.mjpg``. It is sent right after the previous JPEG, not with the next
one: Chromium shows a part only once the next part's headers have come (sent with the next JPEG, the page showed
the frame before the latest until the next burst: tests/collector/test_live_page_browser.py), so it carries no
``Content-Length`` and a JPEG ends at the next boundary, as RFC 2046 multipart allows — Chromium and FFmpeg's
``mpjpeg`` demuxer (ffplay, OpenCV, PyAV) read it so, tested."""
SERVE_HELP = "give HOST:PORT (e.g. 127.0.0.1:8090; port 0 picks a free one)"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>collector follow: {job}</title>
<style>
 body {{ font: 15px system-ui, sans-serif; margin: 1em; background: #111; color: #eee; }}
 img {{ max-width: 100%; background: #000; display: block; }}
 table {{ border-collapse: collapse; margin-top: .6em; }}
 td, th {{ padding: .15em .8em; text-align: left; border-bottom: 1px solid #333; }}
 .num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head>
<body>
<h1 id="title">job {job}</h1>
<img id="stream" src="/stream.mjpg" alt="live annotated frames">
<table id="stats"><tbody>
 <tr><th>state</th><td id="state">…</td></tr>
 <tr><th>frames/s</th><td id="fps" class="num">…</td></tr>
 <tr><th>delay behind the camera</th><td id="delay" class="num">…</td></tr>
 <tr><th>emitted · missing · late · errors</th><td id="counts" class="num">…</td></tr>
</tbody></table>
<table id="lines"><thead><tr><th>line</th><th class="num">in</th><th class="num">out</th></tr></thead>
<tbody id="line-rows"></tbody></table>
<script>
async function refresh() {{
  try {{
    const s = await (await fetch("/stats.json", {{cache: "no-store"}})).json();
    document.getElementById("state").textContent = s.state + (s.done ? " (done)" : "");
    document.getElementById("fps").textContent = s.frames_per_second.toFixed(1);
    document.getElementById("delay").textContent =
      s.delay_s === null ? "n/a (a file has no capture time)" : s.delay_s.toFixed(1) + " s";
    document.getElementById("counts").textContent =
      [s.emitted, s.missing, s.late, s.errors].join(" · ");
    const rows = Object.entries(s.lines || {{}}).map(([name, c]) =>
      `<tr><td>${{name}}</td><td class="num">${{c.in}}</td><td class="num">${{c.out}}</td></tr>`);
    document.getElementById("line-rows").innerHTML = rows.join("");
  }} catch (e) {{ document.getElementById("state").textContent = "collector stopped"; }}
}}
refresh(); setInterval(refresh, 1000);
</script>
</body></html>
"""


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → ``(host, port)``; ValueError ``invalid address 'x': give HOST:PORT ...`` otherwise.

    >>> parse_address("127.0.0.1:8090"), parse_address("[::1]:0")
    (('127.0.0.1', 8090), ('::1', 0))
    """
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"invalid address {text!r}: {SERVE_HELP}")
    return host, int(port)


@dataclass
class LiveState:
    """The latest frame and stats, shared between the follow loop and the HTTP threads."""

    job_id: str
    seq: int = 0
    jpeg: bytes | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    viewers: int = 0
    closed: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_newer(self, seq: int, timeout: float) -> tuple[int, bytes] | None:
        """The latest frame once it is newer than ``seq``; ``None`` on timeout or when closing."""
        with self.cond:
            self.cond.wait_for(lambda: self.closed or (self.seq > seq and self.jpeg is not None), timeout)
            if self.closed or self.seq <= seq or self.jpeg is None:
                return None
            return self.seq, self.jpeg


class _Handler(BaseHTTPRequestHandler):
    state: LiveState
    server_version = "collector-follow"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: no per-request log lines
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE.format(job=self.state.job_id).encode())
        elif path == "/stats.json":
            with self.state.cond:
                body = json.dumps(self.state.stats).encode()
            self._send(HTTPStatus.OK, "application/json", body)
        elif path == "/frame.jpg":
            jpeg = self.state.jpeg
            if jpeg is None:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain", b"no frame yet\n")
            else:
                self._send(HTTPStatus.OK, "image/jpeg", jpeg)
        elif path == "/stream.mjpg":
            self._stream()
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        with self.state.cond:  # counted before the headers go out: a viewer who has them is counted
            self.state.viewers += 1
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seq = 0
        try:
            self.wfile.write(PART_HEAD)
            while not self.state.closed:
                latest = self.state.wait_newer(seq, timeout=1.0)
                if latest is None:
                    continue
                seq, jpeg = latest
                self.wfile.write(jpeg + b"\r\n" + PART_HEAD)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer went away
        finally:
            with self.state.cond:
                self.state.viewers -= 1


class LivePage:
    """The HTTP server of ``--serve``, in a daemon thread."""

    def __init__(self, server: ThreadingHTTPServer, state: LiveState) -> None:
        self.server, self.state = server, state
        self._thread = threading.Thread(target=server.serve_forever, name="collector-live-page", daemon=True)

    @classmethod
    def start(cls, host: str, port: int, job_id: str) -> LivePage:
        """Listen on ``host:port`` (OSError if it cannot) and serve until :meth:`stop`."""
        state = LiveState(job_id)
        handler = type("Handler", (_Handler,), {"state": state})
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True})
        server = server_class((host, port), handler)
        page = cls(server, state)
        page._thread.start()
        return page

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in str(host) else f"http://{host}:{port}/"

    @property
    def has_viewers(self) -> bool:
        return self.state.viewers > 0

    def show(self, jpeg: bytes) -> None:
        """Make ``jpeg`` the latest frame and wake every stream."""
        with self.state.cond:
            self.state.jpeg, self.state.seq = jpeg, self.state.seq + 1
            self.state.cond.notify_all()

    def set_stats(self, stats: dict[str, Any]) -> None:
        with self.state.cond:
            self.state.stats = stats

    def stop(self) -> None:
        """Stop listening and end every stream."""
        with self.state.cond:
            self.state.closed = True
            self.state.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
