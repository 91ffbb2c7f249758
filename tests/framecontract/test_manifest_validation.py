"""A manifest from the bucket is untrusted input: every field's type and range, with the exact reason (issue 16)."""

from __future__ import annotations

import json

import pytest

from framecontract.manifest import MAX_MANIFEST_BYTES, InvalidManifestError, Manifest


def good() -> dict:
    manifest = Manifest(job_id="demo", source="vtest.avi", source_kind="file", clock="stream", source_fps=10.0,
                        sample_fps=None, width=768, height=576)
    done = manifest.finish("complete", frames_published=795, first_timestamp_us=0, last_timestamp_us=79_400_000,
                           last_frame_index=794, frames_confirmed=795, confirmed_timestamp_us=79_400_000)
    return json.loads(done.to_json())


def test_a_producers_manifest_passes() -> None:
    data = good() | {"gaps": [{"after_timestamp_us": 1, "resumed_timestamp_us": 2, "seconds": 0.5,
                                "reason": "eof", "reconnect_attempts": 1}],
                     "heartbeat_interval_s": 5.0, "source_fingerprint": {"method": "x", "size": 3},
                     "resumes": [{"at": "2026-12-01T00:00:00Z", "from_frame_index": 3}], "newer_field": [1]}
    assert Manifest.from_dict(data).frames_published == 795


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"frames_published": "795"}, "field 'frames_published' must be an integer in 0..1000000000, got \"795\""),
        ({"frames_published": 10**9 + 1},
         "field 'frames_published' must be an integer in 0..1000000000, got 1000000001"),
        ({"frames_published": 10**30},
         "field 'frames_published' must be an integer in 0..1000000000, got 1000000000000000000000000000000"),
        ({"frames_published": -1}, "field 'frames_published' must be an integer in 0..1000000000, got -1"),
        ({"frames_published": 7.0}, "field 'frames_published' must be an integer in 0..1000000000, got 7.0"),
        ({"frames_published": True}, "field 'frames_published' must be an integer in 0..1000000000, got true"),
        ({"frames_published": None}, "field 'frames_published' must be an integer in 0..1000000000, got null"),
        ({"frames_confirmed": 10**10}, "field 'frames_confirmed' must be an integer in 0..1000000000, got 10000000000"),
        ({"last_frame_index": 10**9}, "field 'last_frame_index' must be an integer in 0..999999999 or null, "
                                      "got 1000000000"),
        ({"first_timestamp_us": "0"}, "field 'first_timestamp_us' must be an integer in 0..99999999999999999999 or "
                                      "null, got \"0\""),
        ({"last_timestamp_us": 10**20}, "field 'last_timestamp_us' must be an integer in 0..99999999999999999999 "
                                        "or null, got 100000000000000000000"),
        ({"confirmed_timestamp_us": -5}, "field 'confirmed_timestamp_us' must be an integer in "
                                         "0..99999999999999999999 or null, got -5"),
        ({"frames_dropped": "many"}, "field 'frames_dropped' must be an integer in 0..1000000000000000, got \"many\""),
        ({"gaps_total": -1}, "field 'gaps_total' must be an integer in 0..1000000000000000, got -1"),
        ({"images_skipped": 1.5}, "field 'images_skipped' must be an integer in 0..1000000000000000, got 1.5"),
        ({"width": 70_000}, "field 'width' must be an integer in 0..65535, got 70000"),
        ({"height": "576"}, "field 'height' must be an integer in 0..65535, got \"576\""),
        ({"source_fps": "25"}, "field 'source_fps' must be a number in 0..1000000 or null, got \"25\""),
        ({"sample_fps": 1e300}, "field 'sample_fps' must be a number in 0..1000000 or null, got 1e+300"),
        ({"sample_fps": float("nan")}, "field 'sample_fps' must be a number in 0..1000000 or null, got NaN"),
        ({"heartbeat_interval_s": 0}, "field 'heartbeat_interval_s' must be a number in 0.001..86400 or null, got 0"),
        ({"heartbeat_interval_s": "5"}, "field 'heartbeat_interval_s' must be a number in 0.001..86400 or null, "
                                        "got \"5\""),
        ({"state": "exploded"}, "field 'state' must be one of running, complete, stopped, failed, got \"exploded\""),
        ({"state": 1}, "field 'state' must be one of running, complete, stopped, failed, got 1"),
        ({"clock": "sundial"}, "field 'clock' must be one of stream, wallclock, got \"sundial\""),
        ({"job_id": "Bad"}, "field 'job_id': invalid job id 'Bad': upper-case letters are not allowed"),
        ({"job_id": 7}, "field 'job_id' must be a string, got 7"),
        ({"source": ["a"]}, "field 'source' must be a string, got [\"a\"]"),
        ({"source_kind": None}, "field 'source_kind' must be a string, got null"),
        ({"started_at": 0}, "field 'started_at' must be a string, got 0"),
        ({"ended_at": {}}, "field 'ended_at' must be a string or null, got {}"),
        ({"heartbeat_at": 5}, "field 'heartbeat_at' must be a string or null, got 5"),
        ({"error": False}, "field 'error' must be a string or null, got false"),
        ({"schema": 1}, "field 'schema' must be a string, got 1"),
        ({"options": []}, "field 'options' must be an object, got []"),
        ({"source_fingerprint": "abc"}, "field 'source_fingerprint' must be an object or null, got \"abc\""),
        ({"gaps": {}}, "field 'gaps' must be a list of at most 10000 objects, got {}"),
        ({"gaps": [1]}, "field 'gaps' must be a list of at most 10000 objects, got [1]"),
        ({"resumes": [{}] * 10_001}, "field 'resumes' must be a list of at most 10000 objects, got [{}, {}, {}, {}, "
                                     "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, ..."),
        ({"source": "x" * 5000}, "field 'source' must be a string of at most 4096 characters, got \"" + "x" * 56
         + "..."),
    ],
)
def test_a_field_of_the_wrong_type_or_out_of_range_is_named(change: dict, reason: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        Manifest.from_dict(good() | change)
    assert str(info.value) == reason
    with pytest.raises(InvalidManifestError) as info:  # the same through the bytes a reader downloads
        Manifest.from_json(json.dumps(good() | change).encode())
    assert str(info.value) == reason


@pytest.mark.parametrize("field", ["job_id", "source", "source_kind", "clock", "source_fps", "sample_fps", "width",
                                   "height"])
def test_a_missing_required_field_is_named(field: str) -> None:
    data = good()
    del data[field]
    with pytest.raises(InvalidManifestError) as info:
        Manifest.from_dict(data)
    assert str(info.value) == f"field {field!r} is missing"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", "manifest is not UTF-8 text"),
        ('{"job_id": "caf\udce9"}'.encode("utf-8", "surrogateescape"), "manifest is not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "manifest is JSON nested too deeply to be one"),
        (b'{"options": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "manifest is JSON nested too deeply to be one"),
        (b"{nope", "manifest is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b"", "manifest is not JSON: Expecting value at line 1 column 1"),
        (b"[]", "manifest is not a JSON object"),
        (b" " * (MAX_MANIFEST_BYTES + 1), f"manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
    ],
    ids=["bom-like", "latin1", "deep", "deep-field", "not-json", "empty", "list", "huge"],
)
def test_bytes_that_are_not_a_manifest(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidManifestError) as info:
        Manifest.from_json(data)
    assert str(info.value) == reason


def test_a_manifest_built_in_code_is_checked_too() -> None:
    with pytest.raises(InvalidManifestError, match="^unknown manifest state 'exploded'$"):
        Manifest(job_id="demo", source="s", source_kind="file", clock="stream", source_fps=None, sample_fps=None,
                 width=1, height=1, state="exploded")
