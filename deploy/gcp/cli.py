"""``python -m deploy.gcp``: deploy frame-fanout to Google Cloud, remove it, or print the plan.

Usage::

    python -m deploy.gcp plan --project P --region R            # every gcloud command `up` would run
    python -m deploy.gcp plan --down --project P --region R     # ... and `down`
    python -m deploy.gcp up   --project P --region R [--name N] [--image URI] [--target all] [knobs]
    python -m deploy.gcp up   --project P --region R --mode pull [--instances 2]   # worker pool + pull sub
    python -m deploy.gcp scale --project P --region R --instances 4                # the pool's instance count
    python -m deploy.gcp plan --autoscale --project P --region R  # CREMA config + set-up (printed only)
    python -m deploy.gcp down --project P --region R [--delete-data] [--yes]
    python -m deploy.gcp down --project P --region R --mode push --yes             # one delivery mode only
    python -m deploy.gcp decode --project P --region R --video gs://B/long.mp4 --tasks 40 [--fps 5]
                                        # a Cloud Run job whose tasks are the video's chunks: created, run, deleted
    python -m deploy.gcp plan --project P --region R --video gs://B/long.mp4 --tasks 40   # ... its commands

See docs/deploy.md for what is created and every flag.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

from deploy.gcp.commands import (
    FRONTDOOR_URL,
    PROJECT_NUMBER,
    WORKER_URL,
    Action,
    Plan,
    build_plan,
    client_env,
    render_plan,
)
from deploy.gcp.decode import DecodeOptions, decode_plan
from deploy.gcp.options import ACCESS, INGRESS, MODES, TARGETS, DeployOptions, OptionsError
from deploy.gcp.runner import REPO_ROOT, DeployError, execute

D = DeployOptions(project="p", region="r")  # only for the defaults in --help
DD = DecodeOptions(video="gs://b/v")


def git_tag() -> str:
    """Image tag for a Cloud Build build: the git commit (``-dirty`` with local changes), else a UTC time."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        out = ""
    return out or time.strftime("build-%Y%m%dt%H%M%S", time.gmtime())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deploy.gcp", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("action", choices=("up", "down", "plan", "scale", "decode"))
    p.add_argument("--down", action="store_true", help="plan: show the commands of `down` instead of `up`")
    p.add_argument("--autoscale", action="store_true",
                   help="plan: the CREMA configuration and set-up commands that autoscale the worker pool on its "
                        "backlog (printed only, never run: they grant project-wide roles; docs/deploy.md)")
    p.add_argument("--yes", action="store_true", help="down: do not ask for confirmation")
    where = p.add_argument_group("where")
    where.add_argument("--project", required=True, help="Google Cloud project id")
    where.add_argument("--region", required=True, help="region of the services, repository and (default) bucket")
    where.add_argument("--name", default=D.name, help="deployment name; prefixes every resource")
    where.add_argument("--target", choices=TARGETS, default=D.target,
                       help="pipeline (bucket, topics, workers, subscription), frontdoor (Locust service), all; "
                            "down: frontdoor removes only the front door, anything else removes everything")
    where.add_argument("--mode", choices=MODES, default=None,
                       help="push: a Cloud Run service behind a push subscription, scales to zero (up's default); "
                            "pull: a Cloud Run worker pool of python -m worker.pull on an exactly-once pull "
                            "subscription, a fixed instance count (scale's); down --mode M removes only M's "
                            "delivery (subscription, workers, their identities), to switch modes")
    where.add_argument("--image", help="deploy this image instead of building deploy/Dockerfile with Cloud Build")
    where.add_argument("--tag", help="tag of the image Cloud Build builds (default: the git commit)")
    data = p.add_argument_group("data")
    data.add_argument("--bucket", help="bucket name (default: PROJECT-NAME)")
    data.add_argument("--bucket-location", help="bucket location (default: --region)")
    data.add_argument("--job-data-days", type=int, default=D.job_data_days,
                      help="lifecycle: delete jobs/ objects this many days old (0: keep)")
    data.add_argument("--delete-data", action="store_true", help="down: also delete the bucket and all its objects")
    run = p.add_argument_group("Cloud Run (services: push worker, front door; --cpu, --memory, --processes also "
                               "the worker pool)")
    run.add_argument("--concurrency", type=int, default=D.concurrency, help="requests per instance at once")
    run.add_argument("--min-instances", type=int, default=D.min_instances, help="instances kept warm")
    run.add_argument("--max-instances", type=int, default=D.max_instances, help="autoscaling ceiling")
    run.add_argument("--cpu", default=D.cpu, help="vCPUs per instance (0.08-1, 1, 2, 4, 6, 8)")
    run.add_argument("--memory", default=D.memory, help="memory per instance, e.g. 1Gi")
    run.add_argument("--cpu-throttling", action=argparse.BooleanOptionalAction, default=D.cpu_throttling,
                     help="CPU only while requests run (request-based billing); --no-cpu-throttling: always allocated")
    run.add_argument("--cpu-boost", action=argparse.BooleanOptionalAction, default=D.cpu_boost,
                     help="startup CPU boost")
    run.add_argument("--timeout", type=int, default=D.timeout, help="request timeout, seconds")
    run.add_argument("--ingress", choices=INGRESS, default=D.ingress, help="who may reach the services' URLs")
    run.add_argument("--processes", type=int,
                     help="worker processes per instance, gunicorn's or worker.pull's (default: one per whole vCPU)")
    run.add_argument("--max-in-flight", type=int,
                     help="requests each process admits before answering 429 (default: concurrency / processes)")
    run.add_argument("--startup-delay", type=float, default=D.startup_delay,
                     help="simulated extra initialisation, seconds (the study's slow-start experiment)")
    pool = p.add_argument_group("pull workers (Cloud Run worker pool, --mode pull)")
    pool.add_argument("--instances", type=int,
                      help="up: the worker pool's instance count (default 1); scale: the new count (0 stops it)")
    pool.add_argument("--max-held", type=int, help="messages each pull process holds (PULL_MAX_HELD; default 3)")
    pool.add_argument("--autoscale-min", type=int, default=D.autoscale_min,
                      help="plan --autoscale: fewest instances (0: none while the subscription is empty)")
    pool.add_argument("--autoscale-max", type=int, default=D.autoscale_max, help="plan --autoscale: most instances")
    pool.add_argument("--autoscale-backlog", type=int,
                      help="plan --autoscale: undelivered frames per instance to aim for "
                           "(default 1000 per process: about a minute of work)")
    pubsub = p.add_argument_group("Pub/Sub subscription")
    pubsub.add_argument("--ack-deadline", type=int, default=None,
                        help="seconds (10-600); default 600 for push (also the push request timeout), "
                             "60 for pull (the client extends leases; a lost instance's frames return sooner)")
    pubsub.add_argument("--max-delivery-attempts", type=int, default=D.max_delivery_attempts,
                        help="then the frame goes to the dead-letter topic (5-100)")
    pubsub.add_argument("--min-retry-delay", type=int, default=D.min_retry_delay, help="retry backoff, seconds")
    pubsub.add_argument("--max-retry-delay", type=int, default=D.max_retry_delay, help="retry backoff cap, seconds")
    pubsub.add_argument("--dead-letter-retention-days", type=int, default=D.dead_letter_retention_days,
                        help="how long the dead-letter subscription keeps messages (1-31)")
    decode = p.add_argument_group("a video in Cloud Storage published by a Cloud Run job (decode; plan --video shows "
                                  "it); --cpu and --memory are each task's")
    decode.add_argument("--video", metavar="gs://BUCKET/OBJECT", help="the video to publish")
    decode.add_argument("--tasks", type=int, default=DD.tasks, help="tasks of the job = chunks of the video")
    decode.add_argument("--parallelism", type=int, help="tasks at once (default: all, as quota allows)")
    decode.add_argument("--job-id", help="the producer job's id (default: from the object's name and the time)")
    decode.add_argument("--resume", metavar="JOB", help="continue job JOB (already planned): publish what is missing")
    decode.add_argument("--fps", type=float, help="publish at most this many frames per second of video")
    decode.add_argument("--max-frames", type=int, help="stop after this many frames")
    decode.add_argument("--duration", type=float, help="stop after this many seconds of video")
    decode.add_argument("--max-side", type=int, help="scale frames down so the longer side is at most this")
    decode.add_argument("--jpeg-quality", type=int, help="JPEG quality 1..100 (default 90)")
    decode.add_argument("--task-timeout", type=int, default=DD.task_timeout, help="seconds per task attempt")
    decode.add_argument("--max-retries", type=int, default=DD.max_retries, help="attempts per task after the first")
    decode.add_argument("--producer-image", help="run this image instead of building deploy/Dockerfile.producer")
    front = p.add_argument_group("front door (Locust)")
    front.add_argument("--frontdoor-access", choices=ACCESS, default=D.frontdoor_access,
                       help="public: anyone may POST /predict; iam: only --frontdoor-invoker members")
    front.add_argument("--frontdoor-invoker", action="append", default=[], metavar="MEMBER",
                       help="user:EMAIL or serviceAccount:EMAIL allowed to call an iam front door (repeatable)")
    return p


