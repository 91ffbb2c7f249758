"""Dead-lettered frames: read from the dead-letter subscription without consuming it, reported apart from missing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from collector.cli import EXIT_DONE_WITH_ERRORS, EXIT_OK, EXIT_TIMED_OUT, main
from collector.deadletters import DELIVERY_COUNT_ATTRIBUTE, DeadLetter, DeadLetterReader
from collector.plan import ListedObject, parse_listing, plan_timeline
from collector.synthetic import seed_job
from framecontract.clients import make_publisher
from framecontract.layout import frame_objects
from framecontract.message import FrameAttributes
from framecontract.settings import Settings

FPS = 10.0
STEP_US = 100_000


def publish_dead_letters(settings: Settings, frames: list[tuple[str, int]], attempts: int = 5,
                         extra: list[dict[str, str]] | None = None) -> None:
    """Put messages on the 'dead-letter topic' as Pub/Sub forwards them: frame attributes + the delivery count."""
    publisher = make_publisher(settings)
    futures = [publisher.publish(settings.topic_path, b"", **FrameAttributes(job, i, i * STEP_US, 320, 240).to_pubsub(),
                                 **{DELIVERY_COUNT_ATTRIBUTE: str(attempts),
                                    "CloudPubSubDeadLetterSourceSubscription": "frames-pull"})
               for job, i in frames]
    futures += [publisher.publish(settings.topic_path, b"x", **attrs) for attrs in extra or []]
    for future in futures:
        future.result(timeout=30)


@pytest.fixture
def dead_letter_env(pubsub_settings: Settings, bucket, monkeypatch: pytest.MonkeyPatch) -> Settings:  # noqa: ARG001
    """The CLI pointed at the bucket and at ``pubsub_settings``' pull subscription as the dead-letter subscription."""
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_settings.pubsub_emulator_host or "")
    monkeypatch.setenv("FRAMES_DEAD_LETTER_SUBSCRIPTION", pubsub_settings.subscription)
    return Settings(**{**pubsub_settings.__dict__, "dead_letter_subscription": pubsub_settings.subscription})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_reading_consumes_nothing_and_matches_the_job(dead_letter_env: Settings) -> None:
    publish_dead_letters(dead_letter_env, [("dl-a", 3), ("dl-a", 5), ("dl-b", 1)],
                         extra=[{"job_id": "../x", "frame_index": "1", "timestamp_us": "0"}, {}])
    reader = DeadLetterReader.from_settings(dead_letter_env)
    assert reader is not None
    first = reader.for_job("dl-a")
    assert sorted(first) == [3, 5]
    letter = first[3]
    assert (letter.job_id, letter.timestamp_us, letter.delivery_attempts, letter.source_subscription) == (
        "dl-a", 3 * STEP_US, 5, "frames-pull")
    assert letter.reason() == "dead-lettered after 5 delivery attempts"
    # every message was released: read again, and another job's are there too
    assert sorted(reader.for_job("dl-a")) == [3, 5]
    assert sorted(reader.for_job("dl-b")) == [1]
    assert len(reader.read()) == 3 and not reader.truncated  # the two unidentifiable messages are skipped


def test_no_dead_letter_subscription_no_reader() -> None:
    assert DeadLetterReader.from_settings(Settings()) is None


def test_a_dead_lettered_hole_is_placed_at_its_own_timestamp() -> None:
    objects = [ListedObject(name) for i in (0, 1, 4) for name in (frame_objects("p", i, i * STEP_US).image,
                                                                  frame_objects("p", i, i * STEP_US).detections)]
    letter = DeadLetter("p", 3, 3 * STEP_US, 5, None, "m", None)
    timeline = plan_timeline(parse_listing("p", objects), expected=6, dead_letters={3: letter})
    assert [(s.frame_index, s.kind) for s in timeline.slots] == [
        (0, "frame"), (1, "frame"), (2, "missing"), (3, "dead-lettered"), (4, "frame"), (5, "missing")]
    assert timeline.missing == (2, 5) and timeline.dead_lettered == (3,)
    assert timeline.slots[3].timestamp_us == 3 * STEP_US


