"""The command line: job id on the last stdout line, one ``error:`` line and the exit status otherwise."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from framecontract.settings import Settings
from producer.cli import main
from tests.producer.conftest import SYNTHETIC_FRAMES
from tests.producer.helpers import pull_all, read_manifest

REPO = Path(__file__).resolve().parents[2]


def producer_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host or "",
        "STORAGE_EMULATOR_HOST": settings.storage_emulator_host or "",
        "GOOGLE_CLOUD_PROJECT": settings.project,
        "FRAMES_TOPIC": settings.topic,
        "FRAMES_BUCKET": settings.bucket,
    })
    return env


def run_producer(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_the_job_id_last(pubsub_settings: Settings, synthetic_video: Path) -> None:
    result = run_producer([str(synthetic_video), "--max-frames", "7"], producer_env(pubsub_settings))
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.splitlines()[-1]
    assert job_id.startswith("clip-")
    assert f"job {job_id} complete: published 7 frames (of 7 decoded)" in result.stderr
    assert len(pull_all(pubsub_settings, expected=7)) == 7
    assert read_manifest(pubsub_settings, job_id).frames_published == 7


def test_cli_flags_override_the_environment(pubsub_settings: Settings, synthetic_video: Path) -> None:
    env = producer_env(pubsub_settings) | {"FRAMES_TOPIC": "not-this-topic", "FRAMES_BUCKET": "not-this-bucket"}
    result = run_producer([str(synthetic_video), "--job-id", "flagged", "--fps", "6", "--jpeg-quality", "50",
                           "--topic", pubsub_settings.topic, "--bucket", pubsub_settings.bucket], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "flagged"
    assert len(pull_all(pubsub_settings, expected=SYNTHETIC_FRAMES // 2)) == SYNTHETIC_FRAMES // 2
    manifest = read_manifest(pubsub_settings, "flagged")
    assert (manifest.sample_fps, manifest.options["jpeg_quality"]) == (6.0, 50)


def test_cli_reports_a_missing_topic_in_one_line(pubsub_settings: Settings, synthetic_video: Path) -> None:
    env = producer_env(pubsub_settings) | {"FRAMES_TOPIC": "gone"}
    result = run_producer([str(synthetic_video)], env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: Pub/Sub topic 'projects/{pubsub_settings.project}/topics/gone' not found — start the local stack "
        "with 'python -m deploy.local up', or create the topic ('gcloud pubsub topics create gone'), "
        "or pass --topic/--project"
    ]


def test_cli_corrupt_file_is_one_line_without_decoder_noise(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(random.Random(11).randbytes(20_000))
    result = run_producer([str(corrupt)], dict(os.environ))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: '{corrupt}' is not a video OpenCV can open (not a video file, corrupt, or an unsupported format) "
        "— check that the file plays in a video player, or re-encode it (e.g. to H.264 MP4)"
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--fps", "0"], "error: --fps must be a number greater than 0, got 0 — omit --fps to publish every frame"),
        (["--fps", "fast"],
         "error: argument --fps: invalid float value: 'fast' — run 'python -m producer --help' for usage"),
        (["--max-frames", "0"],
         "error: --max-frames must be at least 1, got 0 — omit --max-frames to publish the whole video"),
        (["--jpeg-quality", "0"],
         "error: --jpeg-quality must be between 1 and 100, got 0 — omit it for the default (90)"),
        (["--job-id", "a/b"],
         "error: invalid job id 'a/b': it contains '/'; only lowercase letters, digits and '-' are allowed — use "
         "lowercase letters, digits and '-' (at most 63, starting with a letter or digit), or omit --job-id to "
         "generate one"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], line: str, synthetic_video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(synthetic_video), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [line]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.avi")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: no such file: '{tmp_path / 'nope.avi'}' — check the path to the video"
    ]


def test_no_arguments_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: the following arguments are required: SOURCE — run 'python -m producer --help' for usage"
    ]
