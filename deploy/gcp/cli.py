"""``python -m deploy.gcp``: deploy frame-fanout to Google Cloud, remove it, or print the plan.

Usage::

    python -m deploy.gcp plan --project P --region R            # every gcloud command `up` would run
    python -m deploy.gcp plan --down --project P --region R     # ... and `down`
    python -m deploy.gcp up   --project P --region R [--name N] [--image URI] [--target all] [knobs]
    python -m deploy.gcp down --project P --region R [--delete-data] [--yes]

See docs/deploy.md for what is created and every flag.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

from deploy.gcp.commands import FRONTDOOR_URL, PROJECT_NUMBER, WORKER_URL, build_plan, client_env, render_plan
from deploy.gcp.options import ACCESS, INGRESS, TARGETS, DeployOptions, OptionsError
from deploy.gcp.runner import REPO_ROOT, DeployError, execute

D = DeployOptions(project="p", region="r")  # only for the defaults in --help


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
    p.add_argument("action", choices=("up", "down", "plan"))
    p.add_argument("--down", action="store_true", help="plan: show the commands of `down` instead of `up`")
    p.add_argument("--yes", action="store_true", help="down: do not ask for confirmation")
    where = p.add_argument_group("where")
    where.add_argument("--project", required=True, help="Google Cloud project id")
    where.add_argument("--region", required=True, help="region of the services, repository and (default) bucket")
    where.add_argument("--name", default=D.name, help="deployment name; prefixes every resource")
    where.add_argument("--target", choices=TARGETS, default=D.target,
                       help="pipeline (bucket, topics, worker, push subscription), frontdoor (Locust service), all; "
                            "down: frontdoor removes only the front door, anything else removes everything")
    where.add_argument("--image", help="deploy this image instead of building deploy/Dockerfile with Cloud Build")
    where.add_argument("--tag", help="tag of the image Cloud Build builds (default: the git commit)")
    data = p.add_argument_group("data")
    data.add_argument("--bucket", help="bucket name (default: PROJECT-NAME)")
    data.add_argument("--bucket-location", help="bucket location (default: --region)")
    data.add_argument("--job-data-days", type=int, default=D.job_data_days,
                      help="lifecycle: delete jobs/ objects this many days old (0: keep)")
    data.add_argument("--delete-data", action="store_true", help="down: also delete the bucket and all its objects")
    run = p.add_argument_group("Cloud Run (both services)")
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
    run.add_argument("--processes", type=int, help="gunicorn processes per instance (default: one per whole vCPU)")
    run.add_argument("--max-in-flight", type=int,
                     help="requests each process admits before answering 429 (default: concurrency / processes)")
    run.add_argument("--startup-delay", type=float, default=D.startup_delay,
                     help="simulated extra initialisation, seconds (the study's slow-start experiment)")
    pubsub = p.add_argument_group("Pub/Sub push subscription")
    pubsub.add_argument("--ack-deadline", type=int, default=D.ack_deadline,
                        help="seconds; also the push request timeout (10-600)")
    pubsub.add_argument("--max-delivery-attempts", type=int, default=D.max_delivery_attempts,
                        help="then the frame goes to the dead-letter topic (5-100)")
    pubsub.add_argument("--min-retry-delay", type=int, default=D.min_retry_delay, help="retry backoff, seconds")
    pubsub.add_argument("--max-retry-delay", type=int, default=D.max_retry_delay, help="retry backoff cap, seconds")
    pubsub.add_argument("--dead-letter-retention-days", type=int, default=D.dead_letter_retention_days,
                        help="how long the dead-letter subscription keeps messages (1-31)")
    front = p.add_argument_group("front door (Locust)")
    front.add_argument("--frontdoor-access", choices=ACCESS, default=D.frontdoor_access,
                       help="public: anyone may POST /predict; iam: only --frontdoor-invoker members")
    front.add_argument("--frontdoor-invoker", action="append", default=[], metavar="MEMBER",
                       help="user:EMAIL or serviceAccount:EMAIL allowed to call an iam front door (repeatable)")
    return p


def options_from_args(args: argparse.Namespace, tag: str | None = None) -> DeployOptions:
    """The parsed flags as :class:`DeployOptions` (``tag``: default image tag when building)."""
    return DeployOptions(
        project=args.project, region=args.region, name=args.name, target=args.target, image=args.image,
        tag=args.tag or tag or "latest", bucket=args.bucket, bucket_location=args.bucket_location,
        job_data_days=args.job_data_days, delete_data=args.delete_data,
        concurrency=args.concurrency, min_instances=args.min_instances, max_instances=args.max_instances,
        cpu=args.cpu, memory=args.memory, cpu_throttling=args.cpu_throttling, cpu_boost=args.cpu_boost,
        timeout=args.timeout, ingress=args.ingress, processes=args.processes, max_in_flight=args.max_in_flight,
        startup_delay=args.startup_delay, ack_deadline=args.ack_deadline,
        max_delivery_attempts=args.max_delivery_attempts, min_retry_delay=args.min_retry_delay,
        max_retry_delay=args.max_retry_delay, dead_letter_retention_days=args.dead_letter_retention_days,
        frontdoor_access=args.frontdoor_access, frontdoor_invokers=tuple(args.frontdoor_invoker),
    )


def confirm_down(options: DeployOptions, assume_yes: bool) -> bool:
    """Ask before deleting (a terminal is required unless --yes)."""
    if assume_yes:
        return True
    data = " AND THE BUCKET WITH ALL ITS DATA" if options.delete_data else ""
    what = "the front door" if options.target == "frontdoor" else f"every resource of this deployment{data}"
    if not sys.stdin.isatty():
        raise DeployError(f"down would delete {what}; pass --yes to confirm when not at a terminal")
    answer = input(f"Delete {what} ({options.name} in {options.project})? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def report_up(values: dict[str, str], plan_env: dict[str, str]) -> None:
    for key, label in ((WORKER_URL, "worker"), (FRONTDOOR_URL, "front door")):
        if key in values:
            print(f"{label}: {values[key]}")
    print("export " + " ".join(f"{k}={v}" for k, v in plan_env.items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        needs_tag = args.image is None and args.tag is None and args.action != "down"
        options = options_from_args(args, git_tag() if needs_tag else None)
        action = "down" if args.action == "down" or (args.action == "plan" and args.down) else "up"
        plan = build_plan(action, options)
        if args.action == "plan":
            sys.stdout.write(render_plan(plan))
            return 0
        if action == "down" and not confirm_down(options, args.yes):
            print("nothing deleted")
            return 1
        values = execute(plan, say=lambda line: print(line, flush=True))
        if action == "up":
            values.pop(PROJECT_NUMBER, None)
            report_up(values, client_env(plan))
    except (OptionsError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to finish (every step is idempotent)", file=sys.stderr)
        return 130
    return 0
