"""Serve a live MPEG-TS stream on 127.0.0.1 over TCP with FFmpeg (PyAV, in a subprocess).

Run as ``python -m tests.producer.stream_server PORT FRAMES_PER_CONNECTION CONNECTIONS FPS``: for each
connection it listens on PORT, streams FRAMES_PER_CONNECTION MPEG-4 frames at FPS (frame i is flat
grey ``(i * 9) % 240 + 8``), closes the connection and listens again — a camera that drops its
clients. A client that goes away early (a readiness probe) does not count as a connection.
PyAV's FFmpeg blocks in ``listen`` while holding the GIL, hence the subprocess.
"""

from __future__ import annotations

import sys
import time

import av
import numpy as np


def serve(port: int, frames: int, connections: int, fps: int) -> None:
    served = 0
    while served < connections:
        try:
            stream_once(port, frames, fps)
            served += 1
        except (OSError, av.error.FFmpegError):
            continue  # the client left early: listen again


def stream_once(port: int, frames: int, fps: int) -> None:
    with av.open(f"tcp://127.0.0.1:{port}?listen=1", mode="w", format="mpegts") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for number in range(frames):
            image = np.full((120, 160, 3), (number * 9) % 240 + 8, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
            time.sleep(1 / fps)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    serve(*(int(a) for a in sys.argv[1:5]))
