"""The gcloud commands that deploy (``up``) or remove (``down``) frame-fanout on Google Cloud (pure).

Usage::

    plan = build_plan("up", DeployOptions(project="p", region="europe-west1", tag="abc"))
    for argv in gcloud_commands(plan): print(shlex.join(argv))   # every command, checks included
    print(render_plan(plan))                                     # what `python -m deploy.gcp plan` prints

A plan is an ordered list of :class:`Step`. Idempotency is in the steps themselves:

- ``ensure`` steps run a ``describe`` check first: absent → create; present → the update command, if
  the step has one (bucket settings, push subscription), else nothing (topics, accounts, repository);
- ``gcloud run deploy`` creates or updates a service by itself, and ``add-iam-policy-binding`` is a
  no-op for a binding that exists, so those always run (``run`` steps);
- ``remove`` steps (``down``) delete only what their check finds.

Values known only at run time appear as placeholders (:data:`PROJECT_NUMBER`, :data:`WORKER_URL`,
:data:`FRONTDOOR_URL`): a ``capture`` step's output becomes the placeholder's value. Files the commands
read (the bucket lifecycle rule) are in :attr:`Plan.files`, keyed by their placeholder.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from deploy.gcp.options import DeployOptions, Names, validate
from framecontract.endpoints import PUSH_PATH, READY_PATH

Action = Literal["up", "down"]
Mode = Literal["run", "ensure", "remove"]

PROJECT_NUMBER = "<PROJECT_NUMBER>"
WORKER_URL = "<WORKER_URL>"
FRONTDOOR_URL = "<FRONTDOOR_URL>"
LIFECYCLE_FILE = "<LIFECYCLE_FILE>"
PLACEHOLDERS = (PROJECT_NUMBER, WORKER_URL, FRONTDOOR_URL, LIFECYCLE_FILE)

STARTUP_PROBE_PERIOD_S = 2
STARTUP_PROBE_FAILURES = 60
"""The startup probe allows 2 s x 60 = 120 s for the model to load and warm up."""
IAM_PROPAGATION_ERRORS = ("does not exist", "not found", "NOT_FOUND")
"""A just-created service account can take a few seconds to be usable in IAM bindings: retried."""

APIS = ("run.googleapis.com", "pubsub.googleapis.com", "storage.googleapis.com", "iam.googleapis.com")
BUILD_APIS = ("artifactregistry.googleapis.com", "cloudbuild.googleapis.com")


@dataclass(frozen=True)
class Step:
    """One thing ``up``/``down`` does: a gcloud command, possibly guarded by a describe check."""

    title: str
    argv: tuple[str, ...]
    mode: Mode = "run"
    check: tuple[str, ...] | None = None
    """``ensure``/``remove``: the describe command that tells whether the resource exists."""
    if_exists: tuple[str, ...] | None = None
    """``ensure``: run this instead of ``argv`` when the resource exists (``None``: nothing to do)."""
    capture: str | None = None
    """``run``: the command's trimmed stdout becomes this placeholder's value."""
    retry_on: tuple[str, ...] = ()
    """Error texts that mean "try again shortly" (IAM propagation)."""
    tolerate: tuple[str, ...] = ()
    """Error texts that mean "already done" (removing a binding that is not there)."""

    def commands(self) -> list[tuple[str, ...]]:
        """Every command this step may run, the check first."""
        return [c for c in (self.check, self.argv, self.if_exists) if c is not None]


@dataclass(frozen=True)
class Plan:
    """The ordered steps of one action, the files they read, and the names involved."""

    action: Action
    options: DeployOptions
    names: Names
    steps: tuple[Step, ...]
    files: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- small builders


def gcloud(*args: str) -> tuple[str, ...]:
    return ("gcloud", *args)


def _flag(name: str, value: object) -> str:
    return f"--{name}={value}"


def agent_member() -> str:
    """The Pub/Sub service agent, which pushes, forwards dead letters and mints the OIDC tokens."""
    return f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"


def lifecycle_rule(days: int) -> str:
    """The bucket's lifecycle configuration: delete job data older than ``days`` days."""
    rule = {"action": {"type": "Delete"}, "condition": {"age": days, "matchesPrefix": ["jobs/"]}}
    return json.dumps({"rule": [rule]}) + "\n"


