"""Helpers for the collector's I/O tests: decode an MP4 and read the burned-in counters back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from collector.synthetic import read_counter


@dataclass(frozen=True)
class DecodedVideo:
    codec: str
    pix_fmt: str
    width: int
    height: int
    fps: float
    counters: list[int]


def decode_video(path: Path) -> DecodedVideo:
    """Decode every frame of ``path`` with PyAV and read each frame's counter."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        counters = [read_counter(frame.to_ndarray(format="bgr24")) for frame in container.decode(stream)]
        ctx = stream.codec_context
        return DecodedVideo(ctx.name, ctx.pix_fmt, ctx.width, ctx.height, float(stream.average_rate), counters)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
