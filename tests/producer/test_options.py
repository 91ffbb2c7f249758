"""Option validation (pure): each bad value gets its exact one-line message and exit status 2; good values
come out typed, checked once."""

from __future__ import annotations

import re

import pytest

from producer.errors import UsageError
from producer.options import JobOptions, ProducerOptions


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ProducerOptions(fps=0), "--fps must be a number greater than 0, got 0 — omit --fps to publish every frame"),
        (ProducerOptions(fps=-2.5),
         "--fps must be a number greater than 0, got -2.5 — omit --fps to publish every frame"),
        (ProducerOptions(fps=float("nan")),
         "--fps must be a number greater than 0, got nan — omit --fps to publish every frame"),
        (ProducerOptions(max_frames=0),
         "--max-frames must be at least 1, got 0 — omit --max-frames to publish the whole video"),
        (ProducerOptions(jpeg_quality=0),
         "--jpeg-quality must be between 1 and 100, got 0 — omit it for the default (90)"),
        (ProducerOptions(jpeg_quality=101),
         "--jpeg-quality must be between 1 and 100, got 101 — omit it for the default (90)"),
        (ProducerOptions(job_id="Demo"),
         "invalid job id 'Demo': upper-case letters are not allowed — use lowercase letters, digits and '-' "
         "(at most 63, starting with a letter or digit), or omit --job-id to generate one"),
        (ProducerOptions(job_id="../etc"),
         "invalid job id '../etc': it contains './'; only lowercase letters, digits and '-' are allowed — use "
         "lowercase letters, digits and '-' (at most 63, starting with a letter or digit), or omit --job-id to "
         "generate one"),
    ],
)
def test_bad_option_values_are_refused_with_a_remedy(options: ProducerOptions, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        options.validated()
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def test_good_options_come_out_typed() -> None:
    given = ProducerOptions(job_id="demo-1", fps=2.5, max_frames=1, jpeg_quality=1, policy="latest-frame",
                            resize=" 64 X 48 ", duration=3.0, image_fps=4.0, reconnect_timeout=float("inf"))
    assert given.validated() == JobOptions(
        job_id="demo-1", fps=2.5, max_frames=1, jpeg_quality=1, policy="latest-frame", max_side=None,
        resize=(64, 48), duration=3.0, image_fps=4.0, reconnect_timeout=float("inf"))
    assert ProducerOptions(jpeg_quality=100).validated().jpeg_quality == 100


def test_the_frame_policy_defaults_by_source_kind() -> None:
    assert ProducerOptions().validated().policy_for(live=True) == "latest-frame"
    assert ProducerOptions().validated().policy_for(live=False) == "every-frame"
    assert ProducerOptions(policy="every-frame").validated().policy_for(live=True) == "every-frame"


def test_job_id_is_the_given_one_or_generated_from_the_source_name() -> None:
    job_id = ProducerOptions().validated().job_id_for("/videos/My Clip.final.mp4")
    assert re.fullmatch(r"my-clip-final-\d{8}t\d{6}-[0-9a-f]{4}", job_id)
    assert ProducerOptions(job_id="given").validated().job_id_for("/videos/x.mp4") == "given"


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_the_frame_timeout_is_a_finite_number_of_seconds(value: float) -> None:
    with pytest.raises(UsageError) as caught:
        ProducerOptions(frame_timeout=value).validated()
    assert str(caught.value) == (f"--frame-timeout must be a number of seconds greater than 0, got {value:g} — omit "
                                 "it for the default (10)")


def test_the_frame_timeout_defaults_to_ten_seconds() -> None:
    assert ProducerOptions().validated().frame_timeout == 10.0
    assert ProducerOptions(frame_timeout=0.25).validated().frame_timeout == 0.25
