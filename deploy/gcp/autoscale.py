"""Autoscaling the pull workers on subscription backlog with CREMA (printed, never run by ``up``).

Usage::

    python -m deploy.gcp plan --autoscale --project P --region R [--autoscale-min 0 --autoscale-max 10]
    python -m deploy.gcp plan --autoscale --down --project P --region R      # its removal

A Cloud Run worker pool has a fixed instance count. Google's answer for scaling one on an external
metric is CREMA (Cloud Run External Metrics Autoscaling, GoogleCloudPlatform/cloud-run-external-metrics-
autoscaling): a Cloud Run service running KEDA scalers that sets the pool's instance count through the
Cloud Run Admin API. Its configuration is a ``CremaConfig`` YAML (KEDA ``ScaledObject`` +
``TriggerAuthentication``) read from Parameter Manager.

This module builds that configuration for the deployment (KEDA's ``gcp-pubsub`` trigger on the pull
subscription's undelivered messages, ``--autoscale-backlog`` per instance), checks it against CREMA's own
validation rules and strict field set (transcribed below from ``metric-provider``), and builds the
set-up commands, which the tests parse with the installed gcloud. They are printed, not run: they grant
project-level roles (``monitoring.viewer``, ``run.developer``, ``parametermanager.parameterViewer``) that
the rest of ``deploy.gcp`` never grants, because the installed gcloud (528) has no per-worker-pool or
per-parameter IAM command, and Cloud Monitoring has no per-subscription one. docs/deploy.md says how to
run them and what to check first.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from deploy.gcp.commands import (
    CREMA_CONFIG_FILE,
    Plan,
    Step,
    _flag,
    describe_account,
    describe_service,
    ensure,
    ensure_account,
    gcloud,
    iam_binding,
    remove,
    remove_account,
)
from deploy.gcp.options import DeployOptions, Names, OptionsError

CREMA_IMAGE = "us-central1-docker.pkg.dev/cloud-run-oss-images/crema-v1/autoscaler:1.1"
"""CREMA's pre-built image (its README, 2026-06: KEDA 2.20)."""
CREMA_BASE_IMAGE = "us-central1-docker.pkg.dev/serverless-runtimes/google-24/runtimes/java25"
"""The image is built ``FROM scratch`` for automatic base-image updates: Cloud Run supplies this base."""
PARAMETER_LOCATION = "global"
POLLING_INTERVAL_S = 30
TRIGGER_AUTH = "crema-identity"
PROJECT_ROLES = ("roles/parametermanager.parameterViewer", "roles/monitoring.viewer", "roles/run.developer")
"""Why each is project-wide: Parameter Manager parameters and Cloud Run worker pools have no IAM command
in gcloud 528 (CREMA's README grants ``run.developer`` on the pool with a newer gcloud), and the backlog
is read from Cloud Monitoring, whose roles exist only per project."""

# --------------------------------------------------------------------------- the configuration


def scale_target(o: DeployOptions, n: Names) -> str:
    return f"projects/{o.project}/locations/{o.region}/workerpools/{n.worker_pool}"


def crema_config(o: DeployOptions, n: Names) -> dict[str, Any]:
    """The ``CremaConfig`` for this deployment's worker pool."""
    trigger = {
        "type": "gcp-pubsub",
        "name": "frames-backlog",
        "metadata": {
            "subscriptionName": f"projects/{o.project}/subscriptions/{n.pull_subscription}",
            "mode": "SubscriptionSize",
            "value": str(o.backlog_per_instance),
            "activationValue": "0",
        },
        "authenticationRef": {"name": TRIGGER_AUTH},
    }
    return {
        "apiVersion": "crema/v1",
        "kind": "CremaConfig",
        "spec": {
            "pollingInterval": POLLING_INTERVAL_S,
            "triggerAuthentications": [
                {"metadata": {"name": TRIGGER_AUTH}, "spec": {"podIdentity": {"provider": "gcp"}}},
            ],
            "scaledObjects": [{"spec": {
                "scaleTargetRef": {"name": scale_target(o, n)},
                "minReplicaCount": o.autoscale_min,
                "maxReplicaCount": o.autoscale_max,
                "triggers": [trigger],
            }}],
        },
    }


