"""The gcloud commands that deploy (``up``), remove (``down``) or resize (``scale``) frame-fanout (pure).

Usage::

    plan = build_plan("up", DeployOptions(project="p", region="europe-west1", tag="abc"))
    plan = build_plan("up", DeployOptions(project="p", region="europe-west1", mode="pull"))  # worker pool
    plan = build_plan("scale", DeployOptions(project="p", region="europe-west1", mode="pull", instances=4))
    for argv in gcloud_commands(plan): print(shlex.join(argv))   # every command, checks included
    print(render_plan(plan))                                     # what `python -m deploy.gcp plan` prints

A plan is an ordered list of :class:`Step`. Idempotency is in the steps themselves:

- ``ensure`` steps run a ``describe`` check first: absent → create; present → the update command, if
  the step has one (bucket settings, push subscription), else nothing (topics, accounts, repository);
- ``gcloud run deploy`` creates or updates a service by itself, and ``add-iam-policy-binding`` is a
  no-op for a binding that exists, so those always run (``run`` steps);
- ``remove`` steps (``down``) delete only what their check finds;
- ``refuse`` steps stop ``up`` when their check finds something that must not be there (the other
  delivery mode's subscription: two subscriptions on one topic would process every frame twice).

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

from deploy.gcp.options import PULL_GRACE_S, DeployOptions, Names, OptionsError, validate
from framecontract.endpoints import PUSH_PATH, READY_PATH
from framecontract.layout import JOBS_PREFIX, PREDICT_PREFIX

Action = Literal["up", "down", "scale", "autoscale", "autoscale-down", "decode"]
StepMode = Literal["run", "ensure", "remove", "refuse"]

PROJECT_NUMBER = "<PROJECT_NUMBER>"
WORKER_URL = "<WORKER_URL>"
FRONTDOOR_URL = "<FRONTDOOR_URL>"
LIFECYCLE_FILE = "<LIFECYCLE_FILE>"
CREMA_CONFIG_FILE = "<CREMA_CONFIG_FILE>"
PLACEHOLDERS = (PROJECT_NUMBER, WORKER_URL, FRONTDOOR_URL, LIFECYCLE_FILE, CREMA_CONFIG_FILE)

STARTUP_PROBE_PERIOD_S = 2
STARTUP_PROBE_FAILURES = 60
"""The startup probe allows 2 s x 60 = 120 s for the model to load and warm up."""
IAM_PROPAGATION_ERRORS = ("does not exist", "not found", "NOT_FOUND")
"""A just-created service account can take a few seconds to be usable in IAM bindings: retried."""
READINESS_PROBE_PREFIX = "jobs/.readiness-probe/"
"""What the worker's ``/readyz`` lists (``worker.storage.READINESS_PROBE_PREFIX``; a test keeps them equal):
the front door may list exactly this prefix, which never holds an object (job ids cannot start with '.')."""
UNCONDITIONAL = "--condition=None"
"""Bucket bindings without a condition. gcloud refuses a binding without ``--condition`` on a policy that
has conditional bindings (the front door's) when it cannot prompt, so every bucket binding says which."""

APIS = ("run.googleapis.com", "pubsub.googleapis.com", "storage.googleapis.com", "iam.googleapis.com")
BUILD_APIS = ("artifactregistry.googleapis.com", "cloudbuild.googleapis.com")


@dataclass(frozen=True)
class Step:
    """One thing ``up``/``down`` does: a gcloud command, possibly guarded by a describe check."""

    title: str
    argv: tuple[str, ...]
    mode: StepMode = "run"
    check: tuple[str, ...] | None = None
    """``ensure``/``remove``/``refuse``: the describe command that tells whether the resource exists."""
    if_exists: tuple[str, ...] | None = None
    """``ensure``: run this instead of ``argv`` when the resource exists (``None``: nothing to do)."""
    capture: str | None = None
    """``run``: the command's trimmed stdout becomes this placeholder's value."""
    retry_on: tuple[str, ...] = ()
    """Error texts that mean "try again shortly" (IAM propagation)."""
    tolerate: tuple[str, ...] = ()
    """Error texts that mean "already done" (removing a binding that is not there)."""
    refusal: str = ""
    """``refuse``: why ``up`` stops when the check finds the resource, and what to do."""

    def commands(self) -> list[tuple[str, ...]]:
        """Every command this step may run, the check first."""
        return [c for c in (self.check, self.argv, self.if_exists) if c]


@dataclass(frozen=True)
class Plan:
    """The ordered steps of one action, the files they read, and the names involved."""

    action: Action
    options: DeployOptions
    names: Names
    steps: tuple[Step, ...]
    files: dict[str, str] = field(default_factory=dict)
    note: str = ""
    """Printed at the top of the rendered plan (``#`` lines)."""


# --------------------------------------------------------------------------- small builders


def gcloud(*args: str) -> tuple[str, ...]:
    return ("gcloud", *args)


def _flag(name: str, value: object) -> str:
    return f"--{name}={value}"


def agent_member() -> str:
    """The Pub/Sub service agent, which pushes, forwards dead letters and mints the OIDC tokens."""
    return f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"


def lifecycle_rule(days: int) -> str:
    """The bucket's lifecycle configuration: delete job data and front-door results older than ``days``."""
    rule = {"action": {"type": "Delete"}, "condition": {"age": days, "matchesPrefix": [JOBS_PREFIX, PREDICT_PREFIX]}}
    return json.dumps({"rule": [rule]}) + "\n"


def condition_flag(title: str, description: str, expression: str) -> str:
    """``--condition=`` with ``;`` as the key separator (the expressions contain commas, never ``;``)."""
    for part in (title, description, expression):
        if ";" in part:
            raise ValueError(f"IAM condition part contains ';': {part!r}")
    return f"--condition=^;^title={title};description={description};expression={expression}"


def ensure(title: str, check: tuple[str, ...], create: tuple[str, ...],
           update: tuple[str, ...] | None = None) -> Step:
    return Step(title, create, mode="ensure", check=check, if_exists=update)


def remove(title: str, check: tuple[str, ...], delete: tuple[str, ...], tolerate: tuple[str, ...] = ()) -> Step:
    return Step(title, delete, mode="remove", check=check, tolerate=tolerate)


def refuse(title: str, check: tuple[str, ...], refusal: str) -> Step:
    return Step(title, (), mode="refuse", check=check, refusal=refusal)


def iam_binding(title: str, argv: tuple[str, ...]) -> Step:
    return Step(title, argv, retry_on=IAM_PROPAGATION_ERRORS)


def ensure_account(o: DeployOptions, email: str, title: str, display_name: str) -> Step:
    return ensure(f"service account {email}: {title}", describe_account(o, email),
                  gcloud("iam", "service-accounts", "create", email.split("@")[0], _flag("project", o.project),
                         _flag("display-name", display_name)))


def bucket_binding(o: DeployOptions, n: Names, title: str, account: str, role: str,
                   condition: str = UNCONDITIONAL) -> Step:
    return iam_binding(title, gcloud("storage", "buckets", "add-iam-policy-binding", f"gs://{n.bucket}",
                                     _flag("project", o.project), _flag("member", f"serviceAccount:{account}"),
                                     f"--role={role}", condition))


def subscription_binding(o: DeployOptions, subscription: str, title: str, member: str, role: str) -> Step:
    return iam_binding(title, gcloud("pubsub", "subscriptions", "add-iam-policy-binding", subscription,
                                     _flag("project", o.project), _flag("member", member), f"--role={role}"))


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


def describe_worker_pool(o: DeployOptions, n: Names) -> tuple[str, ...]:
    return gcloud("beta", "run", "worker-pools", "describe", n.worker_pool, _flag("region", o.region),
                  _flag("project", o.project), "--format=value(metadata.name)")


def describe_repository(o: DeployOptions, n: Names) -> tuple[str, ...]:
    return gcloud("artifacts", "repositories", "describe", n.repository, _flag("location", o.region),
                  _flag("project", o.project), "--format=value(name)")


# --------------------------------------------------------------------------- up


def shared_steps(o: DeployOptions, n: Names) -> list[Step]:
    """APIs, project number, bucket and its lifecycle rule, the image."""
    apis = APIS + (BUILD_APIS if n.building else ())
    bucket_settings = ["--uniform-bucket-level-access", "--public-access-prevention"]
    lifecycle = [_flag("lifecycle-file", LIFECYCLE_FILE)] if o.job_data_days else ["--clear-lifecycle"]
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
        Step(f"bucket settings and lifecycle rule for {JOBS_PREFIX} and {PREDICT_PREFIX} (set on every up)",
             gcloud("storage", "buckets", "update", f"gs://{n.bucket}", _flag("project", o.project),
                    *bucket_settings, *lifecycle)),
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


def env_value(env: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in env.items())


def service_env(o: DeployOptions, n: Names) -> str:
    """``--set-env-vars`` value of both services: resources, process layout, frame budget, push authentication.

    Push authentication is always configured, on the front door too: its push endpoint then accepts only
    Pub/Sub's tokens for the worker's audience, which no subscription sends it, so even a public front door
    cannot be fed frames (and the worker refuses to start with push authentication unconfigured).
    """
    return env_value({
        "GOOGLE_CLOUD_PROJECT": o.project,
        "FRAMES_BUCKET": n.bucket,
        "FRAMES_TOPIC": n.topic,
        "FRAMES_SUBSCRIPTION": n.subscription,
        "WEB_CONCURRENCY": str(o.process_count),
        "WORKER_MAX_IN_FLIGHT": str(o.in_flight_per_process),
        "WORKER_FRAME_BUDGET_S": str(o.frame_budget_s),
        "WORKER_PREDICT_BUDGET_S": str(o.predict_budget_s),
        "WORKER_STARTUP_DELAY_S": f"{o.startup_delay:g}",
        "WORKER_PUSH_AUDIENCE": push_audience(o, n),
        "WORKER_PUSH_SERVICE_ACCOUNTS": n.push_account,
    })


def deploy_service(o: DeployOptions, n: Names, service: str, account: str, public: bool) -> tuple[str, ...]:
    """``gcloud run deploy``: creates the service or rolls out a new revision with these settings."""
    probe = (f"httpGet.path={READY_PATH},httpGet.port=8080,periodSeconds={STARTUP_PROBE_PERIOD_S},"
             f"timeoutSeconds=1,failureThreshold={STARTUP_PROBE_FAILURES}")
    return gcloud(
        "run", "deploy", service, _flag("image", n.image), _flag("region", o.region), _flag("project", o.project),
        _flag("service-account", account),
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


def retry_and_dead_letter(o: DeployOptions, n: Names) -> tuple[str, ...]:
    """Ack deadline, retry policy (exponential backoff) and dead-letter policy: both subscriptions."""
    return (
        _flag("ack-deadline", o.ack_deadline_s),
        _flag("min-retry-delay", f"{o.min_retry_delay}s"),
        _flag("max-retry-delay", f"{o.max_retry_delay}s"),
        _flag("dead-letter-topic", n.dead_letter_topic),
        _flag("max-delivery-attempts", o.max_delivery_attempts),
        "--expiration-period=never",
    )


def subscription_settings(o: DeployOptions, n: Names) -> tuple[str, ...]:
    """Push to the worker with an OIDC token of the push account; retry policy; dead-letter policy."""
    return (
        _flag("push-endpoint", f"{WORKER_URL}{PUSH_PATH}"),
        _flag("push-auth-service-account", n.push_account),
        _flag("push-auth-token-audience", push_audience(o, n)),
        *retry_and_dead_letter(o, n),
    )


def pull_subscription_settings(o: DeployOptions, n: Names) -> tuple[str, ...]:
    """Exactly-once delivery (pull only), retry policy, dead-letter policy."""
    return ("--enable-exactly-once-delivery", *retry_and_dead_letter(o, n))


def other_mode_refusal(o: DeployOptions, n: Names) -> Step:
    """Stop ``up`` if the other delivery mode's subscription exists: each frame would be processed twice."""
    other = "pull" if o.delivery == "push" else "push"
    subscription = n.pull_subscription if other == "pull" else n.subscription
    command = f"python -m deploy.gcp down --mode {other} --project {o.project} --region {o.region}"
    if o.name != "frame-fanout":
        command += f" --name {o.name}"
    return refuse(
        f"no {other} subscription {subscription} (both modes on one topic would process every frame twice)",
        describe_subscription(o, subscription),
        f"the {other} subscription {subscription} exists, so this deployment delivers frames by {other}. "
        f"To switch to {o.delivery}: let running jobs finish (collector wait), remove the {other} delivery with "
        f"`{command}` (frames still queued on it are dropped), then run this again.")


def topic_steps(o: DeployOptions, n: Names) -> list[Step]:
    """The frames topic, the dead-letter topic and its keeper subscription (both modes)."""
    project = _flag("project", o.project)
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
        iam_binding("Pub/Sub service agent may publish dead letters",
                    gcloud("pubsub", "topics", "add-iam-policy-binding", n.dead_letter_topic, project,
                           _flag("member", agent_member()), "--role=roles/pubsub.publisher")),
    ]


def results_access(o: DeployOptions, n: Names, account: str, who: str) -> list[Step]:
    """Create + view on the bucket: the identity of a worker that stores results and reads claim checks."""
    return [
        ensure_account(o, account, f"identity of the {who} only", f"{o.name} {who}"),
        bucket_binding(o, n, f"{who} may create objects in the bucket (create-only: no overwrite, no delete)",
                       account, "roles/storage.objectCreator"),
        bucket_binding(o, n, f"{who} may read objects in the bucket (claim-checked payloads)",
                       account, "roles/storage.objectViewer"),
    ]


def push_steps(o: DeployOptions, n: Names) -> list[Step]:
    """The push worker service, its identities and the push subscription."""
    project = _flag("project", o.project)
    push_sa = f"serviceAccount:{n.push_account}"
    return [
        *topic_steps(o, n),
        *results_access(o, n, n.worker_account, "push worker"),
        ensure_account(o, n.push_account, "the identity in Pub/Sub's OIDC push tokens",
                       f"{o.name} Pub/Sub push identity"),
        Step(f"Cloud Run service {n.worker_service}: the worker (private; created or updated)",
             deploy_service(o, n, n.worker_service, n.worker_account, public=False)),
        Step(f"look up the URL of {n.worker_service}",
             describe_service(o, n.worker_service, "status.url"), capture=WORKER_URL),
        iam_binding("push identity may invoke the worker (and nothing else)",
                    gcloud("run", "services", "add-iam-policy-binding", n.worker_service, _flag("region", o.region),
                           project, _flag("member", push_sa), "--role=roles/run.invoker")),
        iam_binding("Pub/Sub service agent may mint OIDC tokens for the push identity",
                    gcloud("iam", "service-accounts", "add-iam-policy-binding", n.push_account, project,
                           _flag("member", agent_member()), "--role=roles/iam.serviceAccountTokenCreator")),
        ensure(f"push subscription {n.subscription} → worker {PUSH_PATH} (created, or updated to these settings)",
               describe_subscription(o, n.subscription),
               gcloud("pubsub", "subscriptions", "create", n.subscription, _flag("topic", n.topic), project,
                      *subscription_settings(o, n)),
               gcloud("pubsub", "subscriptions", "update", n.subscription, project, *subscription_settings(o, n))),
        subscription_binding(o, n.subscription, "Pub/Sub service agent may acknowledge messages it forwards "
                             "as dead letters", agent_member(), "roles/pubsub.subscriber"),
    ]


def pull_env(o: DeployOptions, n: Names) -> str:
    """``--set-env-vars`` value of the worker pool (what ``python -m worker.pull`` reads)."""
    return env_value({
        "GOOGLE_CLOUD_PROJECT": o.project,
        "FRAMES_BUCKET": n.bucket,
        "FRAMES_TOPIC": n.topic,
        "FRAMES_SUBSCRIPTION": n.pull_subscription,
        "PULL_MAX_HELD": str(o.held_per_process),
        "PULL_GRACE_S": str(PULL_GRACE_S),
        "WORKER_FRAME_BUDGET_S": str(o.frame_budget_s),
    })


def pull_args(o: DeployOptions) -> str:
    """The container's arguments: the image's entrypoint runs them instead of gunicorn (same image)."""
    return ",".join(("python", "-m", "worker.pull", f"--processes={o.process_count}"))


def deploy_worker_pool(o: DeployOptions, n: Names, instances: int) -> tuple[str, ...]:
    """``gcloud beta run worker-pools deploy``: creates the pool or rolls out a revision with these settings."""
    return gcloud(
        "beta", "run", "worker-pools", "deploy", n.worker_pool, _flag("image", n.image), _flag("region", o.region),
        _flag("project", o.project), _flag("service-account", n.pull_account), _flag("scaling", instances),
        _flag("cpu", o.cpu), _flag("memory", o.memory), _flag("args", pull_args(o)),
        _flag("set-env-vars", pull_env(o, n)), _flag("labels", f"app=frame-fanout,deployment={o.name}"),
    )


def pull_steps(o: DeployOptions, n: Names) -> list[Step]:
    """The pull subscription (exactly-once), the pull identity and the worker pool."""
    project = _flag("project", o.project)
    pull_sa = f"serviceAccount:{n.pull_account}"
    return [
        *topic_steps(o, n),
        *results_access(o, n, n.pull_account, "pull worker"),
        ensure(f"pull subscription {n.pull_subscription}: exactly-once delivery (created, or updated to these "
               "settings)",
               describe_subscription(o, n.pull_subscription),
               gcloud("pubsub", "subscriptions", "create", n.pull_subscription, _flag("topic", n.topic), project,
                      *pull_subscription_settings(o, n)),
               gcloud("pubsub", "subscriptions", "update", n.pull_subscription, project,
                      *pull_subscription_settings(o, n))),
        subscription_binding(o, n.pull_subscription, "Pub/Sub service agent may acknowledge messages it forwards "
                             "as dead letters", agent_member(), "roles/pubsub.subscriber"),
        subscription_binding(o, n.pull_subscription, "pull worker may pull and acknowledge (this subscription only)",
                             pull_sa, "roles/pubsub.subscriber"),
        subscription_binding(o, n.pull_subscription, "pull worker may read this subscription's settings (it "
                             "checks exactly-once delivery at start)", pull_sa, "roles/pubsub.viewer"),
        Step(f"Cloud Run worker pool {n.worker_pool}: {o.instance_count} instance(s) of python -m worker.pull, "
             f"{o.process_count} process(es) each (created or updated; no ingress)",
             deploy_worker_pool(o, n, o.instance_count)),
    ]


def frontdoor_condition(n: Names) -> str:
    """Create only under ``predict/``."""
    return condition_flag("frontdoor-predict-only", f"create objects under {PREDICT_PREFIX} only",
                          f'resource.name.startsWith("projects/_/buckets/{n.bucket}/objects/{PREDICT_PREFIX}")')


def readiness_condition() -> str:
    """List only the readiness probe's empty prefix (``/readyz`` proves the bucket answers)."""
    return condition_flag("frontdoor-readiness-listing", "list the empty readiness-probe prefix only",
                          'api.getAttribute("storage.googleapis.com/objectListPrefix", "") == '
                          f'"{READINESS_PROBE_PREFIX}"')


def frontdoor_steps(o: DeployOptions, n: Names) -> list[Step]:
    """The Locust front door: the same image as its own service and identity, public or invoker-only."""
    public = o.frontdoor_access == "public"
    access = "public" if public else "IAM-protected"
    steps = [
        ensure_account(o, n.frontdoor_account, "identity of the front door only",
                       f"{o.name} front door (Cloud Run)"),
        bucket_binding(o, n, f"front door may create objects under {PREDICT_PREFIX} only (IAM condition)",
                       n.frontdoor_account, "roles/storage.objectCreator", frontdoor_condition(n)),
        bucket_binding(o, n, f"front door may list {READINESS_PROBE_PREFIX} only (its /readyz; reads nothing)",
                       n.frontdoor_account, "roles/storage.objectViewer", readiness_condition()),
        Step(f"Cloud Run service {n.frontdoor_service}: POST /predict for Locust ({access}; created or updated)",
             deploy_service(o, n, n.frontdoor_service, n.frontdoor_account, public=public)),
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
    if o.deploys_pipeline:  # the mode check right after enabling the APIs, before anything is built
        steps.insert(1, other_mode_refusal(o, n))
        steps += pull_steps(o, n) if o.delivery == "pull" else push_steps(o, n)
    if o.deploys_frontdoor:
        steps += frontdoor_steps(o, n)
    return steps


def scale_steps(o: DeployOptions, n: Names) -> list[Step]:
    """``scale --instances N``: the worker pool's instance count (manual scaling)."""
    if o.delivery != "pull":
        raise OptionsError("scale sets a worker pool's instance count: only with --mode pull "
                           "(a push service scales itself between --min-instances and --max-instances)")
    if o.instances is None:
        raise OptionsError("scale needs --instances N (the worker pool's instance count; 0 stops it)")
    return [Step(f"Cloud Run worker pool {n.worker_pool}: {o.instances} instance(s)",
                 gcloud("beta", "run", "worker-pools", "update", n.worker_pool, _flag("region", o.region),
                        _flag("project", o.project), _flag("scaling", o.instances)))]


# --------------------------------------------------------------------------- down


def remove_bucket_access(o: DeployOptions, n: Names, account: str, who: str) -> list[Step]:
    """Every binding of ``account`` on a kept bucket, whatever its condition (``--all``)."""
    return [
        remove(f"{who}'s {role} bindings on the kept bucket gs://{n.bucket}", describe_bucket(o, n),
               gcloud("storage", "buckets", "remove-iam-policy-binding", f"gs://{n.bucket}",
                      _flag("project", o.project), _flag("member", f"serviceAccount:{account}"), f"--role={role}",
                      "--all"),
               tolerate=("not found",))
        for role in ("roles/storage.objectCreator", "roles/storage.objectViewer")
    ]


def remove_account(o: DeployOptions, email: str) -> Step:
    return remove(f"service account {email}", describe_account(o, email),
                  gcloud("iam", "service-accounts", "delete", email, _flag("project", o.project), "--quiet"))


def down_frontdoor(o: DeployOptions, n: Names) -> tuple[list[Step], list[Step], list[Step]]:
    """The front door's service, its bucket bindings (kept bucket), its account."""
    service = remove(f"Cloud Run service {n.frontdoor_service}", describe_service(o, n.frontdoor_service),
                     gcloud("run", "services", "delete", n.frontdoor_service, _flag("region", o.region),
                            _flag("project", o.project), "--quiet"))
    access = [] if o.delete_data else remove_bucket_access(o, n, n.frontdoor_account, "front door")
    return [service], access, [remove_account(o, n.frontdoor_account)]


def down_push(o: DeployOptions, n: Names) -> tuple[list[Step], list[Step], list[Step], list[Step]]:
    """The push delivery: subscription, worker service, the worker's bucket bindings, both accounts."""
    project = _flag("project", o.project)
    subscription = remove(f"push subscription {n.subscription}", describe_subscription(o, n.subscription),
                          gcloud("pubsub", "subscriptions", "delete", n.subscription, project))
    service = remove(f"Cloud Run service {n.worker_service}", describe_service(o, n.worker_service),
                     gcloud("run", "services", "delete", n.worker_service, _flag("region", o.region), project,
                            "--quiet"))
    access = [] if o.delete_data else remove_bucket_access(o, n, n.worker_account, "push worker")
    return [subscription], [service], access, [remove_account(o, n.push_account), remove_account(o, n.worker_account)]


def down_pull(o: DeployOptions, n: Names) -> tuple[list[Step], list[Step], list[Step], list[Step]]:
    """The pull delivery: subscription, worker pool, the pull worker's bucket bindings, its account."""
    project = _flag("project", o.project)
    subscription = remove(f"pull subscription {n.pull_subscription}", describe_subscription(o, n.pull_subscription),
                          gcloud("pubsub", "subscriptions", "delete", n.pull_subscription, project))
    pool = remove(f"Cloud Run worker pool {n.worker_pool}", describe_worker_pool(o, n),
                  gcloud("beta", "run", "worker-pools", "delete", n.worker_pool, _flag("region", o.region), project,
                         "--quiet"))
    access = [] if o.delete_data else remove_bucket_access(o, n, n.pull_account, "pull worker")
    return [subscription], [pool], access, [remove_account(o, n.pull_account)]


def down_steps(o: DeployOptions, n: Names) -> list[Step]:
    """Everything ``up`` creates in either mode, in reverse dependency order, each only if it exists.

    ``--target frontdoor``: the front door only. ``--mode push|pull``: that delivery only (to switch modes).
    """
    project = _flag("project", o.project)
    if o.target == "frontdoor":
        if o.mode is not None:
            raise OptionsError("down --target frontdoor removes only the front door: without --mode")
        service, access, account = down_frontdoor(o, n)
        return service + access + account
    if o.mode is not None:
        if o.delete_data:
            raise OptionsError("--delete-data deletes the bucket: only with a full down (without --mode)")
        subscription, compute, access, accounts = (down_pull if o.mode == "pull" else down_push)(o, n)
        return subscription + compute + access + accounts
    push_sub, push_compute, push_access, push_accounts = down_push(o, n)
    pull_sub, pull_compute, pull_access, pull_accounts = down_pull(o, n)
    front_service, front_access, front_account = down_frontdoor(o, n)
    from deploy.gcp.decode import decoder_down_steps  # the decode job's identity (its jobs delete themselves)

    *decoder_access, decoder_account = decoder_down_steps(o, n)
    steps = [
        *push_sub, *pull_sub,
        remove(f"dead-letter subscription {n.dead_letter_subscription} (its messages go with it)",
               describe_subscription(o, n.dead_letter_subscription),
               gcloud("pubsub", "subscriptions", "delete", n.dead_letter_subscription, project)),
        remove(f"topic {n.topic}", describe_topic(o, n.topic), gcloud("pubsub", "topics", "delete", n.topic, project)),
        remove(f"topic {n.dead_letter_topic}", describe_topic(o, n.dead_letter_topic),
               gcloud("pubsub", "topics", "delete", n.dead_letter_topic, project)),
        *front_service, *push_compute, *pull_compute,
        *push_access, *pull_access, *front_access, *decoder_access,
        *push_accounts, *pull_accounts, *front_account, decoder_account,
        remove(f"Artifact Registry repository {n.repository} and its images", describe_repository(o, n),
               gcloud("artifacts", "repositories", "delete", n.repository, _flag("location", o.region), project,
                      "--quiet")),
    ]
    if o.delete_data:
        steps.append(remove(f"bucket gs://{n.bucket} and every object in it (--delete-data)", describe_bucket(o, n),
                            gcloud("storage", "rm", "--recursive", f"gs://{n.bucket}", project)))
    return steps


# --------------------------------------------------------------------------- plans


def build_plan(action: Action, options: DeployOptions) -> Plan:
    """The validated, ordered steps of ``up``, ``down`` or ``scale`` for ``options``.

    ``autoscale`` / ``autoscale-down`` (the CREMA set-up, printed, never run): see :mod:`deploy.gcp.autoscale`.
    """
    validate(options)
    names = Names.of(options)
    if action == "up":
        files = {LIFECYCLE_FILE: lifecycle_rule(options.job_data_days)} if options.job_data_days else {}
        return Plan(action, options, names, tuple(up_steps(options, names)), files)
    if action == "down":
        return Plan(action, options, names, tuple(down_steps(options, names)))
    if action == "scale":
        return Plan(action, options, names, tuple(scale_steps(options, names)))
    if action in ("autoscale", "autoscale-down"):
        from deploy.gcp.autoscale import autoscale_plan

        return autoscale_plan(options, names, remove=action == "autoscale-down")
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
    elif step.mode == "refuse":
        assert step.check is not None
        lines.append(f"    check    {shlex.join(step.check)}")
        lines.append("    exists:  stop (nothing changed yet)")
    else:
        assert step.check is not None
        lines.append(f"    check    {shlex.join(step.check)}")
        lines.append(f"    exists:  {shlex.join(step.argv)}")
    return lines


def render_plan(plan: Plan) -> str:
    """Human-readable plan: every command in order, the files, and the placeholders explained."""
    o = plan.options
    mode = {"up": o.delivery, "down": o.mode or "push and pull", "scale": "pull",
            "decode": "a Cloud Run job"}.get(plan.action, "pull")
    image = f", image {plan.names.image}" if plan.action == "up" else ""
    lines = [f"# python -m deploy.gcp {plan.action}: project {o.project}, region {o.region}, "
             f"deployment {o.name}, target {o.target}, mode {mode}{image}"]
    lines.extend(f"# {line}".rstrip() for line in plan.note.splitlines())
    used = {p for argv in gcloud_commands(plan) for p in PLACEHOLDERS if any(p in arg for arg in argv)}
    meanings = {
        PROJECT_NUMBER: "the project number, from `gcloud projects describe` (step output)",
        WORKER_URL: "the worker service's URL, from `gcloud run services describe` (step output)",
        FRONTDOOR_URL: "the front door's URL (step output)",
        LIFECYCLE_FILE: "a temporary file holding the lifecycle rule below",
        CREMA_CONFIG_FILE: "a file holding the CREMA configuration below (save it, e.g. as crema.yaml)",
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
