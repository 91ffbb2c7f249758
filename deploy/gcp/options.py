"""What a Google Cloud deployment looks like: options, their defaults and checks, derived names (pure).

Usage::

    options = DeployOptions(project="my-proj", region="europe-west1", tag="abc123")
    validate(options)                       # OptionsError("...") on the first problem
    names = Names.of(options)               # bucket, topics, subscriptions, services, accounts, image

Two delivery modes (``mode``): ``push`` (the default: a Cloud Run service behind a push subscription,
scales to zero) and ``pull`` (a Cloud Run worker pool of ``python -m worker.pull`` on a pull subscription
with exactly-once delivery; a fixed instance count). Defaults are the study's winning Cloud Run setting
(1 vCPU, concurrency 30, min 5, max 100 instances) and Cloud Run's advice for Pub/Sub push (ack deadline
= request timeout = 600 s); a pull subscription's ack deadline is 60 s (the client extends leases).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Target = Literal["pipeline", "frontdoor", "all"]
Access = Literal["iam", "public"]
Mode = Literal["push", "pull"]
TARGETS: tuple[Target, ...] = ("pipeline", "frontdoor", "all")
ACCESS: tuple[Access, ...] = ("iam", "public")
MODES: tuple[Mode, ...] = ("push", "pull")
INGRESS = ("all", "internal", "internal-and-cloud-load-balancing")

FULL_CPUS = (1, 2, 4, 6, 8)
MIN_FRACTIONAL_CPU = 0.08
MEMORY_PATTERN = re.compile(r"^(\d+)(Mi|Gi)$")
# (min vCPU, min MiB) Cloud Run requires for a given CPU; (max MiB, min vCPU) for a given memory.
MIN_MEMORY_FOR_CPU = {4: 2048, 6: 4096, 8: 4096}
MIN_CPU_FOR_MEMORY = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
MAX_MEMORY_MIB = 32 * 1024

PUSH_ACK_DEADLINE_S = 600
"""Push: the ack deadline is also the push request's timeout; Cloud Run's docs say 600 s."""
PULL_ACK_DEADLINE_S = 60
"""Pull: the client extends the leases of held messages, so the deadline only decides how soon a lost
instance's messages come back (exactly-once delivery extends leases by at least 60 s anyway)."""
DEFAULT_INSTANCES = 1
DEFAULT_MAX_HELD = 3
"""worker.pull's own default: one frame in inference, one being stored, one ready."""
PULL_GRACE_S = 8
"""Seconds a pull worker takes to finish after SIGTERM; Cloud Run kills 10 s after it."""
MAX_POOL_INSTANCES = 1000
FRAMES_PER_PROCESS_MINUTE = 1000
"""Default backlog target per pull process for the autoscaler: about a minute of NanoDet at the
~16 frames/s per core measured by ``python -m worker.benchmark`` (docs/worker.md)."""

PROJECT_PATTERN = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
REGION_PATTERN = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
NAME_PATTERN = re.compile(r"^[a-z](?:[a-z0-9-]{0,21}[a-z0-9])?$")
BUCKET_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MEMBER_PATTERN = re.compile(
    r"^(?:(?:user|serviceAccount|group|domain|principal|principalSet):\S+|allAuthenticatedUsers)$")


class OptionsError(ValueError):
    """Deployment options that Google Cloud would reject or that contradict each other."""