def options_from_args(args: argparse.Namespace, tag: str | None = None) -> DeployOptions:
    """The parsed flags as :class:`DeployOptions` (``tag``: default image tag when building)."""
    mode = args.mode
    if mode is None and (args.action == "scale" or getattr(args, "autoscale", False)):
        mode = "pull"
    return DeployOptions(
        project=args.project, region=args.region, name=args.name, target=args.target, mode=mode, image=args.image,
        tag=args.tag or tag or "latest", bucket=args.bucket, bucket_location=args.bucket_location,
        job_data_days=args.job_data_days, delete_data=args.delete_data,
        concurrency=args.concurrency, min_instances=args.min_instances, max_instances=args.max_instances,
        cpu=args.cpu, memory=args.memory, cpu_throttling=args.cpu_throttling, cpu_boost=args.cpu_boost,
        timeout=args.timeout, ingress=args.ingress, processes=args.processes, max_in_flight=args.max_in_flight,
        startup_delay=args.startup_delay, ack_deadline=args.ack_deadline,
        max_delivery_attempts=args.max_delivery_attempts, min_retry_delay=args.min_retry_delay,
        max_retry_delay=args.max_retry_delay, dead_letter_retention_days=args.dead_letter_retention_days,
        frontdoor_access=args.frontdoor_access, frontdoor_invokers=tuple(args.frontdoor_invoker),
        instances=args.instances, max_held=args.max_held, autoscale_min=args.autoscale_min,
        autoscale_max=args.autoscale_max, autoscale_backlog=args.autoscale_backlog,
    )


