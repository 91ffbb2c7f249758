"""The ``collector`` console script: status, wait, reassemble, jobs.

Usage::

    collector status --job demo [--json] [--stale-after 60]
    collector wait --job demo [--timeout 600] [--poll 2] [--stale-after 60]
    collector reassemble --job demo [-o demo.mp4|gs://bucket/demo.mp4] [--detections demo.jsonl|demo.csv]
                         [--from T] [--to T] [--partial] [--missing hold|mark|skip] [--track] [--line NAME:x1,y1,x2,y2]
    collector follow --job demo [--max-delay 2] [-o demo.jsonl] [--track] [--line NAME:x1,y1,x2,y2] [--serve HOST:PORT]
    collector jobs [--json]

Settings (bucket, project, emulator) come from :func:`framecontract.settings.load_settings`:
``--bucket``/``--project`` > ``FRAMES_BUCKET``/``GOOGLE_CLOUD_PROJECT``/``STORAGE_EMULATOR_HOST`` >
the local stack's settings file. Errors are one line, ``error: <what>``, and exit 1. When the settings
name a dead-letter subscription (``FRAMES_DEAD_LETTER_SUBSCRIPTION``; the local stack's settings do),
``status``, ``wait`` and ``reassemble`` report the holes whose message was dead-lettered as
``dead-lettered`` (:mod:`collector.deadletters`: read without consuming anything).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from collector.deadletters import DeadLetterError, DeadLetterReader
from collector.errors import CollectorError
from collector.follow_cli import add_analysis_arguments, add_follow_command, check_analysis
from collector.outputs import UploadFailedError, check_destinations, is_gs_uri, prepare_outputs, upload_outputs
from collector.plan import JobStatus, format_ranges, format_status
from collector.reassemble import MISSING_POLICIES, ReassembleOptions, reassemble, summary_paragraph
from collector.status import job_status, list_jobs, wait_for_job
from collector.store import JobStore, checked_job_id
from collector.timerange import TimePoint, check_range, parse_time
from collector.video import DEFAULT_PRESET
from framecontract.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DONE_WITH_ERRORS = 3
EXIT_TIMED_OUT = 4
EXIT_PRODUCER_STALE = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    success (wait: every published frame processed)
  {EXIT_ERROR}    error (one line 'error: ...' on stderr)
  {EXIT_USAGE}    bad command line
  {EXIT_DONE_WITH_ERRORS}    wait: done, but some frames have error records or were dead-lettered
  {EXIT_TIMED_OUT}    wait: timed out before the job was done
  {EXIT_PRODUCER_STALE}    wait: the producer is gone (manifest 'running', no heartbeat for --stale-after)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
"""


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings({"bucket": args.bucket, "project": args.project})
    except SettingsError as exc:
        raise CollectorError(str(exc)) from None


def _store(args: argparse.Namespace) -> JobStore:
    return JobStore.from_settings(_settings(args))


def _dead_letters(args: argparse.Namespace) -> DeadLetterReader | None:
    """The reader of the settings' dead-letter subscription; None (with a warning) when it cannot be made."""
    try:
        return DeadLetterReader.from_settings(_settings(args))
    except DeadLetterError as exc:
        print(f"warning: {exc}; frames without a result are reported as missing", file=sys.stderr)
        return None


def _cmd_status(args: argparse.Namespace) -> int:
    checked_job_id(args.job)
    status = job_status(_store(args), args.job, stale_after_s=args.stale_after, dead_letters=_dead_letters(args))
    print(json.dumps(status.to_dict(), indent=2) if args.json else format_status(status))
    return EXIT_OK


def _cmd_wait(args: argparse.Namespace) -> int:
    checked_job_id(args.job)
    status, outcome = wait_for_job(
        _store(args), args.job, timeout_s=args.timeout, poll_s=args.poll, progress=args.progress,
        stale_after_s=args.stale_after, dead_letters=_dead_letters(args),
    )
    print(_wait_line(status, outcome), file=sys.stderr)
    if outcome == "timed out":
        return EXIT_TIMED_OUT
    if outcome == "stale":
        return EXIT_PRODUCER_STALE
    return EXIT_DONE_WITH_ERRORS if status.errors or status.dead_lettered else EXIT_OK


def _wait_line(status: JobStatus, outcome: str) -> str:
    total = status.published if status.published is not None else f"{status.at_least}+"
    head = f"job {status.job_id}: {status.processed} of {total} processed, {status.errors} errors"
    if status.dead_lettered:
        indices = format_ranges(d.frame_index for d in status.dead_lettered)
        head += f", {len(status.dead_lettered)} dead-lettered ({indices})"
    if status.dead_letter_problem:
        head += f" (dead letters not read: {status.dead_letter_problem})"
    if outcome == "done":
        return f"{head}; done"
    missing = f", not done: {format_ranges(status.missing)}" if status.missing else ""
    if outcome == "stale":
        return (f"{head} (state {status.state}{missing}); {status.silence_line()} — resume a file or image-folder "
                f"job with 'python -m producer SOURCE --resume {status.job_id}'")
    return f"{head} (state {status.state}{missing}); timed out"