@dataclass(frozen=True)
class DeployOptions:
    """Every knob of ``python -m deploy.gcp``; the CLI flags map one to one onto these fields."""

    project: str
    region: str
    name: str = "frame-fanout"
    target: Target = "pipeline"
    mode: Mode | None = None
    """``push`` or ``pull``. ``None``: ``up`` deploys push, ``scale`` means pull, ``down`` removes both
    (``down`` with a mode removes only that mode's delivery, to switch modes)."""
    image: str | None = None
    """Deploy this image; ``None``: build deploy/Dockerfile with Cloud Build into Artifact Registry."""
    tag: str = "latest"
    """Tag of the image built by Cloud Build (the CLI uses the git commit)."""
    bucket: str | None = None
    """Default ``<project>-<name>``."""
    bucket_location: str | None = None
    """Default: the region."""
    job_data_days: int = 30
    """Lifecycle rule: delete objects under ``jobs/`` this many days old; 0 = keep them."""
    delete_data: bool = False
    """``down`` deletes the bucket and everything in it."""
    # Cloud Run (the study's knobs)
    concurrency: int = 30
    min_instances: int = 5
    max_instances: int = 100
    cpu: str = "1"
    memory: str = "2Gi"
    cpu_throttling: bool = True
    """True: CPU only during requests (request-based billing); False: CPU always allocated."""
    cpu_boost: bool = True
    """Startup CPU boost."""
    timeout: int = 600
    """Request timeout, seconds."""
    ingress: str = "all"
    processes: int | None = None
    """gunicorn processes per instance (``WEB_CONCURRENCY``); default one per whole vCPU."""
    max_in_flight: int | None = None
    """Requests each process admits (``WORKER_MAX_IN_FLIGHT``); default: the instance's concurrency
    spread over its processes, so the app admits what Cloud Run sends instead of answering 429."""
    startup_delay: float = 0.0
    """Simulated extra initialisation, seconds (the study's slow-start experiment)."""
    # pull workers (Cloud Run worker pool)
    instances: int | None = None
    """Worker-pool instances (manual scaling): ``up --mode pull`` (default 1) and ``scale``."""
    max_held: int | None = None
    """Messages each pull process holds (``PULL_MAX_HELD``; default 3)."""
    autoscale_min: int = 0
    autoscale_max: int = 10
    autoscale_backlog: int | None = None
    """Undelivered messages per worker-pool instance the autoscaler aims for (default: a minute of work)."""
    # Pub/Sub
    ack_deadline: int | None = None
    """Seconds; ``None``: 600 for push (the request timeout), 60 for pull."""
    max_delivery_attempts: int = 5
    min_retry_delay: int = 10
    max_retry_delay: int = 600
    dead_letter_retention_days: int = 7
    # front door (Locust)
    frontdoor_access: Access = "iam"
    frontdoor_invokers: tuple[str, ...] = ()

    @property
    def delivery(self) -> Mode:
        """The mode ``up`` deploys: push unless ``--mode pull``."""
        return self.mode or "push"

    @property
    def ack_deadline_s(self) -> int:
        if self.ack_deadline is not None:
            return self.ack_deadline
        return PULL_ACK_DEADLINE_S if self.delivery == "pull" else PUSH_ACK_DEADLINE_S

    @property
    def instance_count(self) -> int:
        return DEFAULT_INSTANCES if self.instances is None else self.instances

    @property
    def held_per_process(self) -> int:
        return self.max_held or DEFAULT_MAX_HELD

    @property
    def backlog_per_instance(self) -> int:
        return self.autoscale_backlog or FRAMES_PER_PROCESS_MINUTE * self.process_count

    @property
    def cpu_value(self) -> float:
        return float(self.cpu)

    @property
    def memory_mib(self) -> int:
        match = MEMORY_PATTERN.match(self.memory)
        if not match:
            raise OptionsError(f"--memory {self.memory!r}: expected a size like 512Mi or 2Gi")
        return int(match[1]) * (1024 if match[2] == "Gi" else 1)

    @property
    def process_count(self) -> int:
        """Worker processes per instance (gunicorn's for push, worker.pull's for pull)."""
        return self.processes or max(1, math.floor(self.cpu_value))

    @property
    def in_flight_per_process(self) -> int:
        """Requests each process admits."""
        return self.max_in_flight or max(1, math.ceil(self.concurrency / self.process_count))

    @property
    def frame_budget_s(self) -> int:
        """Time the worker gives one frame: well inside the ack deadline and the request timeout."""
        return max(1, min(30, self.ack_deadline_s // 2, self.timeout // 2))

    @property
    def predict_budget_s(self) -> int:
        """The front door's latency budget (admission and start deadline): 10 s, inside the request timeout."""
        return max(1, min(10, self.timeout // 2))

    @property
    def deploys_pipeline(self) -> bool:
        return self.target in ("pipeline", "all")

    @property
    def deploys_frontdoor(self) -> bool:
        return self.target in ("frontdoor", "all")

    @property
    def deploys_service(self) -> bool:
        """Whether ``up`` deploys a Cloud Run service (push worker or front door), not only a worker pool."""
        return self.deploys_frontdoor or self.delivery == "push"


@dataclass(frozen=True)
class Names:
    """Names of everything one deployment creates, derived from project, region and name."""

    bucket: str
    topic: str
    dead_letter_topic: str
    subscription: str
    """The push subscription."""
    pull_subscription: str
    dead_letter_subscription: str
    worker_service: str
    """The push worker (a private Cloud Run service)."""
    worker_pool: str
    """The pull workers (a Cloud Run worker pool)."""
    frontdoor_service: str
    worker_account: str
    """Identity of the push worker only."""
    pull_account: str
    """Identity of the pull workers only."""
    frontdoor_account: str
    """Identity of the front door only: it may create objects under ``predict/`` and nothing else."""
    push_account: str
    autoscaler_service: str
    autoscaler_account: str
    autoscaler_parameter: str
    repository: str
    image: str
    building: bool

    @classmethod
    def of(cls, options: DeployOptions) -> Names:
        n, project = options.name, options.project
        repository = n
        built_image = f"{options.region}-docker.pkg.dev/{project}/{repository}/worker:{options.tag}"
        return cls(
            bucket=options.bucket or f"{project}-{n}",
            topic=f"{n}-frames",
            dead_letter_topic=f"{n}-frames-dead-letter",
            subscription=f"{n}-frames-push",
            pull_subscription=f"{n}-frames-pull",
            dead_letter_subscription=f"{n}-frames-dead-letter-keep",
            worker_service=f"{n}-worker",
            worker_pool=f"{n}-pull-worker",
            frontdoor_service=f"{n}-frontdoor",
            worker_account=f"{n}-worker@{project}.iam.gserviceaccount.com",
            pull_account=f"{n}-pull@{project}.iam.gserviceaccount.com",
            frontdoor_account=f"{n}-front@{project}.iam.gserviceaccount.com",
            push_account=f"{n}-push@{project}.iam.gserviceaccount.com",
            autoscaler_service=f"{n}-autoscaler",
            autoscaler_account=f"{n}-crema@{project}.iam.gserviceaccount.com",
            autoscaler_parameter=f"{n}-crema-config",
            repository=repository,
            image=options.image or built_image,
            building=options.image is None,
        )


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise OptionsError(message)


def _check_range(flag: str, value: int, low: int, high: int | None, why: str = "") -> None:
    upper = f"..{high}" if high is not None else " or more"
    _check(value >= low and (high is None or value <= high), f"{flag} {value}: must be {low}{upper}{why}")


def validate_cpu_memory(options: DeployOptions) -> None:
    """Cloud Run's CPU/memory/concurrency combinations."""
    try:
        cpu = options.cpu_value
    except ValueError:
        raise OptionsError(f"--cpu {options.cpu!r}: expected a number of vCPUs, e.g. 1 or 0.5") from None
    fractional = MIN_FRACTIONAL_CPU <= cpu < 1
    _check(fractional or cpu in FULL_CPUS,
           f"--cpu {options.cpu}: Cloud Run allows {MIN_FRACTIONAL_CPU}..1 or one of {', '.join(map(str, FULL_CPUS))}")
    if fractional and options.deploys_service:  # a service's rules; a worker pool has no concurrency
        _check(options.concurrency == 1, f"--cpu {options.cpu}: below 1 vCPU Cloud Run requires --concurrency 1")
        _check(options.cpu_throttling, f"--cpu {options.cpu}: below 1 vCPU Cloud Run requires --cpu-throttling")
    memory = options.memory_mib
    _check(128 <= memory <= MAX_MEMORY_MIB, f"--memory {options.memory}: must be 128Mi..32Gi")
    need = MIN_MEMORY_FOR_CPU.get(int(cpu), 0) if not fractional else 0
    _check(memory >= need, f"--memory {options.memory}: {options.cpu} vCPU needs at least {need // 1024}Gi")
    for threshold, min_cpu in MIN_CPU_FOR_MEMORY:
        if memory > threshold:
            _check(cpu >= min_cpu,
                   f"--memory {options.memory}: more than {threshold // 1024}Gi needs --cpu {min_cpu} or more")
            break


def validate_names(options: DeployOptions) -> None:
    """Project, region, deployment name, bucket, image tag and invoker members."""
    _check(bool(PROJECT_PATTERN.match(options.project)),
           f"--project {options.project!r}: expected a project id (6-30 lowercase letters, digits, hyphens)")
    _check(bool(REGION_PATTERN.match(options.region)), f"--region {options.region!r}: expected e.g. europe-west1")
    _check(bool(NAME_PATTERN.match(options.name)),
           f"--name {options.name!r}: 1-23 lowercase letters, digits or hyphens, starting with a letter "
           "(it prefixes service-account ids, which are limited to 30 characters)")
    bucket = Names.of(options).bucket
    _check(bool(BUCKET_PATTERN.match(bucket)) and not bucket.startswith("goog") and ".." not in bucket,
           f"bucket name {bucket!r}: 3-63 lowercase letters, digits, '-', '_' or '.', not starting with 'goog'")
    if options.bucket_location is not None:
        _check(bool(re.match(r"^[a-z0-9-]+$", options.bucket_location)),
               f"--bucket-location {options.bucket_location!r}: expected e.g. europe-west1 or eu")
    if options.image is None:
        _check(bool(TAG_PATTERN.match(options.tag)), f"--tag {options.tag!r}: letters, digits, '_', '.', '-' (max 128)")
    else:
        _check(bool(options.image) and not re.search(r"\s", options.image),
               f"--image {options.image!r}: not an image URI")
    _check(options.target in TARGETS, f"--target {options.target!r}: one of {', '.join(TARGETS)}")
    _check(options.mode is None or options.mode in MODES, f"--mode {options.mode!r}: one of push, pull")
    _check(options.frontdoor_access in ACCESS, f"--frontdoor-access {options.frontdoor_access!r}: one of iam, public")
    _check(options.ingress in INGRESS, f"--ingress {options.ingress!r}: one of {', '.join(INGRESS)}")
    for member in options.frontdoor_invokers:
        _check(bool(MEMBER_PATTERN.match(member)),
               f"--frontdoor-invoker {member!r}: expected user:EMAIL, serviceAccount:EMAIL, group:EMAIL, "
               "domain:DOMAIN or allAuthenticatedUsers")
    if options.frontdoor_invokers:
        _check(options.frontdoor_access == "iam", "--frontdoor-invoker only applies with --frontdoor-access iam")


def validate(options: DeployOptions) -> None:
    """Raise :class:`OptionsError` with a one-line message on the first problem."""
    validate_names(options)
    validate_cpu_memory(options)
    _check_range("--concurrency", options.concurrency, 1, 1000)
    _check_range("--min-instances", options.min_instances, 0, None)
    _check_range("--max-instances", options.max_instances, 1, None)
    _check(options.min_instances <= options.max_instances,
           f"--min-instances {options.min_instances} is more than --max-instances {options.max_instances}")
    _check_range("--timeout", options.timeout, 1, 3600, " seconds")
    _check_range("--ack-deadline", options.ack_deadline_s, 10, 600, " seconds (Pub/Sub's limits)")
    _check_range("--max-delivery-attempts", options.max_delivery_attempts, 5, 100, " (Pub/Sub's limits)")
    _check_range("--min-retry-delay", options.min_retry_delay, 0, 600, " seconds")
    _check_range("--max-retry-delay", options.max_retry_delay, 0, 600, " seconds")
    _check(options.min_retry_delay <= options.max_retry_delay,
           f"--min-retry-delay {options.min_retry_delay} is more than --max-retry-delay {options.max_retry_delay}")
    _check_range("--dead-letter-retention-days", options.dead_letter_retention_days, 1, 31)
    _check_range("--job-data-days", options.job_data_days, 0, None)
    if options.processes is not None:
        _check_range("--processes", options.processes, 1, 64)
    if options.max_in_flight is not None:
        _check_range("--max-in-flight", options.max_in_flight, 1, 1000)
    _check(0 <= options.startup_delay <= 600, f"--startup-delay {options.startup_delay}: must be 0..600 seconds")
    validate_pull(options)


def validate_pull(options: DeployOptions) -> None:
    """The worker-pool knobs: only with ``--mode pull``, in range."""
    if options.instances is not None:
        _check(options.delivery == "pull", "--instances only applies with --mode pull "
               "(a push service scales itself between --min-instances and --max-instances)")
        _check_range("--instances", options.instances, 0, MAX_POOL_INSTANCES)
    if options.max_held is not None:
        _check(options.delivery == "pull", "--max-held only applies with --mode pull "
               "(push processes admit --max-in-flight requests)")
        _check_range("--max-held", options.max_held, 1, 100)
    _check_range("--autoscale-min", options.autoscale_min, 0, MAX_POOL_INSTANCES)
    _check_range("--autoscale-max", options.autoscale_max, 1, MAX_POOL_INSTANCES)
    _check(options.autoscale_min <= options.autoscale_max,
           f"--autoscale-min {options.autoscale_min} is more than --autoscale-max {options.autoscale_max}")
    if options.autoscale_backlog is not None:
        _check_range("--autoscale-backlog", options.autoscale_backlog, 1, None)
