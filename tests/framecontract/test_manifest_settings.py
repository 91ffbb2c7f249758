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
    with pytest.raises(InvalidManifestError, match="unknown manifest state 'exploded'"):
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