def _cmd_reassemble(args: argparse.Namespace) -> int:
    job_id = checked_job_id(args.job)
    problem = check_range(args.time_from, args.time_to) or check_analysis(args)
    if problem:
        args.parser.error(problem)
    video = args.output or f"{job_id}.mp4"
    remote = any(is_gs_uri(x) for x in (video, args.detections) if x is not None)
    scratch = Path(tempfile.mkdtemp(prefix="collector-")) if remote else None
    keep_scratch = False
    try:
        outputs = prepare_outputs(video, args.detections, scratch)
        store = _store(args)
        check_destinations(store, outputs)
        options = ReassembleOptions(
            job_id=job_id,
            partial=args.partial,
            missing=args.missing,
            workers=args.workers,
            window=args.window,
            preset=args.preset,
            progress=args.progress,
            time_from=args.time_from,
            time_to=args.time_to,
            track=args.track or bool(args.lines),
            lines=tuple(args.lines),
        )
        report = reassemble(store, options, outputs, dead_letters=_dead_letters(args))
        upload_outputs(store, outputs)
    except UploadFailedError:
        keep_scratch = True  # the reassembled files are the only copy
        raise
    finally:
        if scratch is not None and not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(summary_paragraph(report), file=sys.stderr)
    print(report.video)
    return EXIT_OK


def _cmd_jobs(args: argparse.Namespace) -> int:
    rows = list_jobs(_store(args), stale_after_s=args.stale_after)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return EXIT_OK
    if not rows:
        print("no jobs", file=sys.stderr)
        return EXIT_OK
    header = f"{'JOB':<40} {'STATE':<11} {'PUBLISHED':>9} {'PROCESSED':>9} {'ERRORS':>6} {'MISSING':>7}"
    print(header)
    for r in rows:
        published = str(r.published) if r.published is not None else "?"
        state = "stale" if r.stale else r.state
        print(f"{r.job_id:<40} {state:<11} {published:>9} {r.processed:>9} {r.errors:>6} {len(r.missing):>7}")
    return EXIT_OK


def _time(text: str) -> TimePoint:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bucket", help="bucket (default: FRAMES_BUCKET, else the local stack's settings)")
    common.add_argument("--project", help="project (default: GOOGLE_CLOUD_PROJECT, else the settings file)")
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("--job", required=True, metavar="ID", help="job id, as printed by the producer")
    liveness = argparse.ArgumentParser(add_help=False)
    liveness.add_argument(
        "--stale-after", type=_positive_float, metavar="S",
        help="call a running job's producer stale after S seconds without a heartbeat (default: 3 of the job's "
        "heartbeat intervals, at least 30 s)",
    )
    bar = argparse.ArgumentParser(add_help=False)
    bar.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )

    parser = argparse.ArgumentParser(
        prog="collector",
        description="Collect a job's results from the bucket: status, wait, reassemble into a video, list jobs.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser(
        "status", parents=[common, job, liveness], help="published / processed / errors / missing, rate and ETA",
        description="Status of one job from its manifest and one listing of jobs/<job>/.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=_cmd_status)

    wait = sub.add_parser(
        "wait", parents=[common, job, bar, liveness], help="wait until every published frame is processed or failed",
        description="Poll until the manifest is final and every published frame has detections or an error record, "
        "or until the producer is stale (exit 5).",
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wait.add_argument("--timeout", type=_positive_float, metavar="S", help="give up after S seconds (exit 4)")
    wait.add_argument("--poll", type=_positive_float, default=2.0, metavar="S", help="seconds between polls (2)")
    wait.set_defaults(func=_cmd_wait)

    re_ = sub.add_parser(
        "reassemble", parents=[common, job, bar], help="results in time order → MP4 + detections JSONL/CSV + report",
        description=(
            "Download the annotated frames in (timestamp, index) order (optionally only --from/--to) and stream "
            "them into an H.264 MP4 at the published frame rate; write detections as JSONL (one line per frame) or "
            "CSV (one row per detection) and a report JSON (<video stem>.report.json) listing missing frames, error "
            "records and duplicates. Outputs may be local paths or gs:// objects."
        ),
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    re_.add_argument(
        "-o", "--output", metavar="OUT.mp4",
        help="video path or gs://BUCKET/NAME.mp4 (uploaded; overwrites) (default: <job>.mp4)",
    )
    re_.add_argument(
        "--detections", metavar="OUT.jsonl|OUT.csv",
        help="detections: JSON Lines, or CSV when the name ends in .csv; local or gs:// "
        "(default: <video stem>.detections.jsonl)",
    )
    re_.add_argument(
        "--from", dest="time_from", type=_time, metavar="T",
        help="first time to include (from <= t): seconds (12.5), [HH:]MM:SS[.fff], or for live jobs an ISO 8601 "
        "time with a zone; offsets count from the stream start (files) or the first frame (live)",
    )
    re_.add_argument("--to", dest="time_to", type=_time, metavar="T", help="end of the range, excluded (t < to)")
    re_.add_argument("--partial", action="store_true", help="reassemble what exists of a job still running")
    re_.add_argument(
        "--missing", choices=MISSING_POLICIES, default="hold",
        help="a missing or failed frame: repeat the previous frame (hold, default), repeat it with a red "
        "'MISSING frame N' banner (mark), or leave it out (skip)",
    )
    re_.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="parallel downloads (default 16; 4 against the storage emulator, which serves one request at a time)",
    )
    re_.add_argument(
        "--window", type=int, default=None, metavar="N",
        help="frames downloaded ahead of the encoder (default max(2 x workers, 32)); memory ~ N x 1.5 x W x H bytes",
    )
    re_.add_argument("--preset", default=DEFAULT_PRESET, help=f"libx264 preset ({DEFAULT_PRESET})")
    add_analysis_arguments(re_)
    re_.set_defaults(func=_cmd_reassemble, parser=re_)

    add_follow_command(sub, [common, job], _store, EXIT_CODES_HELP)

    jobs = sub.add_parser("jobs", parents=[common, liveness], help="every job in the bucket with state and counts")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.set_defaults(func=_cmd_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``collector`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CollectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
