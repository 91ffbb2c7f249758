"""A manifest that is not one: every command says ``manifest unreadable: <reason>`` and exits 1, no traceback.

``collector jobs`` goes on with the other jobs and shows that one as ``manifest unreadable`` (issue 16).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.cli import EXIT_ERROR, EXIT_OK, main
from collector.store import JobStore, UnreadableManifestError
from collector.synthetic import seed_job
from framecontract.layout import manifest_name
from framecontract.manifest import MAX_MANIFEST_BYTES


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def spoil_manifest(bucket, job_id: str, data: bytes) -> str:
    """Replace the job's manifest with ``data``; returns its gs:// URI."""
    name = manifest_name(job_id)
    bucket.blob(name).upload_from_string(data, content_type="application/json")
    return f"gs://{bucket.name}/{name}"


def manifest_with(bucket, job_id: str, **fields) -> bytes:
    data = json.loads(bucket.blob(manifest_name(job_id)).download_as_bytes())
    return json.dumps(data | fields).encode()


BAD_MANIFESTS = {
    "published-a-string": (lambda m: m(frames_published="3"),
                           "field 'frames_published' must be an integer in 0..1000000000, got \"3\""),
    "published-absurd": (lambda m: m(frames_published=10**15),
                         "field 'frames_published' must be an integer in 0..1000000000, got 1000000000000000"),
    "clock-unknown": (lambda m: m(clock=None), "field 'clock' must be one of stream, wallclock, got null"),
    "not-utf8": (lambda m: b'{"job_id": "caf\xe9"}', "manifest is not UTF-8 text"),
    "deep": (lambda m: b"[" * 100_000 + b"]" * 100_000, "manifest is JSON nested too deeply to be one"),
    "huge": (lambda m: b" " * (MAX_MANIFEST_BYTES + 10), f"manifest is larger than {MAX_MANIFEST_BYTES} bytes"),
    "empty": (lambda m: b"", "manifest is not JSON: Expecting value at line 1 column 1"),
}


@pytest.mark.parametrize("command", ["status", "wait", "reassemble"])
@pytest.mark.parametrize("case", list(BAD_MANIFESTS))
def test_every_command_reports_an_unreadable_manifest(bucket, capsys, tmp_path: Path, command: str,
                                                      case: str) -> None:
    spoil, reason = BAD_MANIFESTS[case]
    seed_job(bucket, "spoiled", range(3))
    uri = spoil_manifest(bucket, "spoiled", spoil(lambda **f: manifest_with(bucket, "spoiled", **f)))
    extra = {"wait": ["--timeout", "5"], "reassemble": ["-o", str(tmp_path / "s.mp4")]}.get(command, [])
    code, out, err = run(capsys, command, "--job", "spoiled", *extra)
    assert (code, out, err) == (EXIT_ERROR, "", f"error: manifest unreadable: {reason} ({uri})\n")
    assert not (tmp_path / "s.mp4").exists()


def test_jobs_shows_the_job_with_an_unreadable_manifest_and_goes_on(bucket, capsys) -> None:
    seed_job(bucket, "alpha", range(3))
    seed_job(bucket, "spoiled", range(2))
    seed_job(bucket, "zulu", range(1))
    spoil_manifest(bucket, "spoiled", manifest_with(bucket, "spoiled", frames_published="2"))
    code, stdout, _ = run(capsys, "jobs", "--json")
    assert code == EXIT_OK
    rows = {r["job_id"]: (r["state"], r["published"], r["processed"]) for r in json.loads(stdout)}
    assert rows == {"alpha": ("complete", 3, 3), "spoiled": ("manifest unreadable", None, 2),
                    "zulu": ("complete", 1, 1)}
    code, stdout, _ = run(capsys, "jobs")
    assert code == EXIT_OK
    assert stdout.splitlines()[2].split() == ["spoiled", "manifest", "unreadable", "?", "2", "0", "0"]


def test_a_huge_manifest_is_not_downloaded_whole() -> None:
    """The manifest read asks for at most MAX_MANIFEST_BYTES + 1 bytes, whatever the object's size."""
    asked = []

    class Blob:
        def download_as_bytes(self, start=None, end=None) -> bytes:
            asked.append((start, end))
            return b" " * (end - start + 1)  # an object larger than what was asked for

    class Client:
        def bucket(self, name):
            return type("Bucket", (), {"blob": lambda self, name: Blob()})()

    store = JobStore(client=Client(), bucket_name="b", media=None)
    with pytest.raises(UnreadableManifestError) as info:
        store.read_manifest("big")
    assert str(info.value) == (f"manifest unreadable: manifest is larger than {MAX_MANIFEST_BYTES} bytes "
                               "(gs://b/jobs/big/manifest.json)")
    assert asked == [(0, MAX_MANIFEST_BYTES)]