def ensure(title: str, check: tuple[str, ...], create: tuple[str, ...],
           update: tuple[str, ...] | None = None) -> Step:
    return Step(title, create, mode="ensure", check=check, if_exists=update)


def remove(title: str, check: tuple[str, ...], delete: tuple[str, ...], tolerate: tuple[str, ...] = ()) -> Step:
    return Step(title, delete, mode="remove", check=check, tolerate=tolerate)


def iam_binding(title: str, argv: tuple[str, ...]) -> Step:
    return Step(title, argv, retry_on=IAM_PROPAGATION_ERRORS)


# --------------------------------------------------------------------------- describe checks


def describe_bucket(o: DeployOptions, n: Names) -> tuple[str, ...]:
    return gcloud("storage", "buckets", "describe", f"gs://{n.bucket}", _flag("project", o.project),
                  "--format=value(name)")


def describe_account(o: DeployOptions, email: str) -> tuple[str, ...]:
    return gcloud("iam", "service-accounts", "describe", email, _flag("project", o.project), "--format=value(email)")


def describe_topic(o: DeployOptions, topic: str) -> tuple[str, ...]:
    return gcloud("pubsub", "topics", "describe", topic, _flag("project", o.project), "--format=value(name)")


def describe_subscription(o: DeployOptions, subscription: str) -> tuple[str, ...]:
    return gcloud("pubsub", "subscriptions", "describe", subscription, _flag("project", o.project),
                  "--format=value(name)")


def describe_service(o: DeployOptions, service: str, field_path: str = "metadata.name") -> tuple[str, ...]:
    return gcloud("run", "services", "describe", service, _flag("region", o.region), _flag("project", o.project),
                  f"--format=value({field_path})")


def describe_repository(o: DeployOptions, n: Names) -> tuple[str, ...]:
    return gcloud("artifacts", "repositories", "describe", n.repository, _flag("location", o.region),
                  _flag("project", o.project), "--format=value(name)")


# --------------------------------------------------------------------------- up


def shared_steps(o: DeployOptions, n: Names) -> list[Step]:
    """APIs, project number, bucket, worker identity and its bucket access, the image."""
    apis = APIS + (BUILD_APIS if n.building else ())
    bucket_settings = ["--uniform-bucket-level-access", "--public-access-prevention"]
    lifecycle = [_flag("lifecycle-file", LIFECYCLE_FILE)] if o.job_data_days else ["--clear-lifecycle"]
    worker_sa = f"serviceAccount:{n.worker_account}"
    steps = [
        Step("enable the APIs used (no-op when enabled)",
             gcloud("services", "enable", *apis, _flag("project", o.project))),
        Step("look up the project number (names the Pub/Sub service agent)",
             gcloud("projects", "describe", o.project, "--format=value(projectNumber)"), capture=PROJECT_NUMBER),
        ensure(f"bucket gs://{n.bucket}: frames and results; uniform access, never public",
               describe_bucket(o, n),
               gcloud("storage", "buckets", "create", f"gs://{n.bucket}", _flag("project", o.project),
                      _flag("location", o.bucket_location or o.region), "--default-storage-class=STANDARD",
                      *bucket_settings)),
        Step("bucket settings and lifecycle rule for jobs/ (set on every up)",
             gcloud("storage", "buckets", "update", f"gs://{n.bucket}", _flag("project", o.project),
                    *bucket_settings, *lifecycle)),
        ensure(f"service account {n.worker_account}: identity of the worker and front-door services",
               describe_account(o, n.worker_account),
               gcloud("iam", "service-accounts", "create", n.worker_account.split("@")[0],
                      _flag("project", o.project), _flag("display-name", f"{o.name} worker (Cloud Run)"))),
        iam_binding("worker may create objects in the bucket (create-only: no overwrite, no delete)",
                    gcloud("storage", "buckets", "add-iam-policy-binding", f"gs://{n.bucket}",
                           _flag("project", o.project), _flag("member", worker_sa),
                           "--role=roles/storage.objectCreator")),
        iam_binding("worker may read objects in the bucket (claim-checked payloads)",
                    gcloud("storage", "buckets", "add-iam-policy-binding", f"gs://{n.bucket}",
                           _flag("project", o.project), _flag("member", worker_sa),
                           "--role=roles/storage.objectViewer")),
    ]
    if n.building:
        steps += [
            ensure(f"Artifact Registry repository {n.repository} for the worker image",
                   describe_repository(o, n),
                   gcloud("artifacts", "repositories", "create", n.repository, "--repository-format=docker",
                          _flag("location", o.region), _flag("project", o.project),
                          _flag("description", f"{o.name} worker images"))),
            Step(f"build deploy/Dockerfile with Cloud Build → {n.image}",
                 gcloud("builds", "submit", ".", "--config=deploy/cloudbuild.yaml",
                        "--ignore-file=deploy/gcloudignore", _flag("substitutions", f"_IMAGE={n.image}"),
                        _flag("project", o.project))),
        ]
    return steps


