"""``--parallel``: the same job published sequentially (OpenCV, one process) and in chunks (PyAV, worker
processes) through the real Pub/Sub and storage emulators, compared message by message: the same
``frame_index`` for the same frame, the same ``timestamp_us``, the same size and the same JPEG bytes.

Files: vtest.avi (MS-MPEG-4, keyframes every 250 frames), H.264 clips made here by PyAV's libx264 with
B-frames and open GOPs (keyframes that are not IDR, with B-frames shown before them that reference the
previous GOP), a 1080p one (coded height 1088), and a variable-frame-rate H.264 MKV; with and without
``--fps`` sampling, ``--max-frames``, ``--duration``, ``--max-side``.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from framecontract.message import FrameAttributes
from framecontract.settings import Settings
from producer.clips import make_h264_clip
from producer.job import run_job
from tests.producer.helpers import job_options, pull_all, read_manifest


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, vtest_path: Path) -> dict[str, Path]:
    """The test clips, made once for the module (never committed)."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "vtest": vtest_path,
        "open-gop": make_h264_clip(folder / "open.mp4", vtest_path, 640, 360, 150, keyint=25, bframes=3,
                                   open_gop=True),
        "closed-gop": make_h264_clip(folder / "closed.mp4", vtest_path, 480, 272, 120, keyint=30, bframes=2),
        "1080p": make_h264_clip(folder / "hd.mp4", vtest_path, 1920, 1080, 75, keyint=12, bframes=3, open_gop=True),
        "vfr": write_vfr_h264(folder / "vfr.mkv"),
    }


def write_vfr_h264(path: Path) -> Path:
    """An H.264 MKV with B-frames whose frames are shown at irregular times: 60 fps, then 5 fps, then 30 fps
    with jitter (1 ms time base)."""
    import av

    rng = np.random.default_rng(5)
    stamps = [round(i * 1000 / 60) for i in range(60)] + [1000 + i * 200 for i in range(5)]
    stamps += sorted({2000 + round(i * 1000 / 30 + rng.uniform(-8, 8)) for i in range(30)})
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"x264-params": "keyint=10:min-keyint=10:bframes=2:scenecut=0"}
        for i, ms in enumerate(stamps):
            image = np.full((96, 160, 3), (i * 7) % 250, np.uint8)
            image[10:30, (i * 3) % 140:(i * 3) % 140 + 20] = 255
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def published(settings: Settings, expected: int) -> dict[str, dict[int, tuple[int, int, int, bytes]]]:
    """Every pulled message, by job then ``frame_index``: ``(timestamp_us, width, height, JPEG)``; no index twice."""
    jobs: dict[str, dict[int, tuple[int, int, int, bytes]]] = {}
    for message in pull_all(settings, expected=expected, deadline_s=60):
        attrs = FrameAttributes.from_pubsub(message.attributes)
        frames = jobs.setdefault(attrs.job_id, {})
        assert attrs.frame_index not in frames, f"{attrs.job_id}: frame {attrs.frame_index} published twice"
        frames[attrs.frame_index] = (attrs.timestamp_us, attrs.width, attrs.height, message.data)
    return jobs


CASES = [
    ("vtest", {}),
    ("vtest", {"fps": 3.0}),
    ("vtest", {"max_frames": 600, "max_side": 384}),
    ("open-gop", {}),
    ("open-gop", {"fps": 7.0, "max_frames": 30}),
    ("open-gop", {"duration": 3.3}),
    ("closed-gop", {"fps": 11.0}),
    ("1080p", {}),
    ("vfr", {}),
    ("vfr", {"fps": 10.0}),
]


@pytest.mark.parametrize(("clip", "given"), CASES, ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in g.items()) or 'all'}"
                                                        for c, g in CASES])
def test_parallel_publishes_what_the_sequential_producer_publishes(
    pubsub_settings: Settings, clips: dict[str, Path], clip: str, given: dict[str, Any]
) -> None:
    video = clips[clip]
    sequential = run_job(video, job_options(job_id="sequential", parallel=1, **given), pubsub_settings)
    parallel = run_job(video, job_options(job_id="parallel", parallel=2, **given), pubsub_settings)
    assert (sequential.chunks, parallel.chunks > 1, parallel.processes) == (0, True, 2)
    assert parallel.frames_published == sequential.frames_published > 0

    jobs = published(pubsub_settings, 2 * sequential.frames_published)
    assert sorted(jobs["sequential"]) == list(range(sequential.frames_published))
    assert sorted(jobs["parallel"]) == sorted(jobs["sequential"])
    for index, frame in jobs["sequential"].items():
        assert jobs["parallel"][index] == frame, f"frame {index}: {jobs['parallel'][index][:3]} vs {frame[:3]}"

    seq, par = read_manifest(pubsub_settings, "sequential"), read_manifest(pubsub_settings, "parallel")
    for field in ("state", "frames_published", "frames_confirmed", "first_timestamp_us", "last_timestamp_us",
                  "confirmed_timestamp_us", "last_frame_index", "width", "height", "source_fps"):
        assert getattr(par, field) == getattr(seq, field), field
    assert seq.chunks == () and len(par.chunks) == parallel.chunks
    assert [c["first_frame_index"] for c in par.chunks] == [
        sum(c["frames"] for c in par.chunks[:n]) for n in range(len(par.chunks))]
    assert all(c["state"] == "complete" and c["confirmed"] == c["frames"] == c["published"] for c in par.chunks)
    assert (par.options["parallel"], par.options["decoder"]) == (2, "PyAV, in chunks")
