"""``loadtest.camera``: the loopback MJPEG camera over real HTTP — what it serves, that OpenCV, PyAV and the
producer's own parser read it, one clock for every viewer, and the exact errors of its arguments.

The camera shows a small video of counter frames (:func:`collector.synthetic.counter_frame`), so every
JPEG it sends says which frame of the video it is. No assertion depends on the clock's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from collector.synthetic import counter_frame, read_counter
from loadtest.camera import BOUNDARY, LoopbackCamera, main
from producer.mjpeg import MultipartJpegParser, boundary_from_content_type

REPO = Path(__file__).resolve().parents[2]
FRAMES = 12
GUARD_S = 30


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 counter frames (160x120) as an MJPG AVI."""
    path = tmp_path_factory.mktemp("camera") / "counter.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    for index in range(FRAMES):
        writer.write(counter_frame(index, 160, 120))
    writer.release()
    return path


def _jpegs(url: str, count: int) -> tuple[str, list[bytes]]:
    """The first ``count`` JPEGs of the stream, through the producer's parser, and the content type."""
    with urllib.request.urlopen(url, timeout=GUARD_S) as response:
        content_type = response.headers["Content-Type"]
        parser = MultipartJpegParser(boundary_from_content_type(content_type))
        jpegs: list[bytes] = []
        while len(jpegs) < count:
            chunk = response.read1(65536)
            assert chunk, "the stream ended"
            jpegs += parser.feed(chunk)
    return content_type, jpegs[:count]


def _counter(jpeg: bytes) -> int:
    return read_counter(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))


def test_serves_multipart_mjpeg_of_the_videos_frames_in_order_looping(video: Path) -> None:
    with LoopbackCamera(video, fps=40.0, port=0) as camera:
        content_type, jpegs = _jpegs(camera.url, FRAMES + 6)
        ticks = list(camera.ticked_at)
    assert content_type == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    counters = [_counter(j) for j in jpegs]
    steps = [(b - a) % FRAMES for a, b in zip(counters, counters[1:], strict=False)]
    assert all(step >= 1 for step in steps), counters  # a new frame each part, the video's order, looping
    assert sum(steps) > FRAMES  # it went round the end of the video
    assert ticks == sorted(ticks) and len(ticks) >= FRAMES


def test_opencv_and_pyav_read_the_stream(video: Path) -> None:
    import av

    with LoopbackCamera(video, fps=40.0, port=0) as camera:
        capture = cv2.VideoCapture(camera.url)
        try:
            images = [capture.read() for _ in range(3)]
        finally:
            capture.release()
        assert all(ok for ok, _ in images)
        opencv = [read_counter(image) for _, image in images]
        with av.open(camera.url, timeout=GUARD_S) as container:
            pyav = []
            for frame in container.decode(video=0):
                pyav.append(read_counter(frame.to_ndarray(format="bgr24")))
                if len(pyav) == 3:
                    break
    assert len(set(opencv)) == 3 and len(set(pyav)) == 3


def test_viewers_share_one_clock(video: Path) -> None:
    """Two viewers at once get the same current frames: the camera ticks once, not once per viewer."""
    with LoopbackCamera(video, fps=20.0, port=0) as camera:
        with urllib.request.urlopen(camera.url, timeout=GUARD_S) as first, \
                urllib.request.urlopen(camera.url, timeout=GUARD_S) as second:
            parsers = [MultipartJpegParser(BOUNDARY), MultipartJpegParser(BOUNDARY)]
            seen: list[list[int]] = [[], []]
            while min(len(s) for s in seen) < 4:
                for k, response in enumerate((first, second)):
                    if len(seen[k]) < 4:
                        seen[k] += [_counter(j) for j in parsers[k].feed(response.read1(65536))]
        ticked = camera.frames_ticked
    assert set(seen[0][1:3]) & set(seen[1]) or set(seen[1][1:3]) & set(seen[0]), seen
    assert ticked < 4 * 3  # not one tick per viewer per frame read


def test_other_paths_are_404(video: Path) -> None:
    with LoopbackCamera(video, fps=10.0, port=0) as camera, pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{camera.port}/", timeout=GUARD_S)
    assert err.value.code == 404


def test_the_command_serves_until_ctrl_c(video: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "loadtest.camera", "--port", "0", "--fps", "10", "--video",
                             str(video)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("camera: http://127.0.0.1:") and line.endswith(
            "/stream (counter.avi, 10 fps; Ctrl-C stops it)\n"), line
        url = line.split()[1]
        _, jpegs = _jpegs(url, 2)
        assert len(jpegs) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(GUARD_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("argv", "problem"), [
    (["--fps", "0"], "argument --fps: invalid value '0': give frames per second, more than 0 and at most 120"),
    (["--fps", "-5"], "argument --fps: invalid value '-5': give frames per second, more than 0 and at most 120"),
    (["--fps", "nan"], "argument --fps: invalid value 'nan': give frames per second, more than 0 and at most 120"),
    (["--fps", "500"], "argument --fps: invalid value '500': give frames per second, more than 0 and at most 120"),
    (["--fps", "ten"], "argument --fps: invalid value 'ten': give frames per second, more than 0 and at most 120"),
    (["--video", "/nonexistent/cam.avi"], "argument --video: /nonexistent/cam.avi: no such file"),
])
def test_bad_arguments_say_exactly_what_is_wrong(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                 problem: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m loadtest.camera: error: {problem}"


def test_a_file_that_is_not_a_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.avi"
    bad.write_text("not a video")
    with pytest.raises(SystemExit) as exit_:
        main(["--video", str(bad), "--port", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m loadtest.camera: error: argument --video: {bad}: no frame could be read (not a video OpenCV "
        "can decode)")
    with pytest.raises(ValueError, match=r"^fps must be more than 0, got 0$"):
        LoopbackCamera(bad, fps=0, port=0)