def confirm_down(options: DeployOptions, assume_yes: bool) -> bool:
    """Ask before deleting (a terminal is required unless --yes)."""
    if assume_yes:
        return True
    data = " AND THE BUCKET WITH ALL ITS DATA" if options.delete_data else ""
    what = f"every resource of this deployment{data}"
    if options.target == "frontdoor":
        what = "the front door"
    elif options.mode is not None:
        what = f"the {options.mode} delivery (its subscription with any queued frames, its workers and identities)"
    if not sys.stdin.isatty():
        raise DeployError(f"down would delete {what}; pass --yes to confirm when not at a terminal")
    answer = input(f"Delete {what} ({options.name} in {options.project})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def report_up(values: dict[str, str], plan: Plan) -> None:
    for key, label in ((WORKER_URL, "worker"), (FRONTDOOR_URL, "front door")):
        if key in values:
            print(f"{label}: {values[key]}")
    o = plan.options
    if o.deploys_pipeline and o.delivery == "pull":
        print(f"worker pool: {plan.names.worker_pool}, {o.instance_count} instance(s) of {o.process_count} "
              f"process(es); resize with: python -m deploy.gcp scale --project {o.project} --region {o.region} "
              "--instances N")
    print("export " + " ".join(f"{k}={v}" for k, v in client_env(plan).items()))


def decode_options(args: argparse.Namespace) -> DecodeOptions | None:
    """``decode`` (and ``plan --video``): what to publish; ``None`` when no video is given to ``plan``."""
    if args.action not in ("decode", "plan") or (args.action == "plan" and args.video is None):
        return None
    if args.video is None:
        raise OptionsError("decode needs --video gs://BUCKET/OBJECT")
    job_id = args.job_id
    if job_id is None and args.resume is None:  # fixed once: the plan and the report name the same job
        job_id = DecodeOptions(video=args.video).job
    return DecodeOptions(video=args.video, tasks=args.tasks, parallelism=args.parallelism, job_id=job_id,
                         resume=args.resume, fps=args.fps, max_frames=args.max_frames, duration=args.duration,
                         max_side=args.max_side, jpeg_quality=args.jpeg_quality, task_timeout=args.task_timeout,
                         max_retries=args.max_retries, producer_image=args.producer_image)


def plan_action(args: argparse.Namespace) -> Action:
    """Which plan the command line asks for."""
    if args.action == "decode" or (args.action == "plan" and args.video is not None):
        if args.down or args.autoscale:
            raise OptionsError("--video shows the decode job's plan: without --down or --autoscale")
        return "decode"
    if args.action in ("up", "down", "scale"):
        if args.autoscale:
            raise OptionsError("--autoscale only applies to plan (the CREMA set-up is printed, never run)")
        return args.action
    if args.autoscale:
        return "autoscale-down" if args.down else "autoscale"
    return "down" if args.down else "up"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        needs_tag = args.image is None and args.tag is None and args.action in ("up", "plan", "decode")
        options = options_from_args(args, git_tag() if needs_tag else None)
        action = plan_action(args)
        decode = decode_options(args)
        plan = decode_plan(options, decode) if decode is not None else build_plan(action, options)
        if args.action == "plan":
            sys.stdout.write(render_plan(plan))
            return 0
        if action == "down" and not confirm_down(options, args.yes):
            print("nothing deleted")
            return 1
        values = execute(plan, say=lambda line: print(line, flush=True))
        if decode is not None:
            print(f"job {decode.job} published by a Cloud Run job (now deleted); collector status --job {decode.job}")
        elif action == "up":
            values.pop(PROJECT_NUMBER, None)
            report_up(values, plan)
    except (OptionsError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to finish (every step is idempotent)", file=sys.stderr)
        return 130
    return 0
