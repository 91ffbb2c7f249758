"""The command line of ``collector follow``, and the ``--track``/``--line`` arguments it shares with ``reassemble``.

Usage (from :func:`collector.cli.build_parser`)::

    add_follow_command(sub, parents=[common, job], store=_store)
    add_analysis_arguments(reassemble_parser)
    problem = check_analysis(args)        # None, or the line for parser.error

Errors are argparse's: ``collector follow: error: argument --max-delay: must be more than 0 seconds, got '0'``
(exit 2); the exact texts are in docs/collector.md and tested in tests/collector/test_follow.py.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.errors import CollectorError
from collector.lines import LineSpec, check_lines, parse_line
from collector.live_page import parse_address

MAX_DELAY_LIMIT_S = 3600.0
EXIT_OK, EXIT_INTERRUPTED = 0, 130


def max_delay(text: str) -> float:
    """``--max-delay S``: seconds, more than 0, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give seconds, more than 0 (e.g. 2 or 0.5)")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text!r}")
    if value > MAX_DELAY_LIMIT_S:
        raise argparse.ArgumentTypeError(f"at most {MAX_DELAY_LIMIT_S:.0f} seconds, got {text!r}")
    return value


def _poll(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 60):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: give seconds, more than 0 and at most 60")
    return value


def _line(text: str) -> LineSpec:
    try:
        return parse_line(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """``--track`` and ``--line NAME:x1,y1,x2,y2`` (repeatable)."""
    parser.add_argument(
        "--track", action="store_true",
        help="track objects (ByteTrack, driven by the frames' timestamps): track ids in the detections and drawn",
    )
    parser.add_argument(
        "--line", dest="lines", action="append", type=_line, default=[], metavar="NAME:x1,y1,x2,y2",
        help="count tracked objects crossing this line (pixels; repeatable; implies --track): in/out totals and "
        "per-minute buckets in the report, drawn on the frames",
    )


def check_analysis(args: argparse.Namespace) -> str | None:
    """The problem with ``--line`` values that only shows across several of them (a name given twice)."""
    return check_lines(args.lines)


def add_follow_command(sub: Any, parents: list[argparse.ArgumentParser],
                       store: Callable[[argparse.Namespace], Any], epilog: str = "") -> argparse.ArgumentParser:
    """The ``follow`` subcommand."""
    parser = sub.add_parser(
        "follow", parents=parents, help="results in timestamp order as they arrive (JSONL), optionally a live page",
        description=(
            "Follow a running job: write each frame's result as one JSON line, in timestamp order, as soon as every "
            "earlier frame is written or has been waited for --max-delay seconds (then it is written as missing). A "
            "result that comes after its frame was given up is counted and logged (late), never written out of "
            "order. Ends when the job's manifest is final and every published frame is written or missing."
        ),
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--max-delay", type=max_delay, default=2.0, metavar="S",
        help="longest wait for a missing frame before it is given up (2)",
    )
    parser.add_argument("--poll", type=_poll, default=1.0, metavar="S",
                        help="seconds between polls of the bucket (1); each poll is 32 list requests + 1 read")
    parser.add_argument("-o", "--output", metavar="OUT.jsonl", help="write the JSON lines here (default: stdout)")
    parser.add_argument("--report", metavar="REPORT.json", help="write counts, missing frames and line counts here "
                        "at the end")
    parser.add_argument(
        "--serve", type=_address, metavar="HOST:PORT",
        help="serve a page with the live annotated frames (MJPEG), line counts, frames/s and delay",
    )
    parser.add_argument("--window", type=int, default=None, metavar="N",
                        help="results held at most while waiting (default 2 x max-delay x frame rate, at least 32)")
    add_analysis_arguments(parser)
    parser.set_defaults(func=lambda args: run_follow(args, store), parser=parser)
    return parser


def run_follow(args: argparse.Namespace, store: Callable[[argparse.Namespace], Any]) -> int:
    """``collector follow``: 0 when the job is done, 130 when interrupted."""
    from collector.follow import FollowOptions, follow, summary_line, write_report
    from collector.store import checked_job_id

    problem = check_analysis(args)
    if problem:
        args.parser.error(problem)
    if args.window is not None and args.window < 1:
        args.parser.error(f"argument --window: must be at least 1, got {args.window}")
    options = FollowOptions(
        job_id=checked_job_id(args.job), max_delay_s=args.max_delay, poll_s=args.poll, track=args.track or bool(
            args.lines), lines=tuple(args.lines), serve=args.serve, window=args.window,
    )
    with contextlib.ExitStack() as stack:
        if args.output:
            try:
                out = stack.enter_context(Path(args.output).open("w", encoding="utf-8"))
            except OSError as exc:
                raise CollectorError(f"cannot write {args.output}: {exc.strerror or exc}") from None
        else:
            out = sys.stdout
        report = follow(store(args), options, out=out, log=sys.stderr)
    if args.report:
        write_report(Path(args.report), report)
    print(summary_line(report), file=sys.stderr)
    return EXIT_INTERRUPTED if report.interrupted else EXIT_OK
