"""H.264 clips made from the sample video, for the tests and the benchmark (made when needed, never committed).

Usage::

    make_h264_clip(Path("/tmp/hd.mp4"), vtest, width=1920, height=1080, frames=300)            # closed GOPs
    make_h264_clip(Path("/tmp/open.mp4"), vtest, 640, 360, 120, keyint=25, bframes=3, open_gop=True)
    make_h264_clip(Path("/tmp/grainy.mp4"), vtest, 1920, 1080, 200, grain=6)   # camera-like bit rate

Frames are the sample video's, scaled (looping when it is shorter), encoded by PyAV's bundled ``libx264``
(``yuv420p``, MP4). ``bframes`` B-frames between references and ``open_gop`` (keyframes that are not IDR,
with B-frames shown before them that reference the previous GOP) make the cases a chunked decoder must get
right. ``grain`` adds fixed-seed noise of that standard deviation (grey levels) to every frame: an upscaled
768x576 video compresses far better than a camera's 1080p; with grain 6 the clip's bit rate is a camera's
(several Mbit/s), which is what decoding time depends on.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_h264_clip(path: Path, source: Path, width: int, height: int, frames: int, fps: int = 25,
                   keyint: int = 50, bframes: int = 3, open_gop: bool = False, grain: float = 0.0,
                   crf: int = 20) -> Path:
    """Write an H.264 MP4 of ``frames`` frames of ``source`` scaled to ``width`` x ``height``; returns ``path``."""
    import av

    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot read {source}")
    rng = np.random.default_rng(17)
    params = (f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes={bframes}:b-adapt=0"
              f":open-gop={1 if open_gop else 0}:crf={crf}")
    try:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"x264-params": params, "preset": "veryfast"}
            for _ in range(frames):
                ok, image = capture.read()
                if not ok:
                    capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, image = capture.read()
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                if grain:
                    noise = rng.normal(0.0, grain, image.shape)
                    image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    finally:
        capture.release()
    return path