def push_audience(o: DeployOptions, n: Names) -> str:
    """The audience of Pub/Sub's OIDC tokens: the worker's deterministic push URL, known before it exists.

    It is also set as the worker's custom audience, so Cloud Run's IAM check accepts it whatever URL
    ``status.url`` reports, and the worker checks it itself (``WORKER_PUSH_AUDIENCE``).
    """
    return f"https://{n.worker_service}-{PROJECT_NUMBER}.{o.region}.run.app{PUSH_PATH}"


def service_env(o: DeployOptions, n: Names) -> str:
    """``--set-env-vars`` value: resources, process layout, frame budget, push authentication.

    Both services check push tokens (audience + push identity), so even a public front door cannot be
    fed frames by anyone but Pub/Sub.
    """
    env = {
        "GOOGLE_CLOUD_PROJECT": o.project,
        "FRAMES_BUCKET": n.bucket,
        "FRAMES_TOPIC": n.topic,
        "FRAMES_SUBSCRIPTION": n.subscription,
        "WEB_CONCURRENCY": str(o.process_count),
        "WORKER_MAX_IN_FLIGHT": str(o.in_flight_per_process),
        "WORKER_FRAME_BUDGET_S": str(o.frame_budget_s),
        "WORKER_STARTUP_DELAY_S": f"{o.startup_delay:g}",
        "WORKER_PUSH_AUDIENCE": push_audience(o, n),
        "WORKER_PUSH_SERVICE_ACCOUNTS": n.push_account,
    }
    return ",".join(f"{k}={v}" for k, v in env.items())


def deploy_service(o: DeployOptions, n: Names, service: str, public: bool) -> tuple[str, ...]:
    """``gcloud run deploy``: creates the service or rolls out a new revision with these settings."""
    probe = (f"httpGet.path={READY_PATH},httpGet.port=8080,periodSeconds={STARTUP_PROBE_PERIOD_S},"
             f"timeoutSeconds=1,failureThreshold={STARTUP_PROBE_FAILURES}")
    return gcloud(
        "run", "deploy", service, _flag("image", n.image), _flag("region", o.region), _flag("project", o.project),
        _flag("service-account", n.worker_account),
        "--allow-unauthenticated" if public else "--no-allow-unauthenticated",
        _flag("ingress", o.ingress),
        _flag("concurrency", o.concurrency),
        _flag("min-instances", o.min_instances), _flag("max-instances", o.max_instances),
        _flag("cpu", o.cpu), _flag("memory", o.memory),
        "--cpu-throttling" if o.cpu_throttling else "--no-cpu-throttling",
        "--cpu-boost" if o.cpu_boost else "--no-cpu-boost",
        _flag("timeout", f"{o.timeout}s"),
        "--port=8080",
        _flag("startup-probe", probe),
        _flag("set-env-vars", service_env(o, n)),
        *([_flag("set-custom-audiences", push_audience(o, n))] if service == n.worker_service else []),
        _flag("labels", f"app=frame-fanout,deployment={o.name}"),
    )


