"""The study's server, rebuilt with our model: the baseline our ``/predict`` is measured against.

Usage::

    python -m loadtest baseline [--port 8000] [--host 127.0.0.1]     # prints "baseline ready: URL", serves
    app = create_baseline_app(Pipeline.from_yaml(DEFAULT_PIPELINE))     # the FastAPI app (tests)
    with baseline_server(log_path) as url: ...                         # a subprocess on a free port, stopped after

The study's design, kept on purpose (its weaknesses are what the comparison is about): FastAPI, one
Uvicorn worker process (the study ran gunicorn with one ``UvicornWorker``), and the model called
synchronously inside an ``async def`` handler, so while one image is being processed the event loop
accepts nothing else and every other request waits in the socket's backlog or on its connection.
Per request: the study's body ``{"name": ..., "image": <base64>}``, decode, the worker's PeekingDuck
pipeline (``worker/pipeline.yml``: NanoDet, then ``draw.bbox`` annotates), JPEG encode, and a JSON
answer with the detections, shaped like our ``/predict`` answer. Unlike the study (and our worker)
it stores nothing: ``"uri"`` is ``null`` — the study's GCS write is left out so that the baseline is
the study's serving design with our model, not a measure of the storage emulator.

Errors: a body that is not that JSON object → 422 (FastAPI's validation), bad base64 or not an
image → 400 ``{"error": reason}``, an image over the front door's
size limits → 413. SIGINT/SIGTERM: Uvicorn's graceful shutdown, exit status 0.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from framecontract.endpoints import HEALTH_PATH, PREDICT_PATH
from worker.errors import ImageTooLargeError, PermanentFrameError
from worker.frames import ImageLimits, process_frame

READY_PREFIX = "baseline ready: "
"""The line ``python -m loadtest baseline`` prints (flushed) once it accepts connections."""
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
GRACEFUL_SHUTDOWN_S = 10


class StudyBody(BaseModel):
    """The study's request body."""

    image: str
    """The image file, base64-encoded."""
    name: str | None = None


def create_baseline_app(pipeline: Any) -> Any:
    """The FastAPI app: ``POST /predict`` (the study's body) and ``GET /healthz``."""
    limits = ImageLimits.for_predict()  # what our /predict accepts: JPEG, PNG, WebP, BMP up to 50 MP
    app = FastAPI(title="frame-fanout baseline: the study's server design")

    @app.get(HEALTH_PATH)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(PREDICT_PATH)
    async def predict(body: StudyBody) -> Any:
        try:
            data = base64.b64decode(body.image, validate=True)
        except (binascii.Error, ValueError):
            return JSONResponse({"error": "field 'image' is not valid base64"}, status_code=400)
        # the study's design: the model runs synchronously inside the async handler (blocks the event loop)
        started = time.perf_counter()
        try:
            result = process_frame(data, lambda image, timings: pipeline.run(image, timings=timings), limits)
        except ImageTooLargeError as exc:
            return JSONResponse({"error": f"'image' is too large: {exc.reason}"}, status_code=413)
        except PermanentFrameError as exc:
            return JSONResponse({"error": f"'image' is not an image: {exc.reason}"}, status_code=400)
        latency = dict(result.latency_ms)
        latency["total"] = round((time.perf_counter() - started) * 1000, 2)
        return {"name": body.name, "width": result.width, "height": result.height,
                "detections": [d.to_dict() for d in result.detections], "uri": None,
                "model": str(getattr(pipeline, "model_name", "unknown")), "latency_ms": latency}

    return app


def load_pipeline(path: Path | None = None, warmup: bool = True) -> Any:
    """The worker's pipeline (``worker/pipeline.yml`` unless ``path``), warmed up like the worker's."""
    import numpy as np

    from worker.pipeline import DEFAULT_PIPELINE, Pipeline

    pipeline = Pipeline.from_yaml(path or DEFAULT_PIPELINE)
    if warmup:  # the first real request should not pay for lazy initialisation
        pipeline.run(np.zeros((64, 64, 3), dtype=np.uint8))
    return pipeline


def serve(host: str = "127.0.0.1", port: int = 8000, pipeline_path: Path | None = None,
          say: Callable[[str], None] = print) -> int:
    """Load the model, serve until SIGINT/SIGTERM (graceful), return 0. ``port`` 0 picks a free port."""
    pipeline = load_pipeline(pipeline_path)
    app = create_baseline_app(pipeline)
    config = uvicorn.Config(app, host=host, port=port, workers=1, access_log=False, log_level="warning",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    server = _BaselineServer(config, on_ready=lambda bound: say(
        f"{READY_PREFIX}http://{_url_host(host)}:{bound} (FastAPI, 1 Uvicorn worker, pid {os.getpid()}, "
        f"model {pipeline.model_name} called synchronously in the async handler)"))
    server.run()
    if server.stop_signal is not None:
        say(f"baseline stopped ({signal.Signals(server.stop_signal).name})")
    return 0 if server.started else 1


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class _BaselineServer(uvicorn.Server):
    """Uvicorn's server that says when it listens and, after a signal, exits normally.

    (Uvicorn re-raises the captured signal after its graceful shutdown, which would end the process
    with SIGTERM's status; here a stop on SIGINT/SIGTERM is a clean exit.)
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[int], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready
        self.stop_signal: int | None = None

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.servers:
            self.on_ready(self.servers[0].sockets[0].getsockname()[1])

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.stop_signal = sig
        self.handle_exit(sig, frame)


# ------------------------------------------------------------------ the server as a subprocess


@contextlib.contextmanager
def baseline_server(log_path: Path, host: str = "127.0.0.1", timeout_s: float = READY_TIMEOUT_S,
                    say: Callable[[str], None] = print) -> Iterator[str]:
    """Start ``python -m loadtest baseline --port 0`` (own process group), yield its URL once it is
    ready, stop it with SIGTERM after (SIGKILL if it outlives ``STOP_TIMEOUT_S``). Its output goes to
    ``log_path``. RuntimeError if it does not become ready in ``timeout_s``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "loadtest", "baseline", "--host", host, "--port", "0"]
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        ready = threading.Event()
        found: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if line.startswith(READY_PREFIX) and not found:
                    found.append(line[len(READY_PREFIX):].split()[0])
                    ready.set()
            ready.set()  # the process ended

        reader = threading.Thread(target=pump, name="baseline-output", daemon=True)
        reader.start()
        try:
            say(f"starting the baseline server (FastAPI, 1 Uvicorn worker); its log: {log_path}")
            if not ready.wait(timeout_s) or not found:
                raise RuntimeError(f"the baseline server did not become ready in {timeout_s:.0f} s "
                                   f"(exit status {proc.poll()}); see {log_path}")
            say(f"baseline server ready at {found[0]}")
            yield found[0]
        finally:
            status = stop_process_group(proc)
            reader.join(timeout=5)
            say(f"baseline server stopped (exit status {status})")


def stop_process_group(proc: subprocess.Popen[Any]) -> int | None:
    """SIGTERM to the group we started, then SIGKILL after ``STOP_TIMEOUT_S``; the exit status."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    return proc.poll()
