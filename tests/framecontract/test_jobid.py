import datetime as dt

import pytest

from framecontract.jobid import InvalidJobIdError, generate_job_id, slugify, validate_job_id


@pytest.mark.parametrize("job_id", ["a", "0", "vtest-20261128t120000-ab12", "a" * 63, "a-b-c", "9lives"])
def test_valid_job_ids_pass_unchanged(job_id: str) -> None:
    assert validate_job_id(job_id) == job_id


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("", "job id is empty; use lowercase letters, digits and '-'"),
        ("a" * 64, "job id 'aaaaaaaaaaaaaaaaaaaa'... is 64 characters; at most 63"),
        ("Vtest", "invalid job id 'Vtest': upper-case letters are not allowed"),
        ("../etc", "invalid job id '../etc': it contains './'; only lowercase letters, digits and '-' are allowed"),
        ("a/b", "invalid job id 'a/b': it contains '/'; only lowercase letters, digits and '-' are allowed"),
        ("-abc", "invalid job id '-abc': it must start with a lowercase letter or digit"),
        ("job_1", "invalid job id 'job_1': it contains '_'; only lowercase letters, digits and '-' are allowed"),
        ("café", "invalid job id 'café': it contains 'é'; only lowercase letters, digits and '-' are allowed"),
        ("a b", "invalid job id 'a b': it contains ' '; only lowercase letters, digits and '-' are allowed"),
    ],
)
def test_invalid_job_ids_are_rejected_with_the_reason(job_id: str, message: str) -> None:
    with pytest.raises(InvalidJobIdError) as err:
        validate_job_id(job_id)
    assert str(err.value) == message


def test_generated_job_id_is_deterministic_given_time_and_suffix() -> None:
    now = dt.datetime(2026, 11, 28, 12, 0, 5, tzinfo=dt.UTC)
    assert generate_job_id("/data/My Video.AVI", now, "ab12") == "my-video-20261128t120005-ab12"
    assert generate_job_id("rtsp://cam/stream", now, "0000") == "stream-20261128t120005-0000"
    assert generate_job_id("___", now, "ffff") == "job-20261128t120005-ffff"


def test_generated_job_ids_differ_and_are_valid() -> None:
    ids = {generate_job_id("x" * 200 + ".mp4") for _ in range(20)}
    assert len(ids) > 1
    assert all(validate_job_id(i) == i and len(i) <= 63 for i in ids)


def test_slugify_collapses_and_trims() -> None:
    assert slugify("  Hello,  World!! ") == "hello-world"
    assert slugify("a" * 50, max_length=10) == "a" * 10
