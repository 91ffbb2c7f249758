"""The ``collector`` CLI via ``main([...])`` against the storage emulator: output, exit codes, exact errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from collector.cli import EXIT_DONE_WITH_ERRORS, EXIT_ERROR, EXIT_OK, EXIT_PRODUCER_STALE, EXIT_TIMED_OUT, main
from collector.synthetic import seed_job
from framecontract.settings import Settings
from tests.collector.helpers import decode_video


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_reassemble_writes_video_detections_and_report(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "cli-job", [0, 1, 2, 4], published=5)
    out = tmp_path / "v.mp4"
    code, stdout, stderr = run(capsys, "reassemble", "--job", "cli-job", "-o", str(out), "--missing", "skip",
                               "--detections", str(tmp_path / "d.jsonl"))  # fmt: skip
    assert code == EXIT_OK, stderr
    assert stdout.strip() == str(out)
    assert decode_video(out).counters == [0, 1, 2, 4]
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 5
    assert json.loads((tmp_path / "v.report.json").read_text())["missing"] == [3]
    assert stderr.startswith("Reassembled job cli-job (complete): 4 video frames written to ")
    assert "1 missing (3) skipped." in stderr


def test_status_json_numbers(bucket, capsys) -> None:
    seed_job(bucket, "st", [0, 1, 2, 3, 6], errors={5: "bad"}, published=9)
    code, stdout, _ = run(capsys, "status", "--job", "st", "--json")
    assert code == EXIT_OK
    data = json.loads(stdout)
    assert {k: data[k] for k in ("state", "published", "processed", "errors", "missing", "missing_count")} == {
        "state": "complete", "published": 9, "processed": 5, "errors": 1, "missing": "4, 7-8", "missing_count": 3,
    }  # fmt: skip
    assert data["rate_fps"] is not None and data["rate_fps"] > 0 and data["done"] is False


def test_status_text(bucket, capsys) -> None:
    seed_job(bucket, "st2", [0, 1], state="running")
    code, stdout, _ = run(capsys, "status", "--job", "st2")
    assert code == EXIT_OK
    assert "state      running" in stdout
    assert "published  unknown (producer still running; at least 2)" in stdout


def test_wait_exit_codes(bucket, capsys) -> None:
    seed_job(bucket, "w-ok", range(3))
    seed_job(bucket, "w-err", [0, 2], errors={1: "bad"})
    seed_job(bucket, "w-run", [0, 1], state="running")
    code, _, err = run(capsys, "wait", "--job", "w-ok", "--timeout", "5")
    assert (code, err.strip()) == (EXIT_OK, "job w-ok: 3 of 3 processed, 0 errors; done")
    assert run(capsys, "wait", "--job", "w-err", "--timeout", "5")[0] == EXIT_DONE_WITH_ERRORS
    code, _, err = run(capsys, "wait", "--job", "w-run", "--timeout", "0.3", "--poll", "0.1")
    assert (code, err.strip()) == (EXIT_TIMED_OUT, "job w-run: 2 of 2+ processed, 0 errors (state running); timed out")


def seed_silent_job(bucket, job_id: str, seconds_ago: float) -> str:  # noqa: ANN001
    """A running job whose producer (5 s heartbeat) last wrote its manifest ``seconds_ago``; its ``heartbeat_at``."""
    import dataclasses
    import datetime as dt

    from framecontract.layout import manifest_name

    manifest = seed_job(bucket, job_id, [0, 1], state="running")
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    beat = dataclasses.replace(manifest, heartbeat_interval_s=5.0).beat(3, 0, 200_000, at=at)
    bucket.blob(manifest_name(job_id)).upload_from_string(beat.to_json(), content_type="application/json")
    return at


def test_wait_ends_with_its_own_exit_code_when_the_producer_is_stale(bucket, capsys) -> None:
    last = seed_silent_job(bucket, "w-dead", seconds_ago=600)
    seed_silent_job(bucket, "w-alive", seconds_ago=0)
    code, _, err = run(capsys, "wait", "--job", "w-dead", "--timeout", "5")
    assert code == EXIT_PRODUCER_STALE == 5
    assert re.fullmatch(rf"job w-dead: 2 of 3\+ processed, 0 errors \(state running\); producer stale: no heartbeat "
                        rf"for 6\d\d s \(last at {re.escape(last)}\) — resume a file or image-folder job with "
                        r"'python -m producer SOURCE --resume w-dead'", err.strip()), err
    code, _, err = run(capsys, "wait", "--job", "w-alive", "--timeout", "0.3", "--poll", "0.1")
    assert (code, err.strip()) == (
        EXIT_TIMED_OUT, "job w-alive: 2 of 3+ processed, 0 errors (state running); timed out")
    code, stdout, _ = run(capsys, "status", "--job", "w-dead", "--json")
    data = json.loads(stdout)
    assert (data["state"], data["producer"], data["stale"], data["heartbeat_at"], data["stale_after_s"]) == (
        "running", "stale", True, last, 30.0)
    code, stdout, _ = run(capsys, "status", "--job", "w-alive", "--json", "--stale-after", "0")
    assert json.loads(stdout)["stale"] is True
    code, stdout, _ = run(capsys, "jobs")
    assert [line.split()[:2] for line in stdout.splitlines()[1:]] == [["w-alive", "running"], ["w-dead", "stale"]]


def test_jobs_lists_every_job(bucket, capsys) -> None:
    seed_job(bucket, "alpha", range(3))
    seed_job(bucket, "beta", [0], state="running")
    code, stdout, _ = run(capsys, "jobs", "--json")
    assert code == EXIT_OK
    rows = {r["job_id"]: (r["state"], r["published"], r["processed"]) for r in json.loads(stdout)}
    assert rows == {"alpha": ("complete", 3, 3), "beta": ("running", None, 1)}
    code, stdout, _ = run(capsys, "jobs")
    assert stdout.splitlines()[0].split() == ["JOB", "STATE", "PUBLISHED", "PROCESSED", "ERRORS", "MISSING"]
    assert stdout.splitlines()[2].split() == ["beta", "running", "?", "1", "0", "0"]


def test_error_unknown_job(bucket, capsys, gcs_settings: Settings) -> None:
    code, out, err = run(capsys, "status", "--job", "nojob")
    assert (code, out) == (EXIT_ERROR, "")
    assert err == f"error: job 'nojob' not found: no manifest at gs://{gcs_settings.bucket}/jobs/nojob/manifest.json\n"


def test_error_bucket_missing(bucket, capsys) -> None:
    code, _, err = run(capsys, "reassemble", "--job", "x", "--bucket", "no-such-bucket", "-o", "/tmp/x.mp4")
    assert (code, err) == (EXIT_ERROR, "error: bucket 'no-such-bucket' does not exist\n")


def test_error_job_still_running(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "live", [0], state="running")
    code, _, err = run(capsys, "reassemble", "--job", "live", "-o", str(tmp_path / "l.mp4"))
    assert code == EXIT_ERROR
    assert err == (
        "error: job 'live' is still running (manifest state 'running'); wait with 'collector wait --job live' "
        "or reassemble what exists with --partial\n"
    )
    assert run(capsys, "reassemble", "--job", "live", "-o", str(tmp_path / "l.mp4"), "--partial")[0] == EXIT_OK


@pytest.mark.parametrize("command", ["status", "wait", "reassemble"])
def test_error_bad_job_id(bucket, capsys, command: str) -> None:
    code, _, err = run(capsys, command, "--job", "Bad")
    assert (code, err) == (EXIT_ERROR, "error: invalid job id 'Bad': upper-case letters are not allowed\n")


def test_error_output_dir_not_writable(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "ok", range(2))
    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "reassemble", "--job", "ok", "-o", str(tmp_path / "file" / "out.mp4"))
    blocker = tmp_path / "file"
    assert (code, err) == (
        EXIT_ERROR,
        f"error: cannot write to output directory '{blocker}': '{blocker}' is not a directory\n",
    )


def test_error_no_frames(bucket, capsys, tmp_path: Path) -> None:
    seed_job(bucket, "none", [], errors={0: "bad"}, published=1)
    code, _, err = run(capsys, "reassemble", "--job", "none", "-o", str(tmp_path / "n.mp4"))
    assert (code, err) == (
        EXIT_ERROR,
        "error: job 'none' has no processed frames to reassemble (1 error record, 0 missing)\n",
    )
    assert not (tmp_path / "n.mp4").exists()


def test_help_documents_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["wait", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for line in ("3    wait: done, but some frames have error records", "4    wait: timed out before the job was done"):
        assert line in out
