"""The command line: ``python -m producer VIDEO [options]``.

Usage::

    python -m producer ~/.cache/frame-fanout/media/vtest.avi --fps 5 --max-frames 100
    JOB=$(python -m producer video.mp4 | tail -n 1)      # the last stdout line is the job id

stdout: the job id alone (last line). stderr: progress bar, warnings, a one-line summary, or one
line ``error: <what is wrong> — <what to do>``. Exit status: 0 complete; 2 bad usage or input;
1 run-time failure (topic/bucket missing, Pub/Sub or storage unreachable, publishes failed);
130 / 143 stopped by SIGINT / SIGTERM (the job id is still printed: its frames are published and
its manifest says ``stopped``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from framecontract.settings import SettingsError, load_settings
from producer.errors import ProducerError, UsageError
from producer.job import run_job
from producer.options import DEFAULT_JPEG_QUALITY, ProducerOptions
from producer.sources import quiet_decoder_logs

USAGE_HINT = "run 'python -m producer --help' for usage"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as the producer's one ``error:`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, USAGE_HINT)


def build_parser() -> argparse.ArgumentParser:
    """The producer's argument parser."""
    parser = _ArgumentParser(
        prog="python -m producer",
        description="Split a video into timestamped JPEG frames and publish them to Pub/Sub as one job. "
                    "Prints the job id as the last line on stdout.",
        epilog="Settings not given here come from GOOGLE_CLOUD_PROJECT, FRAMES_TOPIC, FRAMES_BUCKET, "
               "PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST, else the local stack's settings file.",
    )
    parser.add_argument("video", help="path of a video file (any container/codec OpenCV's FFmpeg reads)")
    parser.add_argument("--job-id", help="job id, [a-z0-9][a-z0-9-]{0,62}; default: <video name>-<UTC time>-<random>")
    parser.add_argument("--fps", type=float, help="publish at most this many frames per second of video, "
                        "chosen evenly by timestamp (default: every frame)")
    parser.add_argument("--max-frames", type=int, help="stop after publishing this many frames")
    parser.add_argument("--jpeg-quality", type=int, default=DEFAULT_JPEG_QUALITY,
                        help=f"JPEG quality 1..100 (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument("--project", help="Google Cloud project (overrides GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--topic", help="Pub/Sub topic name (overrides FRAMES_TOPIC)")
    parser.add_argument("--bucket", help="GCS bucket for the manifest and large frames (overrides FRAMES_BUCKET)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (and tracebacks of unexpected errors)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the producer; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        quiet_decoder_logs()
    try:
        args = build_parser().parse_args(argv)
        options = ProducerOptions(job_id=args.job_id, fps=args.fps, max_frames=args.max_frames,
                                  jpeg_quality=args.jpeg_quality).validated()
        settings = load_settings({"project": args.project, "topic": args.topic, "bucket": args.bucket})
        settings.apply_emulator_env()
        report = run_job(args.video, options, settings, handle_signals=True, show_progress=not args.no_progress)
    except ProducerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SettingsError as exc:
        print(f"error: {exc} — fix or delete the settings file, or set the environment variables", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"error: interrupted{f' ({exc})' if str(exc) else ''} — run the job again with a new job id",
              file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:
        if verbose:
            logging.getLogger("producer").exception("unexpected error")
        print(f"error: unexpected {type(exc).__name__}: {exc} — rerun with -v for details; "
              "if it persists, report it with the output", file=sys.stderr)
        return 1
    print(report.summary(), file=sys.stderr)
    print(report.job_id, flush=True)
    if report.state == "stopped":
        return 128 + (report.stop_signal or signal.SIGINT)
    return 0
