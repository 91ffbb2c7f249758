"""The command line: ``python -m producer SOURCE [options]``.

Usage::

    python -m producer ~/.cache/frame-fanout/media/vtest.avi --fps 5 --max-frames 100
    python -m producer frames/ --image-fps 10                 # a folder of images, sorted by name
    python -m producer 'rtsp://user:pass@cam/stream1' --duration 600 --fps 2 --max-side 960
    CAM_PASSWORD=... python -m producer 'rtsp://user:{CAM_PASSWORD}@cam/stream1'   # not visible in ps
    python -m producer http://cam/video.mjpg --latest-frame   # MJPEG over HTTP; 0 = webcam 0
    JOB=$(python -m producer video.mp4 | tail -n 1)      # the last stdout line is the job id
    python -m producer video.mp4 --resume "$JOB"         # its producer died or was stopped: continue it
    python -m producer long.mp4 --parallel 8             # 8 processes, chunk by chunk (default: one per core)
    python -m producer gs://bucket/long.mp4              # an object in Cloud Storage, read by byte range

stdout: the job id alone (last line). stderr: progress bar, warnings, a one-line summary, or one
line ``error: <what is wrong> — <what to do>``. Exit status: 0 complete; 2 bad usage or input;
1 run-time failure (topic/bucket missing, Pub/Sub, storage or the stream unreachable, publishes failed);
130 / 143 stopped by SIGINT / SIGTERM (the job id is still printed: its frames are published and
its manifest says ``stopped``). Credentials in a stream URL are replaced by ``***`` in every line
the producer writes (errors, warnings, logs) and in the manifest; ``{NAME}`` in a URL is replaced
by the environment variable NAME (percent-encoded), so a password need not be on the command line.

``--resume JOB`` continues a file or image-folder job whose producer was killed, stopped or failed,
from the first frame Pub/Sub had not confirmed, with the job's own options (the options that shape
frames cannot be given with it); see :mod:`producer.resume`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from framecontract.clients import NoCredentialsError
from framecontract.manifest import DEFAULT_HEARTBEAT_INTERVAL_S, STALE_AFTER_HEARTBEATS, STALE_AFTER_MIN_S
from framecontract.settings import SettingsError, load_settings
from producer.chunkedjob import DEFAULT_PARALLEL_MIN_FRAMES, default_processes
from producer.errors import ProducerError, UsageError
from producer.job import resume_job, run_job
from producer.options import (
    DEFAULT_FRAME_TIMEOUT_S,
    DEFAULT_IMAGE_FPS,
    DEFAULT_JPEG_QUALITY,
    DEFAULT_RECONNECT_TIMEOUT_S,
    ProducerOptions,
)
from producer.redact import MissingVariableError, expand_env_placeholders, scrub, url_secrets
from producer.sources import quiet_decoder_logs

USAGE_HINT = "run 'python -m producer --help' for usage"

JOB_SHAPING = ("job_id", "fps", "max_frames", "duration", "policy", "max_side", "resize", "jpeg_quality", "image_fps",
               "reconnect_timeout")
"""Options that decide which frames a job publishes and how: a resumed job keeps its own."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as the producer's one ``error:`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, USAGE_HINT)


def build_parser() -> argparse.ArgumentParser:
    """The producer's argument parser."""
    parser = _ArgumentParser(
        prog="python -m producer",
        description="Split a video, a folder of images or a live stream into timestamped JPEG frames and "
                    "publish them to Pub/Sub as one job. Prints the job id as the last line on stdout.",
        epilog="Settings not given here come from GOOGLE_CLOUD_PROJECT, FRAMES_TOPIC, FRAMES_BUCKET, "
               "PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST, else the local stack's settings file.",
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="a video file (any container/codec OpenCV's FFmpeg reads), a folder of images, an "
                             "rtsp:// or http(s):// URL (MJPEG or anything FFmpeg reads), or a webcam index (0); "
                             "{NAME} in a URL is replaced by the environment variable NAME, e.g. "
                             "'rtsp://admin:{CAM_PASSWORD}@cam/stream1', so that no password shows in ps")
    parser.add_argument("--job-id", help="job id, [a-z0-9][a-z0-9-]{0,62}; default: <source name>-<UTC time>-<random>")
    parser.add_argument("--fps", type=float, help="publish at most this many frames per second of video, "
                        "chosen evenly by timestamp (default: every frame)")
    parser.add_argument("--max-frames", type=int, help="stop after publishing this many frames")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="stop after S seconds: of video for files, of wall-clock time for live sources")
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--every-frame", dest="policy", action="store_const", const="every-frame",
                        help="never drop a frame; slow publishing slows reading (default for files and folders)")
    policy.add_argument("--latest-frame", dest="policy", action="store_const", const="latest-frame",
                        help="when publishing falls behind, drop the oldest unpublished frames and count them "
                             "(default for live sources)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--max-side", type=int, metavar="N", help="scale frames down so the longer side is at most N")
    size.add_argument("--resize", metavar="WxH", help="scale every frame to exactly W x H pixels, e.g. 640x480")
    parser.add_argument("--jpeg-quality", type=int,
                        help=f"JPEG quality 1..100 (default {DEFAULT_JPEG_QUALITY})")
    parser.add_argument("--image-fps", type=float,
                        help=f"frame rate of a folder of images (default {DEFAULT_IMAGE_FPS:g})")
    parser.add_argument("--reconnect-timeout", type=float, metavar="S",
                        help="give up on a live source unreachable for S seconds (default "
                             f"{DEFAULT_RECONNECT_TIMEOUT_S:g}; 0 never reconnects; inf retries forever)")
    parser.add_argument("--frame-timeout", type=float, metavar="S",
                        help="a live source that delivers no whole frame for S seconds (stalled, or trickling "
                             f"bytes) is reconnected (default {DEFAULT_FRAME_TIMEOUT_S:g})")
    parser.add_argument("--heartbeat", type=float, metavar="S",
                        help="rewrite the running manifest with the progress Pub/Sub confirmed every S seconds "
                             f"(default {DEFAULT_HEARTBEAT_INTERVAL_S:g}; with --resume, the job's)")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="publish a video file in keyframe-aligned chunks by N processes, exactly as one process "
                             f"would (default: one per core, here {default_processes()}, for files of "
                             f"{DEFAULT_PARALLEL_MIN_FRAMES:,} frames or more; 1: one process; live sources and "
                             "folders use one)")
    parser.add_argument("--resume", metavar="JOB",
                        help="continue job JOB (a video file or folder of images whose producer died, stopped or "
                             "failed) from the first frame not confirmed, with the job's own options; SOURCE must be "
                             "the same file or folder")
    parser.add_argument("--stale-after", type=_seconds, metavar="S",
                        help="with --resume: a running job's producer counts as gone after S seconds without a "
                             f"heartbeat (default {STALE_AFTER_HEARTBEATS} heartbeats, at least "
                             f"{STALE_AFTER_MIN_S:g} s)")
    parser.add_argument("--project", help="Google Cloud project (overrides GOOGLE_CLOUD_PROJECT)")
    parser.add_argument("--topic", help="Pub/Sub topic name (overrides FRAMES_TOPIC)")
    parser.add_argument("--bucket", help="GCS bucket for the manifest and large frames (overrides FRAMES_BUCKET)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (and tracebacks of unexpected errors)")
    return parser


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def check_resume_arguments(args: argparse.Namespace) -> None:
    """:class:`UsageError` for an option that cannot go with (or without) ``--resume`` (pure)."""
    if args.resume is None:
        if args.stale_after is not None:
            raise UsageError("--stale-after goes with --resume", "omit it, or add --resume JOB")
        return
    for name in JOB_SHAPING:
        if getattr(args, name) is not None:
            flag = "--every-frame/--latest-frame" if name == "policy" else "--" + name.replace("_", "-")
            raise UsageError(f"{flag} cannot be used with --resume: a resumed job keeps the options it started with",
                             f"omit {flag}")


