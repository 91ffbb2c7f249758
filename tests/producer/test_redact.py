"""URL credential redaction (pure): user-info and secret query values never survive."""

from __future__ import annotations

import pytest

from producer.redact import (
    AmbiguousUrlError,
    MissingVariableError,
    expand_env_placeholders,
    parse_source_url,
    redact_url,
    scrub,
    url_secrets,
)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsp://admin@10.0.0.5/live", "rtsp://***@10.0.0.5/live"),
        ("http://u:p%40ss@cam.local/video.mjpg?fps=5", "http://***@cam.local/video.mjpg?fps=5"),
        ("http://cam/video.cgi?user=admin&pwd=hunter2&resolution=640x480",
         "http://cam/video.cgi?user=***&pwd=***&resolution=640x480"),
        ("https://cam/s?access_token=abc.def&Password=x&apiKey=k&channel=1",
         "https://cam/s?access_token=***&Password=***&apiKey=***&channel=1"),
        ("rtsp://a:b@[fe80::1]:554/x?camPassword=z", "rtsp://***@[fe80::1]:554/x?camPassword=***"),
        ("rtsp://cam.local:554/stream1", "rtsp://cam.local:554/stream1"),
        ("rtsp://u:p@cam/a%40b", "rtsp://***@cam/a%40b"),
        ("videos/vtest.avi", "videos/vtest.avi"),
        ("0", "0"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_a_password_with_an_at_sign_is_redacted_whole() -> None:
    assert redact_url("rtsp://user:p@ss@cam/x") == "rtsp://***@cam/x"
    assert "p@ss" in url_secrets("rtsp://user:p@ss@cam/x")


def test_secrets_are_scrubbed_from_library_messages() -> None:
    url = "http://admin:s3cr%21t@127.0.0.1:8080/video?token=tok123"
    secrets = url_secrets(url)
    assert {"admin", "s3cr%21t", "s3cr!t", "tok123", "admin:s3cr%21t@"} <= set(secrets)
    message = ("HTTPConnectionPool(host='127.0.0.1', port=8080): Max retries exceeded with url: /video?token=tok123 "
               "(auth admin:s3cr!t) http://admin:s3cr%21t@127.0.0.1:8080/video")
    scrubbed = scrub(message, secrets)
    assert "tok123" not in scrubbed and "s3cr" not in scrubbed and "admin" not in scrubbed
    assert scrubbed.endswith("url: /video?token=*** (auth ***:***) http://***@127.0.0.1:8080/video")


def test_a_short_user_name_is_not_scrubbed_from_every_word() -> None:
    secrets = url_secrets("rtsp://me:pw123@cam/x")
    assert "me" not in secrets and "pw123" in secrets
    assert scrub("unsupported scheme rtsp://me:pw123@cam/x", secrets) == "unsupported scheme rtsp://***@cam/x"


def test_nothing_to_scrub_without_credentials() -> None:
    assert url_secrets("rtsp://cam/stream?channel=2") == ()
    assert scrub("unchanged", ()) == "unchanged"


# ---- {NAME} placeholders: the password comes from the environment, not the command line ------------------


def test_placeholders_take_the_value_from_the_environment_percent_encoded() -> None:
    env = {"CAM_USER": "admin", "CAM_PASSWORD": "p@ss:w/rd %1"}
    assert expand_env_placeholders("rtsp://{CAM_USER}:{CAM_PASSWORD}@cam:554/live?ch=1", env) == (
        "rtsp://admin:p%40ss%3Aw%2Frd%20%251@cam:554/live?ch=1"
    )
    assert expand_env_placeholders("http://cam/video.cgi?pwd={CAM_PASSWORD}", env) == (
        "http://cam/video.cgi?pwd=p%40ss%3Aw%2Frd%20%251"
    )


def test_the_expanded_password_is_redacted_in_both_forms() -> None:
    url = expand_env_placeholders("rtsp://admin:{PW}@cam/live", {"PW": "p@ss:word"})
    assert redact_url(url) == "rtsp://***@cam/live"
    assert scrub("failed: p@ss:word / p%40ss%3Aword", url_secrets(url)) == "failed: *** / ***"


def test_only_url_placeholders_are_expanded() -> None:
    env = {"X": "value"}
    assert expand_env_placeholders("videos/{X}.mp4", env) == "videos/{X}.mp4", "a file name is left alone"
    assert expand_env_placeholders("http://cam/{1}/{a-b}/{}", env) == "http://cam/{1}/{a-b}/{}"
    assert expand_env_placeholders("http://cam/live", env) == "http://cam/live"


def test_a_placeholder_without_a_variable_is_an_error() -> None:
    with pytest.raises(MissingVariableError) as raised:
        expand_env_placeholders("rtsp://admin:{CAM_PASSWORD}@cam/live", {})
    assert str(raised.value) == "environment variable CAM_PASSWORD is not set (the source URL uses {CAM_PASSWORD})"


# ---- passwords and user names with / ? # @ : (issue 16) --------------------------------------------------

RAW = [  # (URL as typed, its user, its password, what is shown)
    ("http://admin:pa/ss@cam/stream", "admin", "pa/ss", "http://***@cam/stream"),
    ("http://admin:pa?ss@cam:8080/stream?fps=5", "admin", "pa?ss", "http://***@cam:8080/stream?fps=5"),
    ("rtsp://admin:pa#ss@10.0.0.5:554/live", "admin", "pa#ss", "rtsp://***@10.0.0.5:554/live"),
    ("rtsp://admin:p@ss:w/o?r#d@cam/live", "admin", "p@ss:w/o?r#d", "rtsp://***@cam/live"),
    ("http://me@corp:x@y@cam/s", "me@corp", "x@y", "http://***@cam/s"),
    ("http://cam:p/w@cam/s", "cam", "p/w", "http://***@cam/s"),
    ("http://admin:pa%2Fss%3F%23%40%3A@cam/s", "admin", "pa/ss?#@:", "http://***@cam/s"),
    ("http://ad%2Fmin:pw@cam/s", "ad/min", "pw", "http://***@cam/s"),
    ("http://admin@cam/s", "admin", None, "http://***@cam/s"),
]


@pytest.mark.parametrize(("url", "user", "password", "shown"), RAW)
def test_the_userinfo_runs_to_the_last_at_sign_before_the_host(url: str, user: str, password: str | None,
                                                               shown: str) -> None:
    parsed = parse_source_url(url)
    assert parsed.credentials() == (user, password)
    assert redact_url(url) == shown
    assert parsed.without_userinfo() == shown.replace("***@", "")


@pytest.mark.parametrize(("url", "user", "password", "shown"), RAW)
def test_no_part_of_a_raw_password_survives_redaction(url: str, user: str, password: str | None, shown: str) -> None:
    secrets = url_secrets(url)
    raw_password = parse_source_url(url).password
    for secret in filter(None, (password, raw_password)):
        assert secret in secrets
        assert scrub(f"failed: {secret} / {url}", secrets) == f"failed: *** / {shown}"


def test_the_encoded_userinfo_is_what_ffmpeg_decodes() -> None:
    assert parse_source_url("rtsp://admin:p@ss:w/o?r#d@cam:554/live").with_encoded_userinfo() == (
        "rtsp://admin:p%40ss%3Aw%2Fo%3Fr%23d@cam:554/live")
    assert parse_source_url("rtsp://cam/live").with_encoded_userinfo() == "rtsp://cam/live"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://admin:1234/abc@cam/live", "rtsp://***@cam/live"),      # host admin, port 1234? or a password?
        ("rtsp://admin:p@ss/w@cam/live", "rtsp://***@cam/live"),        # password p, host ss? or p@ss/w?
        ("http://ad/min:pw@cam/s", "http://***@cam/s"),                 # host ad? or user ad/min?
        ("http://cam/mail?to=a@b.org", "http://***@b.org"),             # an '@' in the query: write %40
        ("http://admin:pa/ss@cam/x@y", "http://***@y"),                 # which '@' ends the password?
    ],
)
def test_an_ambiguous_url_is_refused_and_shown_hiding_everything_before_its_last_at_sign(url: str, shown: str) -> None:
    with pytest.raises(AmbiguousUrlError) as raised:
        parse_source_url(url)
    assert str(raised.value) == (f"ambiguous URL {shown!r}: an '@' after a '/', '?' or '#' may end a user name or "
                                 "password that contains them")
    assert raised.value.remedy == ("percent-encode them in the user name and password (/ %2F, ? %3F, # %23, @ %40) or "
                                   "write {NAME} for the password and export NAME; write an '@' of the path or query "
                                   "as %40")
    assert redact_url(url) == shown
    secrets = url_secrets(url)
    assert scrub(url, secrets) == shown
