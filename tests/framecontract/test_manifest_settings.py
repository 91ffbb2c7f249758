import json

import pytest

from framecontract.manifest import InvalidManifestError, Manifest
from framecontract.settings import Settings, SettingsError, load_settings


def make_manifest() -> Manifest:
    return Manifest(job_id="demo", source="vtest.avi", source_kind="file", clock="stream",
                    source_fps=10.0, sample_fps=None, width=768, height=576)


def test_manifest_round_trip_and_finish() -> None:
    m = make_manifest()
    assert m.state == "running" and not m.is_final
    done = m.finish("complete", frames_published=795, first_timestamp_us=0, last_timestamp_us=79_400_000)
    assert done.is_final and done.ended_at and done.frames_published == 795
    assert Manifest.from_json(done.to_json()) == done


def test_manifest_rejects_bad_input() -> None:
    with pytest.raises(InvalidManifestError, match="manifest is not JSON"):
        Manifest.from_json(b"{nope")
    with pytest.raises(InvalidManifestError, match="not a JSON object"):
        Manifest.from_json("[]")
    data = json.loads(make_manifest().to_json()) | {"state": "exploded"}
    with pytest.raises(InvalidManifestError, match="^field 'state' must be one of running, complete, stopped, failed, "
                                                   "got \"exploded\"$"):
        Manifest.from_dict(data)
    with pytest.raises(ValueError, match="not a final state"):
        make_manifest().finish("running")  # type: ignore[arg-type]


def test_settings_precedence(tmp_path) -> None:
    path = tmp_path / "settings.json"
    Settings(project="from-file", topic="t-file", bucket="b-file").write(path)
    env = {"FRAME_FANOUT_SETTINGS": str(path), "FRAMES_TOPIC": "t-env"}
    s = load_settings({"bucket": "b-flag", "project": None}, environ=env)
    assert (s.project, s.topic, s.bucket) == ("from-file", "t-env", "b-flag")


def test_settings_without_file_use_defaults(tmp_path) -> None:
    s = load_settings(environ={"FRAME_FANOUT_SETTINGS": str(tmp_path / "absent.json")})
    assert s == Settings()


def test_broken_settings_file_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{broken")
    with pytest.raises(SettingsError, match=f"settings file {path} is not valid JSON"):
        load_settings(environ={"FRAME_FANOUT_SETTINGS": str(path)})


def test_a_manifest_without_the_heartbeat_fields_still_parses_and_is_never_stale() -> None:
    import datetime as dt

    old = {k: v for k, v in json.loads(make_manifest().to_json()).items()
           if k not in ("heartbeat_at", "heartbeat_interval_s", "frames_confirmed", "confirmed_timestamp_us",
                        "source_fingerprint", "resumes")}
    m = Manifest.from_dict(old)
    assert (m.heartbeat_at, m.heartbeat_interval_s, m.frames_confirmed, m.resumes) == (None, None, 0, ())
    far_future = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    assert m.stale_after_s() is None and m.producer_silence_s(far_future) is None


def test_heartbeat_progress_and_staleness() -> None:
    import dataclasses
    import datetime as dt

    from framecontract.manifest import parse_utc_iso

    at = "2026-11-28T12:00:00.000000Z"
    beat = dataclasses.replace(make_manifest(), heartbeat_interval_s=5.0).beat(120, 0, 11_900_000, at=at)
    assert (beat.heartbeat_at, beat.frames_confirmed, beat.confirmed_timestamp_us) == (at, 120, 11_900_000)
    assert (beat.frames_published, beat.first_timestamp_us, beat.last_frame_index, beat.last_timestamp_us) == (
        120, 0, 119, 11_900_000)
    assert Manifest.from_json(beat.to_json()) == beat
    t0 = parse_utc_iso(at)
    assert t0 is not None
    assert beat.stale_after_s() == 30.0  # 3 x 5 s, but at least 30 s
    assert dataclasses.replace(beat, heartbeat_interval_s=20.0).stale_after_s() == 60.0
    assert beat.stale_after_s(override=2.0) == 2.0
    assert beat.heartbeat_age_s(t0 + dt.timedelta(seconds=29.5)) == 29.5
    assert beat.producer_silence_s(t0 + dt.timedelta(seconds=29.5)) is None
    assert beat.producer_silence_s(t0 + dt.timedelta(seconds=30)) == 30.0
    assert beat.producer_silence_s(t0 + dt.timedelta(seconds=3), stale_after_s=2) == 3.0
    assert beat.heartbeat_age_s(t0 - dt.timedelta(seconds=3)) == 0.0  # a clock behind the producer's: not negative
    done = beat.finish("complete", frames_published=795)
    assert done.producer_silence_s(t0 + dt.timedelta(days=1)) is None  # only a running job can be stale
    nothing = dataclasses.replace(make_manifest(), heartbeat_interval_s=5.0).beat(0, None, None, at=at)
    assert (nothing.frames_published, nothing.first_timestamp_us, nothing.last_frame_index) == (0, None, None)


def test_an_unreadable_heartbeat_is_no_heartbeat() -> None:
    import datetime as dt

    now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    data = json.loads(make_manifest().to_json()) | {"heartbeat_at": "yesterday", "heartbeat_interval_s": 5.0}
    m = Manifest.from_dict(data)
    assert m.heartbeat_age_s(now) is None and m.producer_silence_s(now) is None
    # an interval of the wrong type makes the manifest unreadable (tests/framecontract/test_manifest_validation.py)
