"""A loopback MJPEG camera: a video's frames as ``multipart/x-mixed-replace`` on 127.0.0.1, at a steady rate.

Usage::

    python -m loadtest.camera                  # vtest.avi at 10 fps: http://127.0.0.1:8091/stream, until Ctrl-C
    python -m loadtest.camera --port 0 --fps 10 --video PATH      # port 0: a free one (printed)

    with LoopbackCamera(video, fps=10.0, port=0) as camera:      # in a thread (loadtest.followbench)
        camera.url, camera.frames_ticked, camera.ticked_at       # tick wall times, for capture latency

It stands in for an MJPEG IP camera in the README's live path and in ``python -m loadtest.followbench
latency``: like a real camera it has one clock, not one per viewer — a ticker thread makes the video's
next frame (looping at its end) the current one every ``1/fps`` seconds, and every connection is sent
each new current frame as it comes (a viewer that falls behind skips frames, as with a camera). JPEG
quality 80, the video's own size. Standard library HTTP server plus OpenCV to read the video; no
authentication (tests/producer/mjpeg_server.py is the test camera with auth, drops and trickling).
Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

BOUNDARY = "camera-frame"
DEFAULT_PORT = 8091
DEFAULT_FPS = 10.0
JPEG_QUALITY = 80
MAX_FPS = 120.0
TICKS_KEPT = 36_000
"""Tick times kept (``ticked_at``): an hour at 10 fps."""


class LoopbackCamera:
    """The camera; see the module docstring. ``port=0`` picks a free port (``camera.port``)."""

    def __init__(self, video: Path, fps: float = DEFAULT_FPS, port: int = DEFAULT_PORT,
                 host: str = "127.0.0.1") -> None:
        import cv2

        if not fps > 0:
            raise ValueError(f"fps must be more than 0, got {fps!r}")
        self.video, self.fps = Path(video), fps
        self._capture = cv2.VideoCapture(str(self.video))
        first = self._read()
        if first is None:
            raise ValueError(f"{self.video}: no frame could be read (not a video OpenCV can decode)")
        self.frames_ticked = 0
        self.ticked_at: deque[float] = deque(maxlen=TICKS_KEPT)
        """Wall-clock times (epoch s) the last frames became current, oldest first."""
        self.current: bytes = first
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        camera = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                if self.path.split("?", 1)[0] != "/stream":
                    self.send_error(404, "the stream is at /stream")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                camera._serve(self)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = host, self._httpd.server_address[1]
        self._threads = [threading.Thread(target=self._httpd.serve_forever, name="camera-http", daemon=True),
                         threading.Thread(target=self._tick, name="camera-clock", daemon=True)]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/stream"

    def _read(self) -> bytes | None:
        """The video's next frame as a JPEG, from the start again at its end."""
        import cv2

        ok, image = self._capture.read()
        if not ok:
            self._capture.release()
            self._capture = cv2.VideoCapture(str(self.video))
            ok, image = self._capture.read()
            if not ok:
                return None
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return buffer.tobytes() if ok else None

    def _tick(self) -> None:
        next_at = time.monotonic()
        while not self._stopping.is_set():
            next_at += 1 / self.fps
            if (delay := next_at - time.monotonic()) > 0:
                self._stopping.wait(delay)
            jpeg = self._read()
            if jpeg is None:
                continue
            with self._cond:
                self.current, self.frames_ticked = jpeg, self.frames_ticked + 1
                self.ticked_at.append(time.time())
                self._cond.notify_all()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        seen = -1
        try:
            while not self._stopping.is_set():
                with self._cond:
                    self._cond.wait_for(lambda s=seen: self.frames_ticked != s or self._stopping.is_set(), timeout=1.0)
                    if self.frames_ticked == seen:
                        continue
                    seen, jpeg = self.frames_ticked, self.current
                handler.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                                    "\r\n\r\n".encode() + jpeg + b"\r\n")
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def start(self) -> LoopbackCamera:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackCamera:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def fps_value(text: str) -> float:
    """``--fps``: frames per second, more than 0 and at most :data:`MAX_FPS`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= MAX_FPS):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give frames per second, more than 0 and at most "
                                         f"{MAX_FPS:g}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.camera", description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="the video to serve (default: vtest.avi from the "
                        "asset cache, which make setup fetches)")
    parser.add_argument("--fps", type=fps_value, default=DEFAULT_FPS,
                        help=f"frames per second, more than 0 and at most {MAX_FPS:g} ({DEFAULT_FPS:g})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 ({DEFAULT_PORT}; 0: a "
                        "free one)")
    args = parser.parse_args(argv)
    if args.video is None:
        from framecontract.assets import AssetMissingError, asset_path

        try:
            args.video = asset_path("vtest")
        except AssetMissingError as exc:
            parser.error(str(exc))
    if not args.video.is_file():
        parser.error(f"argument --video: {args.video}: no such file")
    try:
        camera = LoopbackCamera(args.video, fps=args.fps, port=args.port).start()
    except ValueError as exc:
        parser.error(f"argument --video: {exc}")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"camera: {camera.url} ({args.video.name}, {args.fps:g} fps; Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        camera.stop()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