def to_yaml(value: Any, indent: int = 0) -> str:
    """A small YAML writer for dicts, lists, strings and integers (strings double-quoted, as JSON)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(item, indent + 1).rstrip("\n"))
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            body = to_yaml(item, indent + 1).rstrip("\n").splitlines() if isinstance(item, (dict, list)) else []
            if body:
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise TypeError(f"not written as YAML here: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value))


# --------------------------------------------------------------------------- CREMA's checks, offline

CONFIG_FIELDS = {"apiVersion", "kind", "metadata", "spec"}
SPEC_FIELDS = {"scaledObjects", "triggerAuthentications", "pollingInterval"}
AUTH_FIELDS = {"apiVersion", "kind", "metadata", "spec"}
AUTH_SPEC_FIELDS = {"podIdentity", "gcpSecretManager"}
SCALED_OBJECT_FIELDS = {"spec", "status"}
SCALED_OBJECT_SPEC_FIELDS = {"scaleTargetRef", "pollingInterval", "initialCooldownPeriod", "cooldownPeriod",
                             "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "triggers",
                             "fallback"}
TRIGGER_FIELDS = {"type", "name", "useCachedMetrics", "metadata", "authenticationRef", "metricType"}
"""The JSON fields of CREMA's ``api.CremaConfig`` and of KEDA's ``ScaledObjectSpec`` / ``ScaleTriggers``:
CREMA unmarshals strictly (``yaml.UnmarshalStrict``), so an unknown field is an error."""
SCALE_TARGET = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/locations/[a-z0-9-]+/(services|workerpools)/"
                          r"[a-z]([a-z0-9-]*[a-z0-9])?$")
PUBSUB_MODES = ("SubscriptionSize", "OldestUnackedMessageAge")


def _unknown(path: str, found: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(found) - allowed)
    if extra:
        raise OptionsError(f'{path}: unknown field "{extra[0]}" (CREMA reads its config strictly)')


def _number(path: str, text: Any, low: float) -> None:
    try:
        ok = float(text) >= low
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionsError(f"{path}: must be a number of at least {low:g}, written as a string")


def check_crema_config(config: dict[str, Any]) -> None:
    """Raise :class:`OptionsError` where CREMA would refuse ``config`` (or KEDA's ``gcp-pubsub`` scaler would).

    Transcribed from CREMA's ``metric-provider/internal/config/validator.go`` (commit b95cf54, 2026-06:
    the messages are CREMA's), plus its strict field set, KEDA's ``map[string]string`` trigger metadata,
    the fully qualified ``scaleTargetRef`` it requires, and the ``gcp-pubsub`` trigger's own keys.
    """
    _unknown("config", config, CONFIG_FIELDS)
    if config.get("apiVersion") != "crema/v1" or config.get("kind") != "CremaConfig":
        raise OptionsError("config: apiVersion crema/v1, kind CremaConfig expected")
    spec = config.get("spec") or {}
    _unknown("spec", spec, SPEC_FIELDS)
    scaled_objects = spec.get("scaledObjects") or []
    if not scaled_objects:
        raise OptionsError("spec.scaledObjects: must have at least one scaled object")
    auths: set[str] = set()
    for i, auth in enumerate(spec.get("triggerAuthentications") or []):
        _unknown(f"triggerAuthentications[{i}]", auth, AUTH_FIELDS)
        name = (auth.get("metadata") or {}).get("name", "")
        if not name:
            raise OptionsError(f"triggerAuthentications[{i}].metadata.name: must be set")
        auth_spec = auth.get("spec") or {}
        _unknown(f"triggerAuthentications[{i}].spec", auth_spec, AUTH_SPEC_FIELDS)
        if not auth_spec:
            raise OptionsError(f"triggerAuthentications[{i}].spec: must be set")
        if "podIdentity" in auth_spec and not (auth_spec["podIdentity"] or {}).get("provider"):
            raise OptionsError(f"triggerAuthentications[{i}].spec.podIdentity.provider: must be set")
        if name in auths:
            raise OptionsError(f"triggerAuthentications[{i}].metadata.name: must be unique")
        auths.add(name)
    for i, scaled in enumerate(scaled_objects):
        _unknown(f"scaledObjects[{i}]", scaled, SCALED_OBJECT_FIELDS)
        so = scaled.get("spec") or {}
        _unknown(f"scaledObjects[{i}].spec", so, SCALED_OBJECT_SPEC_FIELDS)
        target = (so.get("scaleTargetRef") or {}).get("name", "")
        if not target:
            raise OptionsError(f"scaledObjects[{i}].spec.scaleTargetRef.name: must be set")
        if not SCALE_TARGET.match(target):
            raise OptionsError(f"scaledObjects[{i}].spec.scaleTargetRef.name: {target!r} is not "
                               "projects/P/locations/R/workerpools/NAME (or services/NAME)")
        if "pollingInterval" in so:
            raise OptionsError(f"scaledObjects[{i}].spec.pollingInterval: must only be specified as part of "
                               "top-level CremaConfig.spec")
        low, high = so.get("minReplicaCount", 0), so.get("maxReplicaCount", 100)
        if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
            raise OptionsError(f"scaledObjects[{i}].spec: minReplicaCount {low} must be 0..maxReplicaCount {high}")
        triggers = so.get("triggers") or []
        if not triggers:
            raise OptionsError(f"scaledObjects[{i}].spec.triggers: must have at least one trigger")
        for j, trigger in enumerate(triggers):
            path = f"scaledObjects[{i}].spec.triggers[{j}]"
            _unknown(path, trigger, TRIGGER_FIELDS)
            if not trigger.get("type"):
                raise OptionsError(f"{path}.type: must be set")
            ref = (trigger.get("authenticationRef") or {}).get("name", "")
            if ref and ref not in auths:
                raise OptionsError(f'{path}.authenticationRef.name: trigger authentication "{ref}" not found')
            metadata = trigger.get("metadata") or {}
            for key, value in metadata.items():
                if not isinstance(value, str):
                    raise OptionsError(f"{path}.metadata.{key}: must be a string (KEDA metadata is "
                                       "map[string]string)")
            if trigger["type"] == "gcp-pubsub":
                _check_pubsub_trigger(path, metadata)


def _check_pubsub_trigger(path: str, metadata: dict[str, str]) -> None:
    names = [key for key in ("subscriptionName", "topicName") if metadata.get(key)]
    if len(names) != 1:
        raise OptionsError(f"{path}.metadata: exactly one of subscriptionName, topicName")
    if any(key.endswith("FromEnv") for key in metadata):
        raise OptionsError(f"{path}.metadata: CREMA does not resolve environment variables (*FromEnv)")
    if metadata.get("mode", "SubscriptionSize") not in PUBSUB_MODES:
        raise OptionsError(f"{path}.metadata.mode: one of {', '.join(PUBSUB_MODES)}")
    _number(f"{path}.metadata.value", metadata.get("value", "10"), 1)
    _number(f"{path}.metadata.activationValue", metadata.get("activationValue", "0"), 0)


# --------------------------------------------------------------------------- the set-up commands


def version_id(config_yaml: str) -> str:
    """Parameter versions are immutable: a new configuration is a new version, named by its content."""
    return "v-" + hashlib.sha256(config_yaml.encode()).hexdigest()[:12]


NOTE = """CREMA set-up for the worker pool: printed, NOT run by `up`. These commands grant project-wide roles
(parametermanager.parameterViewer, monitoring.viewer, run.developer) to the autoscaler's own account,
which the rest of deploy.gcp never does; read docs/deploy.md ("Autoscaling a worker pool") first.
They are idempotent like up's: each check decides between creating and leaving alone."""


def autoscale_plan(o: DeployOptions, n: Names, remove: bool = False) -> Plan:
    """The CREMA set-up (or removal) for the deployment's worker pool; validated configuration included."""
    config = crema_config(o, n)
    check_crema_config(config)
    text = to_yaml(config)
    version = version_id(text)
    steps = removal_steps(o, n, version) if remove else setup_steps(o, n, version)
    action = "autoscale-down" if remove else "autoscale"
    files = {} if remove else {CREMA_CONFIG_FILE: text}
    return Plan(action, o, n, tuple(steps), files, note=NOTE)


def _project(o: DeployOptions) -> str:
    return _flag("project", o.project)


def _parameter_args(o: DeployOptions, n: Names) -> tuple[str, ...]:
    return (_flag("location", PARAMETER_LOCATION), _project(o))


def setup_steps(o: DeployOptions, n: Names, version: str) -> list[Step]:
    crema_sa = f"serviceAccount:{n.autoscaler_account}"
    config_name = (f"projects/{o.project}/locations/{PARAMETER_LOCATION}/parameters/{n.autoscaler_parameter}"
                   f"/versions/{version}")
    env = f"CREMA_CONFIG={config_name},OUTPUT_SCALER_METRICS=False,ENABLE_CLOUD_LOGGING=False"
    steps = [
        Step("enable Parameter Manager and Cloud Monitoring (no-op when enabled)",
             gcloud("services", "enable", "parametermanager.googleapis.com", "monitoring.googleapis.com", _project(o))),
        ensure(f"parameter {n.autoscaler_parameter}: where CREMA reads its configuration",
               gcloud("parametermanager", "parameters", "describe", n.autoscaler_parameter,
                      *_parameter_args(o, n), "--format=value(name)"),
               gcloud("parametermanager", "parameters", "create", n.autoscaler_parameter, "--parameter-format=YAML",
                      *_parameter_args(o, n))),
        ensure(f"parameter version {version}: this configuration (named by its content)",
               gcloud("parametermanager", "parameters", "versions", "describe", version,
                      _flag("parameter", n.autoscaler_parameter), *_parameter_args(o, n), "--format=value(name)"),
               gcloud("parametermanager", "parameters", "versions", "create", version,
                      _flag("parameter", n.autoscaler_parameter), *_parameter_args(o, n),
                      _flag("payload-data-from-file", CREMA_CONFIG_FILE))),
        ensure_account(o, n.autoscaler_account, "identity of the autoscaler (CREMA) only",
                       f"{o.name} autoscaler (CREMA)"),
    ]
    steps += [
        iam_binding(f"autoscaler gets {role} (project-wide; see the note above)",
                    gcloud("projects", "add-iam-policy-binding", o.project, _flag("member", crema_sa),
                           f"--role={role}", "--condition=None"))
        for role in PROJECT_ROLES
    ]
    steps += [
        iam_binding("autoscaler may act as the pull worker's account (it rewrites the pool's instance count)",
                    gcloud("iam", "service-accounts", "add-iam-policy-binding", n.pull_account, _project(o),
                           _flag("member", crema_sa), "--role=roles/iam.serviceAccountUser")),
        Step(f"Cloud Run service {n.autoscaler_service}: CREMA, one instance, CPU always on, internal ingress only",
             gcloud("beta", "run", "deploy", n.autoscaler_service, _flag("image", CREMA_IMAGE),
                    _flag("base-image", CREMA_BASE_IMAGE), _flag("region", o.region), _project(o),
                    _flag("service-account", n.autoscaler_account), "--no-allow-unauthenticated",
                    "--ingress=internal", "--no-cpu-throttling", "--scaling=1", _flag("set-env-vars", env),
                    _flag("labels", f"app=frame-fanout,deployment={o.name},created-by=crema"))),
    ]
    return steps


def removal_steps(o: DeployOptions, n: Names, version: str) -> list[Step]:
    crema_sa = f"serviceAccount:{n.autoscaler_account}"
    steps = [
        remove(f"Cloud Run service {n.autoscaler_service}", describe_service(o, n.autoscaler_service),
               gcloud("run", "services", "delete", n.autoscaler_service, _flag("region", o.region), _project(o),
                      "--quiet")),
    ]
    steps += [
        remove(f"autoscaler's project-wide {role}", describe_account(o, n.autoscaler_account),
               gcloud("projects", "remove-iam-policy-binding", o.project, _flag("member", crema_sa),
                      f"--role={role}", "--all"), tolerate=("not found",))
        for role in PROJECT_ROLES
    ]
    steps += [
        remove_account(o, n.autoscaler_account),
        remove(f"parameter version {version} (older versions: gcloud parametermanager parameters versions list)",
               gcloud("parametermanager", "parameters", "versions", "describe", version,
                      _flag("parameter", n.autoscaler_parameter), *_parameter_args(o, n), "--format=value(name)"),
               gcloud("parametermanager", "parameters", "versions", "delete", version,
                      _flag("parameter", n.autoscaler_parameter), *_parameter_args(o, n), "--quiet")),
        remove(f"parameter {n.autoscaler_parameter}",
               gcloud("parametermanager", "parameters", "describe", n.autoscaler_parameter, *_parameter_args(o, n),
                      "--format=value(name)"),
               gcloud("parametermanager", "parameters", "delete", n.autoscaler_parameter, *_parameter_args(o, n),
                      "--quiet")),
    ]
    return steps