def subscription_settings(o: DeployOptions, n: Names) -> tuple[str, ...]:
    """Push to the worker with an OIDC token of the push account; retry policy; dead-letter policy."""
    return (
        _flag("push-endpoint", f"{WORKER_URL}{PUSH_PATH}"),
        _flag("push-auth-service-account", n.push_account),
        _flag("push-auth-token-audience", push_audience(o, n)),
        _flag("ack-deadline", o.ack_deadline),
        _flag("min-retry-delay", f"{o.min_retry_delay}s"),
        _flag("max-retry-delay", f"{o.max_retry_delay}s"),
        _flag("dead-letter-topic", n.dead_letter_topic),
        _flag("max-delivery-attempts", o.max_delivery_attempts),
        "--expiration-period=never",
    )


def pipeline_steps(o: DeployOptions, n: Names) -> list[Step]:
    """Topics, the dead-letter keeper, the push identity, the worker service, the push subscription."""
    project = _flag("project", o.project)
    push_sa = f"serviceAccount:{n.push_account}"
    return [
        ensure(f"topic {n.topic}: one message per frame (the producer publishes here)",
               describe_topic(o, n.topic), gcloud("pubsub", "topics", "create", n.topic, project)),
        ensure(f"topic {n.dead_letter_topic}: frames that failed {o.max_delivery_attempts} deliveries",
               describe_topic(o, n.dead_letter_topic),
               gcloud("pubsub", "topics", "create", n.dead_letter_topic, project)),
        ensure(f"pull subscription {n.dead_letter_subscription}: keeps dead letters "
               f"{o.dead_letter_retention_days} days for inspection",
               describe_subscription(o, n.dead_letter_subscription),
               gcloud("pubsub", "subscriptions", "create", n.dead_letter_subscription,
                      _flag("topic", n.dead_letter_topic), project,
                      _flag("message-retention-duration", f"{o.dead_letter_retention_days}d"),
                      "--expiration-period=never")),
        ensure(f"service account {n.push_account}: the identity in Pub/Sub's OIDC push tokens",
               describe_account(o, n.push_account),
               gcloud("iam", "service-accounts", "create", n.push_account.split("@")[0], project,
                      _flag("display-name", f"{o.name} Pub/Sub push identity"))),
        Step(f"Cloud Run service {n.worker_service}: the worker (private; created or updated)",
             deploy_service(o, n, n.worker_service, public=False)),
        Step(f"look up the URL of {n.worker_service}",
             describe_service(o, n.worker_service, "status.url"), capture=WORKER_URL),
        iam_binding("push identity may invoke the worker (and nothing else)",
                    gcloud("run", "services", "add-iam-policy-binding", n.worker_service, _flag("region", o.region),
                           project, _flag("member", push_sa), "--role=roles/run.invoker")),
        iam_binding("Pub/Sub service agent may mint OIDC tokens for the push identity",
                    gcloud("iam", "service-accounts", "add-iam-policy-binding", n.push_account, project,
                           _flag("member", agent_member()), "--role=roles/iam.serviceAccountTokenCreator")),
        iam_binding("Pub/Sub service agent may publish dead letters",
                    gcloud("pubsub", "topics", "add-iam-policy-binding", n.dead_letter_topic, project,
                           _flag("member", agent_member()), "--role=roles/pubsub.publisher")),
        ensure(f"push subscription {n.subscription} → worker {PUSH_PATH} (created, or updated to these settings)",
               describe_subscription(o, n.subscription),
               gcloud("pubsub", "subscriptions", "create", n.subscription, _flag("topic", n.topic), project,
                      *subscription_settings(o, n)),
               gcloud("pubsub", "subscriptions", "update", n.subscription, project, *subscription_settings(o, n))),
        iam_binding("Pub/Sub service agent may acknowledge messages it forwards as dead letters",
                    gcloud("pubsub", "subscriptions", "add-iam-policy-binding", n.subscription, project,
                           _flag("member", agent_member()), "--role=roles/pubsub.subscriber")),
    ]


