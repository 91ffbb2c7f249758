"""The live page of ``collector follow --serve`` in a real headless browser (Debian's chromium): it shows the
stream and the counts.

``follow`` runs on the storage emulator with ``--line``; chromium opens the page; once its ``<img>`` has
opened ``/stream.mjpg`` (the page counts it as a viewer) a job of 60 synthetic frames is written, each with
its index burned in as blocks (:func:`collector.synthetic.counter_frame`). Then what chromium *shows* is
checked: in its screenshot, the picture where the ``<img>`` is reads frame 59 — the last one — with the
``road`` line drawn in amber, and the page's table reads 60 written, 0 missing, 0 late, 0 errors and the
lines' exact in/out counts (door 1/1, road 0/1: tests/collector/test_tracking.py). Without chromium the
test fails with the install command (``make test`` installs it as root).

Nothing here waits on the clock for an outcome: each step polls the browser for a state it must reach,
with a guard against a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import collector.follow as follow_module
from collector.follow import FollowOptions, follow
from collector.live_page import LivePage
from collector.store import JobStore
from collector.synthetic import counter_frame, read_counter, synthetic_jpeg, timestamp_of, write_frame
from framecontract.settings import Settings
from tests.collector.headless import HeadlessChromium, chromium_path
from tests.collector.test_follow import GUARD_S, LineSink, joined, put_manifest, run_in_thread
from tests.collector.test_tracking import LINES, SCENE

FRAMES = 60
PAGE_STATE = """(() => {
  const img = document.getElementById("stream"), r = img.getBoundingClientRect();
  const text = id => { const e = document.getElementById(id); return e ? e.textContent : null; };
  return {width: img.naturalWidth, height: img.naturalHeight, rect: [r.x, r.y, r.width, r.height],
          state: text("state"), fps: text("fps"), delay: text("delay"), counts: text("counts"),
          lines: [...document.querySelectorAll("#line-rows tr")].map(tr => [...tr.cells].map(c => c.textContent))};
})()"""


@pytest.fixture
def store(gcs_settings: Settings) -> JobStore:
    return JobStore.from_settings(gcs_settings)


def poll(what: str, check: Callable[[], Any]) -> Any:
    """``check()`` until it returns something true; AssertionError naming ``what`` after :data:`GUARD_S`."""
    deadline = time.monotonic() + GUARD_S
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"the page never showed {what}; last: {last!r}")


def shown_frame(png: bytes, rect: list[float]) -> tuple[int, np.ndarray] | None:
    """The burned-in index of the picture at ``rect`` of a screenshot, and the picture; None if unreadable."""
    shot = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    x, y, w, h = (round(v) for v in rect)
    picture = shot[y:y + h, x:x + w]
    if picture.shape[:2] != (240, 320):
        return None
    try:
        return read_counter(picture), picture
    except ValueError:
        return None


def test_the_page_in_headless_chromium_shows_the_stream_and_the_counts(store: JobStore, bucket,  # noqa: ANN001
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    chromium_path()  # fails first, with the install command, if chromium is missing
    job = "browser-page"
    put_manifest(bucket, job, None)
    pages: list[LivePage] = []

    class RecordedPage:
        @staticmethod
        def start(host: str, port: int, job_id: str) -> LivePage:
            pages.append(LivePage.start(host, port, job_id))
            return pages[-1]

    monkeypatch.setattr(follow_module, "LivePage", RecordedPage)
    served: dict[str, str] = {}
    options = FollowOptions(job, max_delay_s=1.0, poll_s=0.1, track=True, lines=LINES, serve=("127.0.0.1", 0))
    follower, result = run_in_thread(lambda: follow(store, options, out=LineSink(), log=LineSink(),
                                                    on_serving=lambda url: served.setdefault("url", url)))
    poll("the page listening", lambda: served.get("url"))

    with HeadlessChromium(tmp_path / "chromium-profile") as browser:
        browser.open(served["url"])
        poll("its stream opened", lambda: pages[0].has_viewers)
        for index in range(FRAMES):
            write_frame(bucket, job, index, timestamp_of(index, 10.0), boxes=SCENE)

        def final_page() -> dict[str, Any] | None:
            page = browser.evaluate(PAGE_STATE)
            return page if page["counts"] == f"{FRAMES} · 0 · 0 · 0" else None

        page = poll(f"{FRAMES} frames written", final_page)
        assert (page["width"], page["height"]) == (320, 240)
        assert page["state"] == "running"
        assert float(page["fps"]) >= 0 and page["delay"] == "n/a (a file has no capture time)"
        assert page["lines"] == [["door", "1", "1"], ["road", "0", "1"]]

        def last_frame_shown() -> tuple[int, np.ndarray] | None:
            shown = shown_frame(png := browser.screenshot(), page["rect"])
            (tmp_path / "page.png").write_bytes(png)  # kept for a failure's post-mortem
            return shown if shown is not None and shown[0] == FRAMES - 1 else None

        counter, picture = poll(f"frame {FRAMES - 1} in the picture", last_frame_shown)
        amber = picture[140, 230]  # on the road line (B low, G and R high), drawn by follow on the page's frames
        assert amber[0] < 100 and amber[1] > 150 and amber[2] > 200, amber

    put_manifest(bucket, job, FRAMES)
    report = joined(follower, result)
    assert report.done and report.emitted == FRAMES


def test_ffmpeg_reads_the_stream() -> None:
    """ffplay and OpenCV read ``/stream.mjpg`` through FFmpeg's mpjpeg demuxer: parts without Content-Length, each
    JPEG ending at the next boundary. Frames are shown at 20/s while OpenCV reads ten: each whole, in order."""
    page = LivePage.start("127.0.0.1", 0, "ffmpeg")
    stop = threading.Event()

    def camera() -> None:
        index = 0
        while not stop.wait(0.05):
            page.show(synthetic_jpeg(counter_frame(index, 320, 240)))
            index += 1

    threading.Thread(target=camera, daemon=True).start()
    try:
        capture = cv2.VideoCapture(page.url + "stream.mjpg", cv2.CAP_FFMPEG)
        read = []
        for _ in range(10):
            ok, image = capture.read()
            assert ok, f"FFmpeg read {len(read)} frames, then nothing"
            read.append(read_counter(image))
        capture.release()
    finally:
        stop.set()
        page.stop()
    assert read == sorted(set(read)), read