def test_status_and_wait_report_dead_lettered_apart_from_missing(dead_letter_env, bucket, capsys) -> None:
    seed_job(bucket, "dl-st", [0, 1, 2, 4, 6, 7], published=8, fps=FPS)
    publish_dead_letters(dead_letter_env, [("dl-st", 3), ("other-job", 5)])
    code, stdout, _ = run(capsys, "status", "--job", "dl-st", "--json")
    assert code == EXIT_OK
    data = json.loads(stdout)
    assert {k: data[k] for k in ("processed", "errors", "missing", "missing_count", "dead_lettered_count",
                                 "remaining", "done")} == {
        "processed": 6, "errors": 0, "missing": "5", "missing_count": 1, "dead_lettered_count": 1, "remaining": 1,
        "done": False}  # fmt: skip
    assert data["dead_lettered"][0] | {"message_id": None, "dead_lettered_at": None} == {
        "frame_index": 3, "timestamp_us": 300_000, "delivery_attempts": 5, "source_subscription": "frames-pull",
        "message_id": None, "dead_lettered_at": None}  # fmt: skip
    assert data["dead_letter_subscription"] == dead_letter_env.dead_letter_subscription_path
    code, stdout, _ = run(capsys, "status", "--job", "dl-st")
    assert "missing    1: 5" in stdout
    assert (f"dead-lettered 1: 3 (Pub/Sub gave up on them after 5 delivery attempts; kept in "
            f"{dead_letter_env.dead_letter_subscription_path}; they are not retried unless published again)") in stdout
    code, _, err = run(capsys, "wait", "--job", "dl-st", "--timeout", "0.5", "--poll", "0.1")
    assert code == EXIT_TIMED_OUT  # frame 5 may still come
    assert "1 dead-lettered (3)" in err

    seed_job(bucket, "dl-done", [0, 1, 2, 4], published=5, fps=FPS)
    publish_dead_letters(dead_letter_env, [("dl-done", 3)])
    code, _, err = run(capsys, "wait", "--job", "dl-done", "--timeout", "30")
    assert code == EXIT_DONE_WITH_ERRORS
    assert err.strip().endswith("job dl-done: 4 of 5 processed, 0 errors, 1 dead-lettered (3); done")


def test_reassemble_marks_dead_lettered_frames_in_jsonl_csv_and_report(dead_letter_env, bucket, capsys,
                                                                       tmp_path: Path) -> None:
    seed_job(bucket, "dl-re", [0, 1, 2, 4, 6], published=7, fps=FPS)
    publish_dead_letters(dead_letter_env, [("dl-re", 3)], attempts=5)
    out = tmp_path / "v.mp4"
    jsonl = tmp_path / "d.jsonl"
    code, _, err = run(capsys, "reassemble", "--job", "dl-re", "-o", str(out), "--detections", str(jsonl))
    assert code == EXIT_OK, err
    lines = {record["frame_index"]: record for record in map(json.loads, jsonl.read_text().splitlines())}
    assert {i: line["status"] for i, line in lines.items()} == {
        0: "ok", 1: "ok", 2: "ok", 3: "dead-lettered", 4: "ok", 5: "missing", 6: "ok"}
    assert lines[3]["timestamp_us"] == 300_000 and lines[3]["error"] == "dead-lettered after 5 delivery attempts"
    assert lines[3]["video_frame"] == 3  # held from frame 2, in its place
    report = json.loads((tmp_path / "v.report.json").read_text())
    assert report["missing"] == [5]
    assert [d["frame_index"] for d in report["dead_lettered"]] == [3]
    assert "1 dead-lettered (3: Pub/Sub gave up on them after 5 delivery attempts) held from the previous frame." in err
    code, _, err = run(capsys, "reassemble", "--job", "dl-re", "-o", str(out), "--detections", str(tmp_path / "d.csv"))
    assert code == EXIT_OK, err
    rows = list(csv.DictReader((tmp_path / "d.csv").open()))
    dead = [r for r in rows if r["frame_index"] == "3"]
    assert len(dead) == 1 and dead[0]["status"] == "dead-lettered" and dead[0]["error"] == (
        "dead-lettered after 5 delivery attempts")


def test_without_a_dead_letter_subscription_holes_stay_missing(bucket, capsys) -> None:
    seed_job(bucket, "dl-none", [0, 1, 2, 4], published=5, fps=FPS)
    code, stdout, _ = run(capsys, "status", "--job", "dl-none", "--json")
    data = json.loads(stdout)
    assert (data["missing"], data["dead_lettered_count"], data["dead_letter_subscription"]) == ("3", 0, None)


def test_an_unreadable_dead_letter_subscription_is_said_and_the_rest_goes_on(dead_letter_env, bucket, capsys,
                                                                              monkeypatch) -> None:
    seed_job(bucket, "dl-bad", [0, 2], published=3, fps=FPS)
    monkeypatch.setenv("FRAMES_DEAD_LETTER_SUBSCRIPTION", "no-such-subscription")
    code, stdout, _ = run(capsys, "status", "--job", "dl-bad")
    assert code == EXIT_OK
    assert "missing    1: 1" in stdout
    assert ("dead letters not read: cannot read dead letters from "
            f"projects/{dead_letter_env.project}/subscriptions/no-such-subscription: 404 ") in stdout