class SecretsFilter(logging.Filter):
    """Replaces the given secrets by ``***`` in every log record (message and traceback text)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = scrub(record.getMessage(), self.secrets), ()
            if record.exc_info:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info), self.secrets)
                record.exc_info = None
        return True


def given_options(args: argparse.Namespace) -> dict[str, object]:
    """The :class:`ProducerOptions` given on the command line (the others keep their defaults)."""
    given = {name: getattr(args, name) for name in JOB_SHAPING}
    given["heartbeat_interval"] = args.heartbeat
    given["frame_timeout"] = args.frame_timeout
    given["parallel"] = args.parallel
    return {name: value for name, value in given.items() if value is not None}


def _source_argument(argv: list[str]) -> str | None:
    """The SOURCE argument, found without parsing (so that even a usage error can be scrubbed)."""
    urls = [a for a in argv if "://" in a]
    return urls[0] if urls else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the producer; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    url = _source_argument(argv)
    try:
        expanded = expand_env_placeholders(url) if url else None
    except MissingVariableError as exc:
        print(f"error: {exc} — export it, or write the value into the URL", file=sys.stderr)
        return UsageError.exit_code
    secrets = url_secrets(expanded) if expanded else ()
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(SecretsFilter(secrets))
    if not verbose or secrets:  # FFmpeg's own log lines may quote the URL
        quiet_decoder_logs()

    def fail(line: str, status: int) -> int:
        print(scrub(line, secrets), file=sys.stderr)
        return status

    try:
        args = build_parser().parse_args(argv)
        check_resume_arguments(args)
        source = expanded if expanded is not None and args.source == url else args.source
        if args.resume is not None:
            settings = load_settings({"project": args.project, "topic": args.topic, "bucket": args.bucket})
            if args.parallel is not None:
                ProducerOptions(parallel=args.parallel).validated()  # --parallel 0 is refused here too
            report = resume_job(source, args.resume, settings, heartbeat_interval=args.heartbeat,
                                stale_after_s=args.stale_after, handle_signals=True, show_progress=not args.no_progress,
                                parallel=args.parallel)
        else:
            options = ProducerOptions(**given_options(args)).validated()
            settings = load_settings({"project": args.project, "topic": args.topic, "bucket": args.bucket})
            report = run_job(source, options, settings, handle_signals=True, show_progress=not args.no_progress,
                             default_parallel=default_processes())
    except ProducerError as exc:
        return fail(f"error: {exc}", exc.exit_code)
    except SettingsError as exc:
        return fail(f"error: {exc} — fix or delete the settings file, or set the environment variables", 2)
    except NoCredentialsError as exc:
        return fail(f"error: {exc}", 1)
    except KeyboardInterrupt as exc:
        return fail(f"error: interrupted{f' ({exc})' if str(exc) else ''} — run the job again with a new job id",
                    128 + signal.SIGINT)
    except Exception as exc:
        if verbose:
            logging.getLogger("producer").exception("unexpected error")
        return fail(f"error: unexpected {type(exc).__name__}: {exc} — rerun with -v for details; "
                    "if it persists, report it with the output", 1)
    print(report.summary(), file=sys.stderr)
    print(report.job_id, flush=True)
    if report.state == "stopped":
        return 128 + (report.stop_signal or signal.SIGINT)
    return 0
