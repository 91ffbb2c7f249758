"""Every bad input gets one exact ``error:`` line, a non-zero exit, and no job; plus a TCP stream from FFmpeg."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from framecontract.settings import Settings
from producer.cli import main
from producer.job import run_job
from tests.producer.helpers import job_options, pull_all, read_manifest
from tests.producer.mjpeg_server import MjpegServer, vtest_jpegs
from tests.producer.test_cli import REPO, producer_env

PASSWORD = "pa55-w0rd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = 2) -> str:
    assert main(argv) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--max-side", "0"], "error: --max-side must be at least 1, got 0 — omit it to keep the source's size"),
        (["--resize", "640"], "error: --resize must be WIDTHxHEIGHT in pixels, e.g. 640x480, got '640' — give two "
                              "whole numbers greater than 0 joined by 'x', or use --max-side"),
        (["--resize", "64x48", "--max-side", "100"], "error: argument --max-side: not allowed with argument --resize "
                                                     "— run 'python -m producer --help' for usage"),
        (["--every-frame", "--latest-frame"], "error: argument --latest-frame: not allowed with argument "
                                              "--every-frame — run 'python -m producer --help' for usage"),
        (["--duration", "0"], "error: --duration must be a number of seconds greater than 0, got 0 — omit it to run "
                              "until the source ends (or until SIGINT/SIGTERM for live sources)"),
        (["--image-fps", "-1"], "error: --image-fps must be a number greater than 0, got -1 — omit it for the "
                                "default (25)"),
        (["--reconnect-timeout", "-5"], "error: --reconnect-timeout must be 0 or more seconds, got -5 — omit it for "
                                        "the default (60), 0 never reconnects, 'inf' retries forever"),
        (["--frame-timeout", "0"], "error: --frame-timeout must be a number of seconds greater than 0, got 0 — omit "
                                   "it for the default (10)"),
    ],
)
def test_bad_new_options(args: list[str], line: str, synthetic_video: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert one_error_line([str(synthetic_video), *args], capsys) == line


def test_unsupported_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    assert one_error_line([f"ftp://me:{PASSWORD}@host/v.mp4"], capsys) == (
        "error: unsupported source scheme 'ftp://' in 'ftp://***@host/v.mp4' — give a video file, a gs:// video "
        "object, a folder of images, rtsp:// or http(s):// URL, or a webcam index such as 0")


def test_a_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n" * 50)
    assert one_error_line([str(notes)], capsys) == (
        f"error: '{notes}' is a text file, not a video — give the path of a video file, a folder of images, "
        "or a stream URL")


def test_an_empty_folder_and_a_folder_of_broken_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert one_error_line([str(tmp_path)], capsys) == (
        f"error: no images in the folder '{tmp_path}' (looked for .jpg, .png, .bmp, .tiff, .webp and the other image "
        "types OpenCV reads) — give a folder of images or the path of a video file")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "b.png").write_bytes(b"")
    assert one_error_line([str(tmp_path)], capsys) == (
        f"error: none of the 2 images in '{tmp_path}' could be decoded — check that the files are images "
        "(not truncated or mis-named)")


def test_a_missing_webcam(capsys: pytest.CaptureFixture[str]) -> None:
    index = next(i for i in range(63, 0, -1) if not Path(f"/dev/video{i}").exists())
    assert one_error_line([str(index)], capsys, status=1) == (
        f"error: cannot open webcam {index} (no such device, or it is busy) — check that the camera is connected "
        "('ls /dev/video*'), not in use by another program, and that you may read it (group 'video')")


def test_an_unreachable_stream_does_not_leak_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    line = one_error_line([f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/live", "-v"], capsys, status=1)
    assert line == (f"error: cannot read the stream rtsp://***@127.0.0.1:{port}/live: FFmpeg cannot open it "
                    "(unreachable, refused, or not a stream it can read) — check the URL, that the camera is on and "
                    "reachable from here, and its user name and password")


def test_wrong_camera_password_and_wrong_path(capsys: pytest.CaptureFixture[str]) -> None:
    with MjpegServer([b"unused"], credentials=("viewer", PASSWORD)) as camera:
        line = one_error_line([camera.url("viewer", "wrong-" + PASSWORD)], capsys, status=1)
        assert line == (f"error: cannot read the stream http://***@127.0.0.1:{camera.port}/stream: the server "
                        "refused the credentials (HTTP 401) — check the URL, that the camera is on and reachable "
                        "from here, and its user name and password")
        line = one_error_line([camera.url(path="/nope?token=" + PASSWORD)], capsys, status=1)
        assert line == (f"error: cannot read the stream http://127.0.0.1:{camera.port}/nope?token=***: the server "
                        "answered HTTP 404 no such stream — check the URL, that the camera is on and reachable from "
                        "here, and its user name and password")


def test_a_placeholder_for_an_unset_variable(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("CAM_PASSWORD", raising=False)
    line = one_error_line(["rtsp://admin:{CAM_PASSWORD}@127.0.0.1/live"], capsys)
    assert line == ("error: environment variable CAM_PASSWORD is not set (the source URL uses {CAM_PASSWORD}) "
                    "— export it, or write the value into the URL")


def test_the_camera_password_can_come_from_the_environment(
    pubsub_settings: Settings, vtest_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    password = "p@ss:" + PASSWORD  # characters that must be percent-encoded in a URL
    for key, value in producer_env(pubsub_settings).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CAM_PASSWORD", password)
    with MjpegServer(vtest_jpegs(str(vtest_path), 5), fps=25, credentials=("viewer", password)) as camera:
        url = f"http://viewer:{{CAM_PASSWORD}}@127.0.0.1:{camera.port}/stream"
        assert main([url, "--job-id", "cam-env-password", "--max-frames", "3", "--no-progress", "-v"]) == 0
        assert camera.authorizations == ["", "Basic " + base64.b64encode(f"viewer:{password}".encode()).decode()]
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "cam-env-password"
    assert password not in captured.err and "p%40ss" not in captured.err
    manifest = read_manifest(pubsub_settings, "cam-env-password")
    assert (manifest.state, manifest.frames_published) == ("complete", 3)
    assert manifest.source == f"http://***@127.0.0.1:{camera.port}/stream"


RAW_PASSWORD = "pa/ss?w#rd@:x"
"""A password pasted into a URL as it is: '/', '?' and '#' would end the authority, '@' and ':' split it."""
RAW_PIECES = ("pa/ss", "ss?w", "w#rd", "rd@:x", "pa%2F", "viewer")


def test_a_raw_password_with_slash_question_mark_and_hash_is_never_printed(
    pubsub_settings: Settings, vtest_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    for key, value in producer_env(pubsub_settings).items():
        monkeypatch.setenv(key, value)
    with MjpegServer(vtest_jpegs(str(vtest_path), 5), credentials=("viewer", RAW_PASSWORD)) as camera:
        line = one_error_line([f"http://viewer:x{RAW_PASSWORD}@127.0.0.1:{camera.port}/stream"], capsys, status=1)
        assert line == (f"error: cannot read the stream http://***@127.0.0.1:{camera.port}/stream: the server "
                        "refused the credentials (HTTP 401) — check the URL, that the camera is on and reachable "
                        "from here, and its user name and password")
        url = f"http://viewer:{RAW_PASSWORD}@127.0.0.1:{camera.port}/stream"
        assert main([url, "--job-id", "cam-raw-password", "--max-frames", "3", "--no-progress", "-v"]) == 0
        basic = "Basic " + base64.b64encode(f"viewer:{RAW_PASSWORD}".encode()).decode()
        assert camera.authorizations[-2:] == ["", basic], "the password as typed, split at the last '@'"
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "cam-raw-password"
    manifest = read_manifest(pubsub_settings, "cam-raw-password")
    assert (manifest.state, manifest.frames_published) == ("complete", 3)
    assert manifest.source == f"http://***@127.0.0.1:{camera.port}/stream"
    for piece in RAW_PIECES:
        assert piece not in captured.err and piece not in manifest.to_json()


def test_a_raw_password_for_ffmpeg_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    line = one_error_line([f"rtsp://viewer:{RAW_PASSWORD}@127.0.0.1:{port}/live", "-v"], capsys, status=1)
    assert line == (f"error: cannot read the stream rtsp://***@127.0.0.1:{port}/live: FFmpeg cannot open it "
                    "(unreachable, refused, or not a stream it can read) — check the URL, that the camera is on and "
                    "reachable from here, and its user name and password")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:1234/abc@127.0.0.1/live", "rtsp://***@127.0.0.1/live"),
        ("http://admin:p@ss/word@127.0.0.1/video", "http://***@127.0.0.1/video"),
    ],
)
def test_a_url_whose_password_cannot_be_told_from_its_path_is_refused(
    url: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert one_error_line([url], capsys) == (
        f"error: ambiguous URL '{shown}': an '@' after a '/', '?' or '#' may end a user name or password that "
        "contains them — percent-encode them in the user name and password (/ %2F, ? %3F, # %23, @ %40) or write "
        "{NAME} for the password and export NAME; write an '@' of the path or query as %40")


def test_a_camera_that_wants_digest_auth(
    pubsub_settings: Settings, vtest_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MjpegServer(vtest_jpegs(str(vtest_path), 5), credentials=("viewer", PASSWORD), auth="digest") as camera:
        report = run_job(camera.url("viewer", PASSWORD), job_options(job_id="cam-digest", max_frames=4),
                         pubsub_settings)
        assert (report.state, report.frames_published) == ("complete", 4)
        assert camera.unauthorized == 1, "one request without credentials gets the challenge, then Digest answers"
        assert [header[:6] for header in camera.authorizations] == ["", "Digest"], "never Basic"
        line = one_error_line([camera.url("viewer", "wrong-" + PASSWORD)], capsys, status=1)
        assert line == (f"error: cannot read the stream http://***@127.0.0.1:{camera.port}/stream: the server "
                        "refused the credentials (HTTP 401) — check the URL, that the camera is on and reachable "
                        "from here, and its user name and password")


def test_a_tcp_stream_served_by_ffmpeg_reconnects(pubsub_settings: Settings) -> None:
    """OpenCV's FFmpeg reading a live MPEG-TS stream that FFmpeg (PyAV) serves on loopback; it drops once."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.producer.stream_server", str(port), "15", "2", "25"],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:  # wait until it listens (the probe does not count as a client)
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "the stream server did not start"
            time.sleep(0.05)
        result = subprocess.run(
            [sys.executable, "-m", "producer", f"tcp://127.0.0.1:{port}", "--job-id", "tcp-live", "--every-frame",
             "--max-frames", "22", "--no-progress"],
            cwd=REPO, env=producer_env(pubsub_settings), capture_output=True, text=True, timeout=90)
    finally:
        server.kill()
        server.wait()
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(pubsub_settings, "tcp-live")
    assert (manifest.state, manifest.clock, manifest.options["reader"]) == ("complete", "wallclock", "ffmpeg")
    assert manifest.frames_published == 22 and manifest.frames_dropped == 0
    assert len(manifest.gaps) == 1, manifest.gaps
    gap = manifest.gaps[0]
    assert gap["reconnect_attempts"] >= 1 and gap["seconds"] >= 0.4
    stamps = sorted(int(m.attributes["timestamp_us"]) for m in pull_all(pubsub_settings, expected=22))
    assert len(stamps) == 22 and gap["after_timestamp_us"] in stamps and gap["resumed_timestamp_us"] in stamps