def frontdoor_steps(o: DeployOptions, n: Names) -> list[Step]:
    """The Locust front door: the same image as its own service, public or invoker-only."""
    public = o.frontdoor_access == "public"
    access = "public" if public else "IAM-protected"
    steps = [
        Step(f"Cloud Run service {n.frontdoor_service}: POST /predict for Locust ({access}; created or updated)",
             deploy_service(o, n, n.frontdoor_service, public=public)),
        Step(f"look up the URL of {n.frontdoor_service}",
             describe_service(o, n.frontdoor_service, "status.url"), capture=FRONTDOOR_URL),
    ]
    for member in o.frontdoor_invokers:
        steps.append(iam_binding(f"{member} may call the front door",
                                 gcloud("run", "services", "add-iam-policy-binding", n.frontdoor_service,
                                        _flag("region", o.region), _flag("project", o.project),
                                        _flag("member", member), "--role=roles/run.invoker")))
    return steps


def up_steps(o: DeployOptions, n: Names) -> list[Step]:
    steps = shared_steps(o, n)
    if o.deploys_pipeline:
        steps += pipeline_steps(o, n)
    if o.deploys_frontdoor:
        steps += frontdoor_steps(o, n)
    return steps


# --------------------------------------------------------------------------- down


def down_steps(o: DeployOptions, n: Names) -> list[Step]:
    """Everything ``up`` creates, in reverse dependency order; ``--target frontdoor``: the front door only."""
    project = _flag("project", o.project)
    region = _flag("region", o.region)
    frontdoor = remove(f"Cloud Run service {n.frontdoor_service}", describe_service(o, n.frontdoor_service),
                       gcloud("run", "services", "delete", n.frontdoor_service, region, project, "--quiet"))
    if o.target == "frontdoor":
        return [frontdoor]
    worker_sa = f"serviceAccount:{n.worker_account}"
    steps = [
        remove(f"push subscription {n.subscription}", describe_subscription(o, n.subscription),
               gcloud("pubsub", "subscriptions", "delete", n.subscription, project)),
        remove(f"dead-letter subscription {n.dead_letter_subscription} (its messages go with it)",
               describe_subscription(o, n.dead_letter_subscription),
               gcloud("pubsub", "subscriptions", "delete", n.dead_letter_subscription, project)),
        remove(f"topic {n.topic}", describe_topic(o, n.topic), gcloud("pubsub", "topics", "delete", n.topic, project)),
        remove(f"topic {n.dead_letter_topic}", describe_topic(o, n.dead_letter_topic),
               gcloud("pubsub", "topics", "delete", n.dead_letter_topic, project)),
        frontdoor,
        remove(f"Cloud Run service {n.worker_service}", describe_service(o, n.worker_service),
               gcloud("run", "services", "delete", n.worker_service, region, project, "--quiet")),
    ]
    if not o.delete_data:
        steps += [
            remove(f"worker's {role} binding on the kept bucket gs://{n.bucket}", describe_bucket(o, n),
                   gcloud("storage", "buckets", "remove-iam-policy-binding", f"gs://{n.bucket}", project,
                          _flag("member", worker_sa), f"--role={role}"),
                   tolerate=("not found",))
            for role in ("roles/storage.objectCreator", "roles/storage.objectViewer")
        ]
    steps += [
        remove(f"service account {email}", describe_account(o, email),
               gcloud("iam", "service-accounts", "delete", email, project, "--quiet"))
        for email in (n.push_account, n.worker_account)
    ]
    steps.append(remove(f"Artifact Registry repository {n.repository} and its images", describe_repository(o, n),
                        gcloud("artifacts", "repositories", "delete", n.repository, _flag("location", o.region),
                               project, "--quiet")))
    if o.delete_data:
        steps.append(remove(f"bucket gs://{n.bucket} and every object in it (--delete-data)", describe_bucket(o, n),
                            gcloud("storage", "rm", "--recursive", f"gs://{n.bucket}", project)))
    return steps


# --------------------------------------------------------------------------- plans


def build_plan(action: Action, options: DeployOptions) -> Plan:
    """The validated, ordered steps of ``up`` or ``down`` for ``options``."""
    validate(options)
    names = Names.of(options)
    if action == "up":
        files = {LIFECYCLE_FILE: lifecycle_rule(options.job_data_days)} if options.job_data_days else {}
        return Plan(action, options, names, tuple(up_steps(options, names)), files)
    if action == "down":
        return Plan(action, options, names, tuple(down_steps(options, names)))
    raise ValueError(f"unknown action {action!r}")


def gcloud_commands(plan: Plan) -> list[list[str]]:
    """Every gcloud command of the plan, in order (checks, commands, update alternatives)."""
    return [list(argv) for step in plan.steps for argv in step.commands()]


def substitute(argv: Iterable[str], values: dict[str, str]) -> list[str]:
    """``argv`` with each placeholder replaced by its value (unknown placeholders stay)."""
    out = []
    for arg in argv:
        for placeholder, value in values.items():
            arg = arg.replace(placeholder, value)
        out.append(arg)
    return out


def client_env(plan: Plan) -> dict[str, str]:
    """Environment for the producer and collector against this deployment."""
    n = plan.names
    return {"GOOGLE_CLOUD_PROJECT": plan.options.project, "FRAMES_TOPIC": n.topic, "FRAMES_BUCKET": n.bucket}


def render_step(number: int, step: Step) -> list[str]:
    lines = [f"[{number}] {step.title}"]
    if step.mode == "run":
        suffix = f"   # → {step.capture}" if step.capture else ""
        lines.append(f"    run      {shlex.join(step.argv)}{suffix}")
    elif step.mode == "ensure":
        assert step.check is not None
        lines.append(f"    check    {shlex.join(step.check)}")
        lines.append(f"    absent:  {shlex.join(step.argv)}")
        lines.append(f"    exists:  {shlex.join(step.if_exists) if step.if_exists else '(nothing to do)'}")
    else:
        assert step.check is not None
        lines.append(f"    check    {shlex.join(step.check)}")
        lines.append(f"    exists:  {shlex.join(step.argv)}")
    return lines


def render_plan(plan: Plan) -> str:
    """Human-readable plan: every command in order, the files, and the placeholders explained."""
    o = plan.options
    lines = [f"# python -m deploy.gcp {plan.action}: project {o.project}, region {o.region}, "
             f"deployment {o.name}, target {o.target}, image {plan.names.image}"]
    used = {p for argv in gcloud_commands(plan) for p in PLACEHOLDERS if any(p in arg for arg in argv)}
    meanings = {
        PROJECT_NUMBER: "the project number, from `gcloud projects describe` (step output)",
        WORKER_URL: "the worker service's URL, from `gcloud run services describe` (step output)",
        FRONTDOOR_URL: "the front door's URL (step output)",
        LIFECYCLE_FILE: "a temporary file holding the lifecycle rule below",
    }
    for placeholder in PLACEHOLDERS:
        if placeholder in used:
            lines.append(f"# {placeholder}: {meanings[placeholder]}")
    for placeholder, content in plan.files.items():
        lines.append(f"# {placeholder} contents:")
        lines.extend(f"#   {line}" for line in content.rstrip("\n").splitlines())
    lines.append("")
    for number, step in enumerate(plan.steps, start=1):
        lines.extend(render_step(number, step))
    if plan.action == "up":
        lines.append("")
        lines.append("# then, for the producer and the collector:")
        lines.append("export " + " ".join(f"{k}={v}" for k, v in client_env(plan).items()))
    return "\n".join(lines) + "\n"
