"""``python -m deploy.gcp``: the plans for the flag combinations that matter (push and pull modes, scale, the
front door's identity, the CREMA autoscaler set-up), the runner's idempotency logic, and every generated
command parsed by the installed Google Cloud CLI (offline, no credentials).

Usage::

    .venv/bin/python -m pytest tests/deploy/test_gcp.py            # ~1-2 min (gcloud runs ~1 s per command)
    .venv/bin/python -m pytest -m gcloud_offline                    # only the gcloud argument checks
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from deploy.gcp import cli
from deploy.gcp.autoscale import check_crema_config, crema_config, to_yaml
from deploy.gcp.commands import (
    CREMA_CONFIG_FILE,
    FRONTDOOR_URL,
    LIFECYCLE_FILE,
    PROJECT_NUMBER,
    READINESS_PROBE_PREFIX,
    WORKER_URL,
    Plan,
    build_plan,
    gcloud_commands,
    substitute,
)
from deploy.gcp.decode import DecodeOptions, decode_plan, job_name
from deploy.gcp.options import DeployOptions, Names, OptionsError
from deploy.gcp.runner import DeployError, Result, execute

REPO = Path(__file__).resolve().parents[2]
BASE = DeployOptions(project="ff-test-project", region="europe-west1", tag="abc123")
PULL = dataclasses.replace(BASE, mode="pull")
IMAGE = "eu.gcr.io/p/w:1"
AGENT = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
SA = "@ff-test-project.iam.gserviceaccount.com"
BUCKET = "gs://ff-test-project-frame-fanout"


def flat(plan: Plan) -> list[str]:
    return [" ".join(argv) for argv in gcloud_commands(plan)]


def command(plan: Plan, *words: str) -> list[str]:
    """The single command of the plan that starts with ``gcloud <words>``."""
    found = [argv for argv in gcloud_commands(plan) if tuple(argv[1:1 + len(words)]) == words]
    assert len(found) == 1, f"expected one `gcloud {' '.join(words)}`, got {len(found)}"
    return found[0]


def outline(plan: Plan) -> list[tuple[str, str]]:
    """Each step as (its mode, its command up to the first flag): the plan's shape, in order."""
    def words(argv: tuple[str, ...]) -> str:
        head = []
        for arg in argv[1:]:
            if arg.startswith("--"):
                break
            head.append(arg)
        return " ".join(head)
    return [(step.mode, words(step.argv or step.check or ())) for step in plan.steps]


def role_bindings(plan: Plan) -> list[tuple[str, str, str]]:
    """(resource command, member, role) of every add-iam-policy-binding in the plan."""
    found = []
    for argv in gcloud_commands(plan):
        if "add-iam-policy-binding" in argv:
            flags = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
            resource = " ".join(argv[1:argv.index("add-iam-policy-binding") + 2])
            found.append((resource, flags["member"], flags["role"]))
    return found


def index_of(plan: Plan, text: str) -> int:
    lines = flat(plan)
    hits = [i for i, line in enumerate(lines) if text in line]
    assert hits, f"{text!r} not in the plan"
    return hits[0]


# --------------------------------------------------------------------------- plans


def test_up_defaults_are_the_study_winning_values() -> None:
    deploy = command(build_plan("up", BASE), "run", "deploy")
    for flag in ("--cpu=1", "--concurrency=30", "--min-instances=5", "--max-instances=100", "--memory=2Gi",
                 "--cpu-throttling", "--cpu-boost", "--timeout=600s", "--no-allow-unauthenticated",
                 "--service-account=frame-fanout-worker@ff-test-project.iam.gserviceaccount.com"):
        assert flag in deploy
    assert any(a.startswith("--startup-probe=httpGet.path=/readyz,") for a in deploy)
    sub = command(build_plan("up", BASE), "pubsub", "subscriptions", "create", "frame-fanout-frames-push")
    for flag in ("--ack-deadline=600", "--max-delivery-attempts=5", "--min-retry-delay=10s", "--max-retry-delay=600s",
                 "--dead-letter-topic=frame-fanout-frames-dead-letter", f"--push-endpoint={WORKER_URL}/pubsub/push",
                 f"--push-auth-token-audience=https://frame-fanout-worker-{PROJECT_NUMBER}.europe-west1.run.app"
                 "/pubsub/push",
                 "--push-auth-service-account=frame-fanout-push@ff-test-project.iam.gserviceaccount.com"):
        assert flag in sub


def test_every_study_knob_is_a_flag_that_reaches_gcloud() -> None:
    args = ["plan", "--project", "ff-test-project", "--region", "us-central1", "--tag", "t1",
            "--concurrency", "80", "--min-instances", "0", "--max-instances", "38", "--cpu", "2", "--memory", "4Gi",
            "--no-cpu-throttling", "--no-cpu-boost", "--timeout", "120", "--ack-deadline", "60",
            "--max-delivery-attempts", "12", "--min-retry-delay", "2", "--max-retry-delay", "30"]
    options = cli.options_from_args(cli.build_parser().parse_args(args))
    plan = build_plan("up", options)
    deploy = command(plan, "run", "deploy")
    for flag in ("--concurrency=80", "--min-instances=0", "--max-instances=38", "--cpu=2", "--memory=4Gi",
                 "--no-cpu-throttling", "--no-cpu-boost", "--timeout=120s"):
        assert flag in deploy
    env = next(a for a in deploy if a.startswith("--set-env-vars="))
    assert "WEB_CONCURRENCY=2," in env and "WORKER_MAX_IN_FLIGHT=40," in env and "WORKER_FRAME_BUDGET_S=30," in env
    assert "WORKER_PREDICT_BUDGET_S=10," in env  # both budgets inside the request timeout
    sub = command(plan, "pubsub", "subscriptions", "update")
    for flag in ("--ack-deadline=60", "--max-delivery-attempts=12", "--min-retry-delay=2s", "--max-retry-delay=30s"):
        assert flag in sub


def test_push_authentication_is_consistent_between_subscription_worker_and_cloud_run() -> None:
    plan = build_plan("up", dataclasses.replace(BASE, target="all"))
    deploys = [argv for argv in gcloud_commands(plan) if argv[1:3] == ["run", "deploy"]]
    sub = command(plan, "pubsub", "subscriptions", "create", "frame-fanout-frames-push")
    audience = next(a for a in sub if a.startswith("--push-auth-token-audience=")).split("=", 1)[1]
    push_account = next(a for a in sub if a.startswith("--push-auth-service-account=")).split("=", 1)[1]
    assert PROJECT_NUMBER in audience and audience.endswith("/pubsub/push")
    for deploy in deploys:  # both services check push tokens; only the worker accepts the audience at Cloud Run
        env = dict(kv.split("=", 1) for kv in next(a for a in deploy if a.startswith("--set-env-vars="))
                   .removeprefix("--set-env-vars=").split(","))
        assert env["WORKER_PUSH_AUDIENCE"] == audience and env["WORKER_PUSH_SERVICE_ACCOUNTS"] == push_account
    worker, frontdoor = deploys
    assert f"--set-custom-audiences={audience}" in worker
    assert not any(a.startswith("--set-custom-audiences") for a in frontdoor)


def test_given_image_skips_cloud_build_and_artifact_registry() -> None:
    built = build_plan("up", BASE)
    assert "europe-west1-docker.pkg.dev/ff-test-project/frame-fanout/worker:abc123" in " ".join(flat(built))
    assert any(line.startswith("gcloud builds submit") for line in flat(built))
    given = build_plan("up", dataclasses.replace(BASE, image="eu.gcr.io/x/worker@sha256:00"))
    text = "\n".join(flat(given))
    assert "builds submit" not in text and "artifacts repositories" not in text
    assert "--image=eu.gcr.io/x/worker@sha256:00" in command(given, "run", "deploy")
    assert "cloudbuild.googleapis.com" not in text


def test_up_order_resources_exist_before_they_are_used() -> None:
    plan = build_plan("up", BASE)
    number = index_of(plan, "projects describe")
    url = index_of(plan, "run services describe frame-fanout-worker")
    assert number < min(i for i, line in enumerate(flat(plan)) if PROJECT_NUMBER in line)
    assert index_of(plan, "builds submit") < index_of(plan, "run deploy frame-fanout-worker") < url
    assert url < index_of(plan, "subscriptions create frame-fanout-frames-push")
    assert index_of(plan, "service-accounts create frame-fanout-push") < index_of(plan, "run services add-iam")
    assert index_of(plan, "topics create frame-fanout-frames-dead-letter") < index_of(
        plan, "subscriptions create frame-fanout-frames-push")
    assert index_of(plan, "subscriptions create frame-fanout-frames-push") < index_of(
        plan, "subscriptions add-iam-policy-binding frame-fanout-frames-push")


def test_iam_is_least_privilege() -> None:
    lines = [line for line in flat(build_plan("up", BASE)) if "add-iam-policy-binding" in line]
    roles = sorted(re.search(r"--role=(\S+)", line)[1] for line in lines)
    assert roles == sorted(["roles/storage.objectCreator", "roles/storage.objectViewer", "roles/run.invoker",
                            "roles/iam.serviceAccountTokenCreator", "roles/pubsub.publisher",
                            "roles/pubsub.subscriber"])
    agent = f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"
    by_role = {re.search(r"--role=(\S+)", line)[1]: line for line in lines}
    assert by_role["roles/pubsub.publisher"].startswith("gcloud pubsub topics add-iam-policy-binding "
                                                        "frame-fanout-frames-dead-letter ")
    assert by_role["roles/pubsub.subscriber"].startswith("gcloud pubsub subscriptions add-iam-policy-binding "
                                                         "frame-fanout-frames-push ")
    for role in ("roles/pubsub.publisher", "roles/pubsub.subscriber", "roles/iam.serviceAccountTokenCreator"):
        assert f"--member={agent}" in by_role[role]
    assert "--member=serviceAccount:frame-fanout-push@" in by_role["roles/run.invoker"]
    for role in ("roles/storage.objectCreator", "roles/storage.objectViewer"):
        assert by_role[role].startswith(
            "gcloud storage buckets add-iam-policy-binding gs://ff-test-project-frame-fanout ")
    assert not any("projects add-iam-policy-binding" in line for line in flat(build_plan("up", BASE)))


def test_frontdoor_alone_public_or_iam() -> None:
    public = build_plan("up", dataclasses.replace(BASE, target="frontdoor", frontdoor_access="public"))
    text = "\n".join(flat(public))
    assert "run deploy frame-fanout-frontdoor" in text and "run deploy frame-fanout-worker" not in text
    assert "gcloud pubsub" not in text and "service-accounts create frame-fanout-push" not in text
    assert "--allow-unauthenticated" in command(public, "run", "deploy")
    private = build_plan("up", dataclasses.replace(BASE, target="frontdoor", frontdoor_invokers=("user:a@b.org",)))
    assert "--no-allow-unauthenticated" in command(private, "run", "deploy")
    binding = command(private, "run", "services", "add-iam-policy-binding")
    assert "--member=user:a@b.org" in binding and "frame-fanout-frontdoor" in binding
    both = build_plan("up", dataclasses.replace(BASE, target="all"))
    assert sum(line.startswith("gcloud run deploy") for line in flat(both)) == 2


def test_lifecycle_rule_and_bucket_naming() -> None:
    plan = build_plan("up", dataclasses.replace(BASE, job_data_days=3, bucket="my-frames"))
    assert '"age": 3' in plan.files[LIFECYCLE_FILE] and '"jobs/"' in plan.files[LIFECYCLE_FILE]
    assert f"--lifecycle-file={LIFECYCLE_FILE}" in command(plan, "storage", "buckets", "update")
    keep = build_plan("up", dataclasses.replace(BASE, job_data_days=0))
    assert keep.files == {} and "--clear-lifecycle" in command(keep, "storage", "buckets", "update")
    assert "gs://my-frames" in command(plan, "storage", "buckets", "create")


def test_down_keeps_the_bucket_unless_delete_data() -> None:
    kept = "\n".join(flat(build_plan("down", BASE)))
    assert "storage rm" not in kept and "buckets delete" not in kept
    assert "remove-iam-policy-binding gs://ff-test-project-frame-fanout" in kept
    for gone in ("subscriptions delete frame-fanout-frames-push", "topics delete frame-fanout-frames ",
                 "run services delete frame-fanout-worker", "run services delete frame-fanout-frontdoor",
                 "service-accounts delete frame-fanout-push@", "service-accounts delete frame-fanout-worker@",
                 "artifacts repositories delete frame-fanout"):
        assert gone in kept
    wiped = flat(build_plan("down", dataclasses.replace(BASE, delete_data=True)))
    assert wiped[-1] == "gcloud storage rm --recursive gs://ff-test-project-frame-fanout --project=ff-test-project"
    only_frontdoor = build_plan("down", dataclasses.replace(BASE, target="frontdoor"))
    assert outline(only_frontdoor) == [
        ("remove", "run services delete frame-fanout-frontdoor"),
        ("remove", f"storage buckets remove-iam-policy-binding {BUCKET}"),
        ("remove", f"storage buckets remove-iam-policy-binding {BUCKET}"),
        ("remove", f"iam service-accounts delete frame-fanout-front{SA}"),
    ]


# --------------------------------------------------------------------------- pull mode (worker pool)


def test_up_pull_plan_is_a_worker_pool_on_an_exactly_once_pull_subscription() -> None:
    plan = build_plan("up", dataclasses.replace(PULL, image=IMAGE))
    assert outline(plan) == [
        ("run", "services enable run.googleapis.com pubsub.googleapis.com storage.googleapis.com iam.googleapis.com"),
        ("refuse", "pubsub subscriptions describe frame-fanout-frames-push"),
        ("run", "projects describe ff-test-project"),
        ("ensure", f"storage buckets create {BUCKET}"),
        ("run", f"storage buckets update {BUCKET}"),
        ("ensure", "pubsub topics create frame-fanout-frames"),
        ("ensure", "pubsub topics create frame-fanout-frames-dead-letter"),
        ("ensure", "pubsub subscriptions create frame-fanout-frames-dead-letter-keep"),
        ("run", "pubsub topics add-iam-policy-binding frame-fanout-frames-dead-letter"),
        ("ensure", "iam service-accounts create frame-fanout-pull"),
        ("run", f"storage buckets add-iam-policy-binding {BUCKET}"),
        ("run", f"storage buckets add-iam-policy-binding {BUCKET}"),
        ("ensure", "pubsub subscriptions create frame-fanout-frames-pull"),
        ("run", "pubsub subscriptions add-iam-policy-binding frame-fanout-frames-pull"),
        ("run", "pubsub subscriptions add-iam-policy-binding frame-fanout-frames-pull"),
        ("run", "pubsub subscriptions add-iam-policy-binding frame-fanout-frames-pull"),
        ("run", "beta run worker-pools deploy frame-fanout-pull-worker"),
    ]
    settings = ["--enable-exactly-once-delivery", "--ack-deadline=60", "--min-retry-delay=10s",
                "--max-retry-delay=600s", "--dead-letter-topic=frame-fanout-frames-dead-letter",
                "--max-delivery-attempts=5", "--expiration-period=never"]
    assert command(plan, "pubsub", "subscriptions", "create", "frame-fanout-frames-pull") == [
        "gcloud", "pubsub", "subscriptions", "create", "frame-fanout-frames-pull", "--topic=frame-fanout-frames",
        "--project=ff-test-project", *settings]
    assert command(plan, "pubsub", "subscriptions", "update", "frame-fanout-frames-pull") == [
        "gcloud", "pubsub", "subscriptions", "update", "frame-fanout-frames-pull", "--project=ff-test-project",
        *settings]
    assert command(plan, "beta", "run", "worker-pools", "deploy") == [
        "gcloud", "beta", "run", "worker-pools", "deploy", "frame-fanout-pull-worker", f"--image={IMAGE}",
        "--region=europe-west1", "--project=ff-test-project", f"--service-account=frame-fanout-pull{SA}",
        "--scaling=1", "--cpu=1", "--memory=2Gi", "--args=python,-m,worker.pull,--processes=1",
        "--set-env-vars=GOOGLE_CLOUD_PROJECT=ff-test-project,FRAMES_BUCKET=ff-test-project-frame-fanout,"
        "FRAMES_TOPIC=frame-fanout-frames,FRAMES_SUBSCRIPTION=frame-fanout-frames-pull,PULL_MAX_HELD=3,"
        "PULL_GRACE_S=8,WORKER_FRAME_BUDGET_S=30",
        "--labels=app=frame-fanout,deployment=frame-fanout"]
    text = "\n".join(flat(plan))  # worker pools have no ingress: nothing pushes, nothing invokes
    assert "--push-endpoint" not in text and "run.invoker" not in text and "frame-fanout-push@" not in text
    assert "run deploy" not in text and "serviceAccountTokenCreator" not in text


def test_pull_knobs_reach_the_worker_pool() -> None:
    plan = build_plan("up", dataclasses.replace(PULL, image=IMAGE, cpu="4", memory="4Gi", instances=3, max_held=5,
                                                ack_deadline=120, max_delivery_attempts=9))
    deploy = command(plan, "beta", "run", "worker-pools", "deploy")
    for flag in ("--scaling=3", "--cpu=4", "--memory=4Gi", "--args=python,-m,worker.pull,--processes=4"):
        assert flag in deploy
    env = next(a for a in deploy if a.startswith("--set-env-vars=")).removeprefix("--set-env-vars=")
    assert "PULL_MAX_HELD=5," in env and "WORKER_FRAME_BUDGET_S=30" in env
    sub = command(plan, "pubsub", "subscriptions", "update")
    assert "--ack-deadline=120" in sub and "--max-delivery-attempts=9" in sub
    explicit = build_plan("up", dataclasses.replace(PULL, image=IMAGE, processes=2, cpu="0.5", memory="1Gi"))
    assert "--args=python,-m,worker.pull,--processes=2" in command(explicit, "beta", "run", "worker-pools", "deploy")


def test_pull_arguments_and_environment_are_what_worker_pull_reads(tmp_path: Path) -> None:
    from worker.pull import PullConfig
    from worker.pull import build_parser as pull_parser

    deploy = command(build_plan("up", dataclasses.replace(PULL, image=IMAGE, instances=2, max_held=4)),
                     "beta", "run", "worker-pools", "deploy")
    args = next(a for a in deploy if a.startswith("--args=")).removeprefix("--args=").split(",")
    assert args[:3] == ["python", "-m", "worker.pull"]
    assert pull_parser().parse_args(args[3:]).processes == 1
    env = dict(kv.split("=", 1) for kv in next(a for a in deploy if a.startswith("--set-env-vars="))
               .removeprefix("--set-env-vars=").split(","))
    config = PullConfig.from_env({**env, "FRAME_FANOUT_SETTINGS": str(tmp_path / "none.json")})
    assert config.subscription_path == "projects/ff-test-project/subscriptions/frame-fanout-frames-pull"
    assert config.settings.bucket == "ff-test-project-frame-fanout"
    assert (config.max_held, config.grace_s, config.frame_budget_s) == (4, 8.0, 30.0)


def test_image_entrypoint_runs_a_given_command_instead_of_gunicorn() -> None:
    """The worker pool passes `python -m worker.pull ...` as arguments: the entrypoint must exec them."""
    proc = subprocess.run(["sh", str(REPO / "deploy/docker-entrypoint.sh"), "echo", "pull", "worker"],
                          capture_output=True, text=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, "pull worker\n")


def test_pull_identity_is_least_privilege() -> None:
    bindings = role_bindings(build_plan("up", PULL))
    pull_sa = f"serviceAccount:frame-fanout-pull{SA}"
    assert sorted(b for b in bindings if b[1] == pull_sa) == sorted([
        ("pubsub subscriptions add-iam-policy-binding frame-fanout-frames-pull", pull_sa, "roles/pubsub.subscriber"),
        ("pubsub subscriptions add-iam-policy-binding frame-fanout-frames-pull", pull_sa, "roles/pubsub.viewer"),
        (f"storage buckets add-iam-policy-binding {BUCKET}", pull_sa, "roles/storage.objectCreator"),
        (f"storage buckets add-iam-policy-binding {BUCKET}", pull_sa, "roles/storage.objectViewer"),
    ])
    assert sorted(b for b in bindings if b[1] == AGENT) == sorted([
        ("pubsub topics add-iam-policy-binding frame-fanout-frames-dead-letter", AGENT, "roles/pubsub.publisher"),
        ("pubsub subscriptions add-iam-policy-binding frame-fanout-frames-pull", AGENT, "roles/pubsub.subscriber"),
    ])
    assert {b[1] for b in bindings} == {pull_sa, AGENT}
    assert not any("projects add-iam-policy-binding" in line for line in flat(build_plan("up", PULL)))


def test_push_stays_the_default_and_each_mode_refuses_the_other() -> None:
    push, pull = build_plan("up", BASE), build_plan("up", PULL)
    assert push.options.delivery == "push" and "run deploy frame-fanout-worker" in "\n".join(flat(push))
    assert ("refuse", "pubsub subscriptions describe frame-fanout-frames-pull") in outline(push)
    assert ("refuse", "pubsub subscriptions describe frame-fanout-frames-push") in outline(pull)
    refusal = next(step for step in pull.steps if step.mode == "refuse").refusal
    assert refusal == (
        "the push subscription frame-fanout-frames-push exists, so this deployment delivers frames by push. To switch "
        "to pull: let running jobs finish (collector wait), remove the push delivery with `python -m deploy.gcp down "
        "--mode push --project ff-test-project --region europe-west1` (frames still queued on it are dropped), then "
        "run this again.")
    frontdoor_only = build_plan("up", dataclasses.replace(PULL, target="frontdoor"))
    assert not any(step.mode == "refuse" for step in frontdoor_only.steps)


def test_scale_sets_the_worker_pool_instance_count() -> None:
    plan = build_plan("scale", dataclasses.replace(PULL, instances=7))
    assert gcloud_commands(plan) == [["gcloud", "beta", "run", "worker-pools", "update", "frame-fanout-pull-worker",
                                      "--region=europe-west1", "--project=ff-test-project", "--scaling=7"]]
    assert "--scaling=0" in gcloud_commands(build_plan("scale", dataclasses.replace(PULL, instances=0)))[0]
    with pytest.raises(OptionsError, match=r"^scale needs --instances N \(the worker pool's instance count; 0 "
                                           r"stops it\)$"):
        build_plan("scale", PULL)
    with pytest.raises(OptionsError, match=r"^scale sets a worker pool's instance count: only with --mode pull "):
        build_plan("scale", dataclasses.replace(BASE, mode="push"))


def test_down_covers_both_modes_and_can_remove_one() -> None:
    everything = build_plan("down", BASE)
    assert outline(everything) == [
        ("remove", "pubsub subscriptions delete frame-fanout-frames-push"),
        ("remove", "pubsub subscriptions delete frame-fanout-frames-pull"),
        ("remove", "pubsub subscriptions delete frame-fanout-frames-dead-letter-keep"),
        ("remove", "pubsub topics delete frame-fanout-frames"),
        ("remove", "pubsub topics delete frame-fanout-frames-dead-letter"),
        ("remove", "run services delete frame-fanout-frontdoor"),
        ("remove", "run services delete frame-fanout-worker"),
        ("remove", "beta run worker-pools delete frame-fanout-pull-worker"),
        *[("remove", f"storage buckets remove-iam-policy-binding {BUCKET}")] * 7,
        ("remove", f"iam service-accounts delete frame-fanout-push{SA}"),
        ("remove", f"iam service-accounts delete frame-fanout-worker{SA}"),
        ("remove", f"iam service-accounts delete frame-fanout-pull{SA}"),
        ("remove", f"iam service-accounts delete frame-fanout-front{SA}"),
        ("remove", f"iam service-accounts delete frame-fanout-decode{SA}"),
        ("remove", "artifacts repositories delete frame-fanout"),
    ]
    unbind = [argv for argv in gcloud_commands(everything) if "remove-iam-policy-binding" in argv]
    assert all(argv[-1] == "--all" for argv in unbind)  # whatever condition the binding carries
    assert {a for argv in unbind for a in argv if a.startswith("--member=")} == {
        f"--member=serviceAccount:frame-fanout-{who}{SA}" for who in ("worker", "pull", "front", "decode")}
    assert command(everything, "beta", "run", "worker-pools", "delete") == [
        "gcloud", "beta", "run", "worker-pools", "delete", "frame-fanout-pull-worker", "--region=europe-west1",
        "--project=ff-test-project", "--quiet"]
    assert outline(build_plan("down", PULL)) == [
        ("remove", "pubsub subscriptions delete frame-fanout-frames-pull"),
        ("remove", "beta run worker-pools delete frame-fanout-pull-worker"),
        ("remove", f"storage buckets remove-iam-policy-binding {BUCKET}"),
        ("remove", f"storage buckets remove-iam-policy-binding {BUCKET}"),
        ("remove", f"iam service-accounts delete frame-fanout-pull{SA}"),
    ]
    assert outline(build_plan("down", dataclasses.replace(BASE, mode="push"))) == [
        ("remove", "pubsub subscriptions delete frame-fanout-frames-push"),
        ("remove", "run services delete frame-fanout-worker"),
        ("remove", f"storage buckets remove-iam-policy-binding {BUCKET}"),
        ("remove", f"storage buckets remove-iam-policy-binding {BUCKET}"),
        ("remove", f"iam service-accounts delete frame-fanout-push{SA}"),
        ("remove", f"iam service-accounts delete frame-fanout-worker{SA}"),
    ]
    wiped = outline(build_plan("down", dataclasses.replace(BASE, delete_data=True)))
    assert not any("remove-iam-policy-binding" in words for _, words in wiped)
    assert wiped[-1] == ("remove", "storage rm")


# --------------------------------------------------------------------------- the front door's own identity


def test_frontdoor_runs_as_its_own_identity_limited_to_predict() -> None:
    plan = build_plan("up", dataclasses.replace(BASE, target="all", frontdoor_access="public"))
    deploys = {argv[3]: argv for argv in gcloud_commands(plan) if argv[1:3] == ["run", "deploy"]}
    assert f"--service-account=frame-fanout-front{SA}" in deploys["frame-fanout-frontdoor"]
    assert f"--service-account=frame-fanout-worker{SA}" in deploys["frame-fanout-worker"]
    for argv in deploys.values():  # the push worker's identity is never the one a public endpoint runs as
        if "--allow-unauthenticated" in argv:
            assert f"--service-account=frame-fanout-worker{SA}" not in argv
    front = f"serviceAccount:frame-fanout-front{SA}"
    front_bindings = [argv for argv in gcloud_commands(plan) if f"--member={front}" in argv]
    assert front_bindings == [
        ["gcloud", "storage", "buckets", "add-iam-policy-binding", BUCKET, "--project=ff-test-project",
         f"--member={front}", "--role=roles/storage.objectCreator",
         "--condition=^;^title=frontdoor-predict-only;description=create objects under predict/ only;expression="
         'resource.name.startsWith("projects/_/buckets/ff-test-project-frame-fanout/objects/predict/")'],
        ["gcloud", "storage", "buckets", "add-iam-policy-binding", BUCKET, "--project=ff-test-project",
         f"--member={front}", "--role=roles/storage.objectViewer",
         "--condition=^;^title=frontdoor-readiness-listing;description=list the empty readiness-probe prefix only;"
         'expression=api.getAttribute("storage.googleapis.com/objectListPrefix", "") == "jobs/.readiness-probe/"'],
    ]
    assert index_of(plan, "service-accounts create frame-fanout-front") < index_of(
        plan, "run deploy frame-fanout-frontdoor")


def test_frontdoor_may_list_exactly_what_its_readiness_check_lists() -> None:
    from worker.storage import READINESS_PROBE_PREFIX as worker_prefix

    assert worker_prefix == READINESS_PROBE_PREFIX
    assert READINESS_PROBE_PREFIX.startswith("jobs/.")  # job ids start with [a-z0-9]: never a job's objects


def test_every_bucket_binding_says_whether_it_has_a_condition() -> None:
    """gcloud refuses an unconditional binding on a policy with conditions unless it can prompt."""
    plan = build_plan("up", dataclasses.replace(BASE, target="all"))
    bucket_bindings = [argv for argv in gcloud_commands(plan) if argv[1:4] == ["storage", "buckets",
                                                                               "add-iam-policy-binding"]]
    assert len(bucket_bindings) == 4
    assert all(argv[-1].startswith("--condition=") for argv in bucket_bindings)
    assert sum(argv[-1] == "--condition=None" for argv in bucket_bindings) == 2


def test_lifecycle_rule_covers_job_data_and_frontdoor_results() -> None:
    rule = json.loads(build_plan("up", dataclasses.replace(BASE, job_data_days=9)).files[LIFECYCLE_FILE])
    assert rule == {"rule": [{"action": {"type": "Delete"},
                              "condition": {"age": 9, "matchesPrefix": ["jobs/", "predict/"]}}]}


def test_push_worker_always_checks_push_tokens() -> None:
    """The worker refuses to start without push auth configured (or WORKER_PUSH_AUTH=off): deploy.gcp always
    configures it, on the front door too (whose push endpoint then admits nobody)."""
    for options in (BASE, dataclasses.replace(BASE, target="all"), dataclasses.replace(PULL, target="frontdoor")):
        for argv in gcloud_commands(build_plan("up", options)):
            if argv[1:3] == ["run", "deploy"]:
                env = next(a for a in argv if a.startswith("--set-env-vars="))
                assert "WORKER_PUSH_AUDIENCE=https://" in env and "WORKER_PUSH_AUTH" not in env
                assert f"WORKER_PUSH_SERVICE_ACCOUNTS=frame-fanout-push{SA}" in env


# --------------------------------------------------------------------------- autoscaling (CREMA), printed only


def test_crema_config_targets_the_pool_and_its_backlog() -> None:
    options = dataclasses.replace(PULL, autoscale_min=1, autoscale_max=25, processes=2, cpu="2", memory="4Gi")
    config = crema_config(options, Names.of(options))
    check_crema_config(config)
    assert yaml.safe_load(to_yaml(config)) == config  # the small YAML writer writes what it means
    scaled = config["spec"]["scaledObjects"][0]["spec"]
    assert scaled["scaleTargetRef"] == {
        "name": "projects/ff-test-project/locations/europe-west1/workerpools/frame-fanout-pull-worker"}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 25)
    assert scaled["triggers"] == [{
        "type": "gcp-pubsub", "name": "frames-backlog", "authenticationRef": {"name": "crema-identity"},
        "metadata": {"subscriptionName": "projects/ff-test-project/subscriptions/frame-fanout-frames-pull",
                     "mode": "SubscriptionSize", "value": "2000", "activationValue": "0"}}]
    assert config["spec"]["triggerAuthentications"] == [
        {"metadata": {"name": "crema-identity"}, "spec": {"podIdentity": {"provider": "gcp"}}}]


def _crema(**change: object) -> dict:
    config = crema_config(PULL, Names.of(PULL))
    so = config["spec"]["scaledObjects"][0]["spec"]
    trigger = so["triggers"][0]
    for key, value in change.items():
        where, _, field = key.partition("__")
        target = {"config": config, "spec": config["spec"], "so": so, "trigger": trigger,
                  "meta": trigger["metadata"]}[where]
        if value is None:
            target.pop(field)
        else:
            target[field] = value
    return config


@pytest.mark.parametrize(("change", "message"), [
    ({"spec__scaledObjects": []}, "spec.scaledObjects: must have at least one scaled object"),
    ({"so__pollingInterval": 10}, "scaledObjects[0].spec.pollingInterval: must only be specified as part of top-level"),
    ({"so__triggers": []}, "scaledObjects[0].spec.triggers: must have at least one trigger"),
    ({"so__scaleTargetRef": {"name": "frame-fanout-pull-worker"}}, "is not projects/P/locations/R/workerpools/NAME"),
    ({"so__maxReplicas": 3}, 'scaledObjects[0].spec: unknown field "maxReplicas"'),
    ({"trigger__authenticationRef": {"name": "nobody"}},
     'authenticationRef.name: trigger authentication "nobody" not found'),
    ({"meta__value": 1000}, "metadata.value: must be a string (KEDA metadata is map[string]string)"),
    ({"meta__value": "lots"}, "metadata.value: must be a number of at least 1, written as a string"),
    ({"meta__topicName": "frames"}, "metadata: exactly one of subscriptionName, topicName"),
    ({"meta__mode": "Backlog"}, "metadata.mode: one of SubscriptionSize, OldestUnackedMessageAge"),
    ({"config__kind": "ScaledObject"}, "config: apiVersion crema/v1, kind CremaConfig expected"),
])
def test_crema_config_checks_refuse_what_crema_would(change: dict, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        check_crema_config(_crema(**change))
    assert message in str(caught.value)


def test_autoscale_plan_is_printed_never_run(capsys: pytest.CaptureFixture[str]) -> None:
    plan = build_plan("autoscale", PULL)
    text = "\n".join(flat(plan))
    version = next(step.argv[5] for step in plan.steps if step.argv[:5] == ("gcloud", "parametermanager",
                                                                             "parameters", "versions", "create"))
    assert f"CREMA_CONFIG=projects/ff-test-project/locations/global/parameters/frame-fanout-crema-config/versions/" \
           f"{version}," in text
    assert yaml.safe_load(plan.files[CREMA_CONFIG_FILE]) == crema_config(PULL, plan.names)
    crema = f"serviceAccount:frame-fanout-crema{SA}"
    assert sorted(role for _, member, role in role_bindings(plan) if member == crema) == [
        "roles/iam.serviceAccountUser", "roles/monitoring.viewer", "roles/parametermanager.parameterViewer",
        "roles/run.developer"]
    other = build_plan("autoscale", dataclasses.replace(PULL, autoscale_max=20))
    assert version not in "\n".join(flat(other))  # a new configuration is a new version
    removal = "\n".join(flat(build_plan("autoscale-down", PULL)))
    assert "run services delete frame-fanout-autoscaler" in removal
    assert "parameters delete frame-fanout-crema-config" in removal
    assert cli.main(["plan", "--autoscale", "--project", "ff-test-project", "--region", "europe-west1"]) == 0
    out = capsys.readouterr().out
    assert "printed, NOT run by `up`" in out and "#   kind: \"CremaConfig\"" in out
    assert cli.main(["up", "--autoscale", "--project", "ff-test-project", "--region", "europe-west1"]) == 1
    assert capsys.readouterr().err == "error: --autoscale only applies to plan (the CREMA set-up is printed, never " \
                                      "run)\n"


# --------------------------------------------------------------------------- the command line


def test_cli_modes_scale_and_plan(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Plan] = []
    monkeypatch.setattr(cli, "execute", lambda plan, **_: ran.append(plan) or {})
    where = ["--project", "ff-test-project", "--region", "europe-west1"]
    assert cli.main(["scale", *where, "--instances", "3"]) == 0
    assert gcloud_commands(ran[-1])[0][-1] == "--scaling=3"
    assert cli.main(["up", *where, "--mode", "pull", "--image", IMAGE, "--instances", "2"]) == 0
    assert ran[-1].options.delivery == "pull" and "worker pool: frame-fanout-pull-worker, 2 instance(s) of 1 " \
        "process(es); resize with: python -m deploy.gcp scale --project ff-test-project --region europe-west1 " \
        "--instances N" in capsys.readouterr().out
    assert cli.main(["plan", *where, "--mode", "pull", "--down"]) == 0
    assert "pubsub subscriptions delete frame-fanout-frames-push" not in capsys.readouterr().out
    assert cli.main(["scale", *where]) == 1
    assert capsys.readouterr().err.startswith("error: scale needs --instances N")
    assert cli.main(["up", *where, "--instances", "2"]) == 1
    assert capsys.readouterr().err.startswith("error: --instances only applies with --mode pull")


@pytest.mark.parametrize(("change", "message"), [
    ({"cpu": "3"}, "--cpu 3: Cloud Run allows"),
    ({"cpu": "0.5"}, "below 1 vCPU Cloud Run requires --concurrency 1"),
    ({"cpu": "4", "memory": "1Gi"}, "4 vCPU needs at least 2Gi"),
    ({"memory": "8Gi"}, "more than 4Gi needs --cpu 2"),
    ({"memory": "2GB"}, "expected a size like 512Mi"),
    ({"min_instances": 10, "max_instances": 5}, "--min-instances 10 is more than --max-instances 5"),
    ({"ack_deadline": 601}, "--ack-deadline 601: must be 10..600"),
    ({"max_delivery_attempts": 4}, "--max-delivery-attempts 4: must be 5..100"),
    ({"min_retry_delay": 60, "max_retry_delay": 10}, "--min-retry-delay 60 is more than --max-retry-delay 10"),
    ({"concurrency": 0}, "--concurrency 0: must be 1..1000"),
    ({"name": "this-name-is-far-too-long"}, "--name 'this-name-is-far-too-long'"),
    ({"project": "Bad_Project"}, "--project 'Bad_Project'"),
    ({"frontdoor_invokers": ("alice@example.org",)}, "--frontdoor-invoker 'alice@example.org'"),
    ({"frontdoor_access": "public", "frontdoor_invokers": ("user:a@b.c",)}, "only applies with --frontdoor-access iam"),
    ({"mode": "stream"}, "--mode 'stream': one of push, pull"),
    ({"instances": 2}, "--instances only applies with --mode pull (a push service scales itself between "
                       "--min-instances and --max-instances)"),
    ({"max_held": 2}, "--max-held only applies with --mode pull (push processes admit --max-in-flight requests)"),
    ({"mode": "pull", "instances": 1001}, "--instances 1001: must be 0..1000"),
    ({"mode": "pull", "instances": -1}, "--instances -1: must be 0..1000"),
    ({"mode": "pull", "max_held": 0}, "--max-held 0: must be 1..100"),
    ({"mode": "pull", "ack_deadline": 5}, "--ack-deadline 5: must be 10..600 seconds (Pub/Sub's limits)"),
    ({"autoscale_min": 5, "autoscale_max": 2}, "--autoscale-min 5 is more than --autoscale-max 2"),
    ({"autoscale_backlog": 0}, "--autoscale-backlog 0: must be 1 or more"),
    ({"mode": "pull", "cpu": "3"}, "--cpu 3: Cloud Run allows"),
])
def test_bad_options_are_refused_with_one_line(change: dict, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        build_plan("up", dataclasses.replace(BASE, **change))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_fractional_cpu_rules_are_a_services_rules() -> None:
    pool_only = dataclasses.replace(PULL, cpu="0.5", memory="1Gi")  # concurrency 30 is a service's knob
    assert "--cpu=0.5" in command(build_plan("up", pool_only), "beta", "run", "worker-pools", "deploy")
    with pytest.raises(OptionsError, match="below 1 vCPU Cloud Run requires --concurrency 1"):
        build_plan("up", dataclasses.replace(pool_only, target="all"))


@pytest.mark.parametrize(("change", "message"), [
    ({"target": "frontdoor", "mode": "pull"}, "down --target frontdoor removes only the front door: without --mode"),
    ({"mode": "push", "delete_data": True}, "--delete-data deletes the bucket: only with a full down (without --mode)"),
])
def test_bad_down_options_are_refused(change: dict, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        build_plan("down", dataclasses.replace(BASE, **change))
    assert str(caught.value) == message


def test_cli_plan_prints_every_command_and_placeholders(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--project", "ff-test-project", "--region", "europe-west1", "--tag", "t1"]) == 0
    out = capsys.readouterr().out
    plan = build_plan("up", dataclasses.replace(BASE, tag="t1"))
    for argv in gcloud_commands(plan):
        assert " ".join(argv[:4]) in out
    assert "<PROJECT_NUMBER>: the project number" in out and "<WORKER_URL>" in out
    assert "export GOOGLE_CLOUD_PROJECT=ff-test-project FRAMES_TOPIC=frame-fanout-frames" in out


def test_cli_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--project", "ff-test-project", "--region", "europe-west1", "--cpu", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --cpu 3:") and err.count("\n") == 1


def test_cli_down_refuses_without_a_terminal_or_yes(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    ran = []
    monkeypatch.setattr(cli, "execute", lambda *a, **k: ran.append(a))
    assert cli.main(["down", "--project", "ff-test-project", "--region", "europe-west1", "--delete-data"]) == 1
    assert "pass --yes" in capsys.readouterr().err and ran == []


# --------------------------------------------------------------------------- decode: a Cloud Run job of chunks

VIDEO = "gs://ff-videos/cams/long.mp4"
DECODE = DecodeOptions(video=VIDEO, tasks=40, job_id="long-20261201t101500-a1b2", fps=5.0, max_side=960)
JOB = job_name(BASE, DECODE.job_id)
DECODE_COMBINATIONS = [
    (BASE, DECODE),
    (dataclasses.replace(BASE, cpu="2", memory="4Gi", name="cams"),
     dataclasses.replace(DECODE, video="gs://ff-test-project-cams/v.mp4", tasks=1000, parallelism=100,
                         task_timeout=7200, max_retries=0, fps=None, max_side=None, max_frames=90_000,
                         duration=3600.0, jpeg_quality=80, producer_image="eu.gcr.io/p/producer:1")),
    (BASE, DecodeOptions(video=VIDEO, tasks=40, resume="long-20261201t101500-a1b2")),
]


def test_decode_plan_is_a_cloud_run_job_created_run_twice_and_deleted() -> None:
    plan = decode_plan(BASE, DECODE)
    assert JOB == "frame-fanout-decode-608872db"
    assert outline(plan) == [
        ("ensure", "iam service-accounts create frame-fanout-decode"),
        ("run", f"storage buckets add-iam-policy-binding {BUCKET}"),
        ("run", "storage buckets add-iam-policy-binding gs://ff-videos"),
        ("run", "pubsub topics add-iam-policy-binding frame-fanout-frames"),
        ("ensure", "artifacts repositories create frame-fanout"),
        ("run", "builds submit ."),
        ("run", f"run jobs deploy {JOB}"),
        ("run", f"run jobs execute {JOB}"),
        ("run", f"run jobs execute {JOB}"),
        ("run", f"run jobs delete {JOB}"),
    ]
    image = "europe-west1-docker.pkg.dev/ff-test-project/frame-fanout/producer:abc123"
    assert command(plan, "builds", "submit") == [
        "gcloud", "builds", "submit", ".", "--config=deploy/cloudbuild-producer.yaml",
        "--ignore-file=deploy/gcloudignore-producer", f"--substitutions=_IMAGE={image}", "--project=ff-test-project"]
    assert command(plan, "run", "jobs", "deploy") == [
        "gcloud", "run", "jobs", "deploy", JOB, f"--image={image}", "--region=europe-west1",
        "--project=ff-test-project", f"--service-account=frame-fanout-decode{SA}", "--tasks=40",
        "--task-timeout=3600s", "--max-retries=3",
        "--cpu=1", "--memory=2Gi",
        "--set-env-vars=GOOGLE_CLOUD_PROJECT=ff-test-project,FRAMES_TOPIC=frame-fanout-frames,"
        "FRAMES_BUCKET=ff-test-project-frame-fanout",
        "--command=python", "--args=-m,producer.cloudjob,run,long-20261201t101500-a1b2",
        "--labels=app=frame-fanout,deployment=frame-fanout,role=decode"]
    plan_run, publish = [argv for argv in gcloud_commands(plan) if argv[1:4] == ["run", "jobs", "execute"]]
    assert plan_run == [
        "gcloud", "run", "jobs", "execute", JOB, "--region=europe-west1", "--project=ff-test-project", "--tasks=1",
        f"--args=-m,producer.cloudjob,plan,{VIDEO},--job-id,long-20261201t101500-a1b2,--chunks,40,--fps,5,"
        "--max-side,960", "--wait"]
    assert publish == ["gcloud", "run", "jobs", "execute", JOB, "--region=europe-west1", "--project=ff-test-project",
                       "--wait"]
    assert "collector wait --job long-20261201t101500-a1b2" in plan.note


def test_decode_job_runs_what_producer_cloudjob_parses_with_the_settings_it_reads(tmp_path: Path) -> None:
    from framecontract.settings import load_settings
    from producer.cloudjob import build_parser as cloudjob_parser

    plan = decode_plan(BASE, DECODE)
    deploy = command(plan, "run", "jobs", "deploy")
    run_args = next(a for a in deploy if a.startswith("--args=")).removeprefix("--args=").split(",")
    assert run_args[:2] == ["-m", "producer.cloudjob"]
    assert cloudjob_parser().parse_args(run_args[2:]).job_id == DECODE.job_id
    plan_run = next(argv for argv in gcloud_commands(plan) if "--tasks=1" in argv)
    parsed = cloudjob_parser().parse_args(next(a for a in plan_run if a.startswith("--args="))
                                          .removeprefix("--args=").split(",")[2:])
    assert (parsed.source, parsed.job_id, parsed.chunks, parsed.fps, parsed.max_side) == (
        VIDEO, DECODE.job_id, 40, 5.0, 960)
    env = dict(kv.split("=", 1) for kv in next(a for a in deploy if a.startswith("--set-env-vars="))
               .removeprefix("--set-env-vars=").split(","))
    settings = load_settings(environ={**env, "FRAME_FANOUT_SETTINGS": str(tmp_path / "none.json")})
    assert (settings.project, settings.topic, settings.bucket) == (
        "ff-test-project", "frame-fanout-frames", "ff-test-project-frame-fanout")


def test_decoder_identity_is_least_privilege() -> None:
    decoder = f"serviceAccount:frame-fanout-decode{SA}"
    assert sorted(role_bindings(decode_plan(BASE, DECODE))) == sorted([
        ("storage buckets add-iam-policy-binding gs://ff-videos", decoder, "roles/storage.objectViewer"),
        (f"storage buckets add-iam-policy-binding {BUCKET}", decoder, "roles/storage.objectUser"),
        ("pubsub topics add-iam-policy-binding frame-fanout-frames", decoder, "roles/pubsub.publisher"),
    ])
    same_bucket = dataclasses.replace(DECODE, video="gs://ff-test-project-frame-fanout/in/v.mp4")
    assert len(role_bindings(decode_plan(BASE, same_bucket))) == 2
    assert not any("projects add-iam-policy-binding" in line for line in flat(decode_plan(BASE, DECODE)))


def test_decode_resume_skips_the_plan_and_a_given_image_skips_the_build() -> None:
    resumed = decode_plan(BASE, DecodeOptions(video=VIDEO, tasks=40, resume=DECODE.job_id,
                                              producer_image="eu.gcr.io/p/producer:1"))
    assert [words for _, words in outline(resumed)][-3:] == [
        f"run jobs deploy {JOB}", f"run jobs execute {JOB}", f"run jobs delete {JOB}"]
    text = "\n".join(flat(resumed))
    assert "--tasks=1" not in text and "builds submit" not in text and "--image=eu.gcr.io/p/producer:1" in text


@pytest.mark.parametrize(("change", "message"), [
    ({"video": "/tmp/long.mp4"}, "--video '/tmp/long.mp4': expected gs://BUCKET/OBJECT (the video must be in Cloud "
                                 "Storage; upload it with gcloud storage cp)"),
    ({"video": "gs://bkt/a,b.mp4"}, "--video 'gs://bkt/a,b.mp4': a ',' cannot be passed in a Cloud Run job's "
                                    "arguments; rename the object"),
    ({"tasks": 0}, "--tasks 0: must be 1..1000"),
    ({"tasks": 1001}, "--tasks 1001: must be 1..1000"),
    ({"parallelism": 41}, "--parallelism 41: must be 1..--tasks (40)"),
    ({"task_timeout": 10}, "--task-timeout 10: must be 60..604800 seconds"),
    ({"max_retries": 11}, "--max-retries 11: must be 0..10"),
    ({"job_id": "Bad_Id"}, "--job-id: invalid job id 'Bad_Id': upper-case letters are not allowed"),
    ({"resume": "long-20261201t101500-a1b2", "job_id": None}, "--fps cannot be used with --resume: the job keeps "
                                                              "the options it was planned with"),
    ({"resume": "other", "fps": None, "max_side": None}, "--job-id and --resume name different jobs: give --resume "
                                                         "JOB only"),
])
def test_bad_decode_options_are_one_line(change: dict, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        decode_plan(BASE, dataclasses.replace(DECODE, **change))
    assert str(caught.value) == message


def test_cli_plan_video_prints_the_decode_job_and_decode_needs_a_video(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["plan", "--project", "ff-test-project", "--region", "europe-west1", "--tag", "t1", "--video", VIDEO,
            "--tasks", "8", "--job-id", "cams-1"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("# python -m deploy.gcp decode: project ff-test-project, region europe-west1, deployment "
                          "frame-fanout, target pipeline, mode a Cloud Run job")
    assert "# job cams-1: follow it with `collector wait --job cams-1`" in out
    assert f"run jobs execute {job_name(BASE, 'cams-1')} --region=europe-west1" in out
    assert cli.main(["decode", "--project", "ff-test-project", "--region", "europe-west1"]) == 1
    assert capsys.readouterr().err == "error: decode needs --video gs://BUCKET/OBJECT\n"
    assert cli.main(args + ["--down"]) == 1
    assert capsys.readouterr().err == "error: --video shows the decode job's plan: without --down or --autoscale\n"


# --------------------------------------------------------------------------- the runner (fake gcloud)


class FakeGcloud:
    """Answers describe checks from a set of existing resources; records what ran."""

    def __init__(self, existing: set[str], fail: dict[str, list[str]] | None = None) -> None:
        self.existing = existing
        self.fail = fail or {}
        self.ran: list[list[str]] = []

    def __call__(self, argv: list[str]) -> Result:
        self.ran.append(list(argv))
        line = " ".join(argv)
        for needle, errors in self.fail.items():
            if needle in line and errors:
                return Result(1, "", errors.pop(0))
        if "projects describe" in line:
            return Result(0, "123456789012\n", "")
        if "status.url" in line:
            return Result(0, "https://svc-abc-ew.a.run.app\n", "")
        if " describe " in line:
            name = argv[argv.index("describe") + 1]
            if name not in self.existing:
                return Result(1, "", f"ERROR: (gcloud.x.describe) NOT_FOUND: {name} not found")
            return Result(0, name + "\n", "")
        return Result(0, "", "")


def ran_lines(fake: FakeGcloud) -> list[str]:
    return [" ".join(argv) for argv in fake.ran]


def test_runner_creates_what_is_missing_and_updates_what_exists() -> None:
    fake = FakeGcloud(existing={"frame-fanout-frames", "frame-fanout-frames-push"})
    values = execute(build_plan("up", BASE), say=lambda _: None, run=fake, sleep=lambda _: None)
    lines = ran_lines(fake)
    assert values[PROJECT_NUMBER] == "123456789012" and values[WORKER_URL] == "https://svc-abc-ew.a.run.app"
    assert not any("topics create frame-fanout-frames " in line for line in lines)
    assert any("topics create frame-fanout-frames-dead-letter" in line for line in lines)
    assert any(line.startswith("gcloud pubsub subscriptions update frame-fanout-frames-push") for line in lines)
    assert not any("subscriptions create frame-fanout-frames-push" in line for line in lines)
    update = next(line for line in lines if "subscriptions update" in line)
    assert "--push-endpoint=https://svc-abc-ew.a.run.app/pubsub/push" in update
    assert "service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com" in " ".join(lines)
    lifecycle = next(line for line in lines if "--lifecycle-file=" in line)
    assert "<LIFECYCLE_FILE>" not in lifecycle and not any("<" in line and ">" in line for line in lines)


def test_runner_stops_when_a_check_fails_for_another_reason() -> None:
    fake = FakeGcloud(existing=set(), fail={"buckets describe": ["ERROR: (gcloud.storage.buckets.describe) "
                                                                 "HTTPError 403: caller does not have permission"]})
    with pytest.raises(DeployError, match="could not tell whether it exists.*403"):
        execute(build_plan("up", BASE), say=lambda _: None, run=fake, sleep=lambda _: None)
    assert not any("buckets create" in line for line in ran_lines(fake))


def test_runner_retries_iam_propagation_then_gives_up_on_real_errors() -> None:
    propagation = "ERROR: (gcloud.run.services.add-iam-policy-binding) Service account x does not exist."
    fake = FakeGcloud(existing=set(), fail={"run services add-iam-policy-binding": [propagation, propagation]})
    sleeps: list[float] = []
    execute(build_plan("up", BASE), say=lambda _: None, run=fake, sleep=sleeps.append)
    assert sum("run services add-iam-policy-binding" in line for line in ran_lines(fake)) == 3 and len(sleeps) == 2
    fake = FakeGcloud(existing=set(), fail={"run deploy": ["ERROR: (gcloud.run.deploy) PERMISSION_DENIED: nope"]})
    with pytest.raises(DeployError, match="PERMISSION_DENIED"):
        execute(build_plan("up", BASE), say=lambda _: None, run=fake, sleep=lambda _: None)


def test_runner_refuses_a_second_delivery_mode_before_changing_anything() -> None:
    fake = FakeGcloud(existing={"frame-fanout-frames-push", "frame-fanout-frames"})
    with pytest.raises(DeployError) as caught:
        execute(build_plan("up", PULL), say=lambda _: None, run=fake, sleep=lambda _: None)
    assert str(caught.value).startswith("the push subscription frame-fanout-frames-push exists")
    assert [line.split(" --")[0] for line in ran_lines(fake)] == [
        "gcloud services enable run.googleapis.com pubsub.googleapis.com storage.googleapis.com iam.googleapis.com "
        "artifactregistry.googleapis.com cloudbuild.googleapis.com",
        "gcloud pubsub subscriptions describe frame-fanout-frames-push"]


def test_runner_pull_up_creates_then_updates() -> None:
    fake = FakeGcloud(existing=set())
    execute(build_plan("up", dataclasses.replace(PULL, image=IMAGE)), say=lambda _: None, run=fake,
            sleep=lambda _: None)
    lines = ran_lines(fake)
    assert any(line.startswith("gcloud pubsub subscriptions create frame-fanout-frames-pull") for line in lines)
    assert lines[-1].startswith("gcloud beta run worker-pools deploy frame-fanout-pull-worker")
    assert not any("<" in line and ">" in line for line in lines)
    again = FakeGcloud(existing={"frame-fanout-frames-pull", "frame-fanout-frames"})
    execute(build_plan("up", dataclasses.replace(PULL, image=IMAGE)), say=lambda _: None, run=again,
            sleep=lambda _: None)
    assert any(line.startswith("gcloud pubsub subscriptions update frame-fanout-frames-pull")
               for line in ran_lines(again))


def test_runner_down_removes_only_what_exists() -> None:
    fake = FakeGcloud(existing={"frame-fanout-frames", "frame-fanout-worker", "gs://ff-test-project-frame-fanout"},
                      fail={"remove-iam-policy-binding": ["ERROR: Policy binding with the specified principal, role, "
                                                          "and any existing condition not found!"]})
    execute(build_plan("down", BASE), say=lambda _: None, run=fake, sleep=lambda _: None)
    deletes = [line for line in ran_lines(fake) if " delete " in line]
    assert [d.split(" --")[0] for d in deletes] == ["gcloud pubsub topics delete frame-fanout-frames",
                                                    "gcloud run services delete frame-fanout-worker"]


# --------------------------------------------------------------------------- every command through gcloud

CREDENTIAL_ERROR = re.compile(
    r"You do not currently have an active account selected|Reauthentication required|"
    r"could not find default credentials", re.IGNORECASE)
SAMPLE_VALUES = {PROJECT_NUMBER: "123456789012", WORKER_URL: "https://frame-fanout-worker-abc123-ew.a.run.app",
                 FRONTDOOR_URL: "https://frame-fanout-frontdoor-abc123-ew.a.run.app"}
assert {LIFECYCLE_FILE, CREMA_CONFIG_FILE}.isdisjoint(SAMPLE_VALUES)  # files: written per plan
COMBINATIONS = [
    ("up", BASE),
    ("up", dataclasses.replace(BASE, target="all", frontdoor_invokers=("user:a@example.org",))),
    ("up", dataclasses.replace(BASE, target="frontdoor", frontdoor_access="public", image="eu.gcr.io/p/w:1")),
    ("up", dataclasses.replace(BASE, cpu="2", memory="4Gi", concurrency=100, min_instances=0, cpu_throttling=False,
                               cpu_boost=False, job_data_days=0, ingress="internal", timeout=60, ack_deadline=10,
                               max_delivery_attempts=100, min_retry_delay=0, max_retry_delay=0)),
    ("up", dataclasses.replace(BASE, cpu="0.5", memory="512Mi", concurrency=1, processes=2, max_in_flight=3,
                               startup_delay=10)),
    ("down", BASE),
    ("down", dataclasses.replace(BASE, delete_data=True)),
    ("up", dataclasses.replace(PULL, target="all", frontdoor_access="public")),
    ("up", dataclasses.replace(PULL, image=IMAGE, cpu="0.5", memory="512Mi", instances=0, max_held=1, ack_deadline=600,
                               processes=2, job_data_days=0)),
    ("up", dataclasses.replace(PULL, cpu="8", memory="32Gi", instances=1000, max_held=100)),
    ("scale", dataclasses.replace(PULL, instances=4)),
    ("scale", dataclasses.replace(PULL, instances=0)),
    ("down", PULL),
    ("down", dataclasses.replace(BASE, mode="push")),
    ("down", dataclasses.replace(BASE, target="frontdoor")),
    ("autoscale", dataclasses.replace(PULL, autoscale_min=1, autoscale_max=30, autoscale_backlog=500)),
    ("autoscale-down", PULL),
]


def gcloud_env(config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_"))}
    env.update({
        "CLOUDSDK_CONFIG": str(config_dir), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true", "CLOUDSDK_SURVEY_DISABLE_PROMPTS": "true",
    })
    return env


def every_command(folder: Path) -> list[list[str]]:
    """Every distinct command of every combination, placeholders filled with realistic values and files written
    (gcloud reads some files while parsing)."""
    unique: dict[tuple[str, ...], None] = {}
    for number, (action, options) in enumerate(COMBINATIONS):
        plan = build_plan(action, options)
        values = dict(SAMPLE_VALUES)
        for placeholder, content in plan.files.items():
            path = folder / f"plan-{number}-{placeholder.strip('<>').lower()}"
            path.write_text(content)
            values[placeholder] = str(path)
        for argv in gcloud_commands(plan):
            unique[tuple(substitute(argv, values))] = None
    for options, decode in DECODE_COMBINATIONS:
        for argv in gcloud_commands(decode_plan(options, decode)):
            unique[tuple(argv)] = None
    return [list(argv) for argv in unique]


CANARIES = [  # commands gcloud must refuse: proof that the check tells argument errors from the credential error
    ["gcloud", "pubsub", "subscriptions", "create", "s", "--topic=t", "--bogus-flag"],
    ["gcloud", "run", "deploy", "s", "--image=i", "--region=europe-west1", "--concurrency=abc"],
    ["gcloud", "run", "deploy", "s", "--image=i", "--region=europe-west1", "--startup-probe=bogus=1"],
    ["gcloud", "beta", "run", "worker-pools", "deploy", "p", "--image=i", "--region=europe-west1", "--min-instances=1"],
    ["gcloud", "beta", "run", "worker-pools", "update", "p", "--region=europe-west1", "--scaling=-1"],
    ["gcloud", "storage", "buckets", "add-iam-policy-binding", "gs://b", "--member=user:a@b.c", "--role=r",
     "--condition=^;^title=t;expresion=true"],
    ["gcloud", "run", "jobs", "execute", "j", "--region=europe-west1", "--tasks=1", "--bogus-flag"],
    ["gcloud", "run", "jobs", "deploy", "j", "--image=i", "--region=europe-west1", "--tasks=abc"],
]


def parse_problem(gcloud: str, argv: list[str], config: Path) -> str | None:
    """None if gcloud stopped at the missing credentials (arguments parsed); else what it said."""
    proc = subprocess.run([gcloud, *argv[1:]], env=gcloud_env(config), cwd=REPO, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 and CREDENTIAL_ERROR.search(output):
        return None
    first = next((line for line in output.splitlines() if line.startswith("ERROR")), output[:300])
    return f"{subprocess.list2cmdline(argv)}\n    -> exit {proc.returncode}: {first}"


@pytest.mark.gcloud_offline
def test_every_generated_command_parses_in_the_installed_gcloud(tmp_path: Path) -> None:
    """Each command must stop at the missing-credentials error; an argument error fails the test."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.fail("gcloud not found: the Google Cloud CLI is needed to check the generated deploy commands "
                    "(it is on this project's machine image; elsewhere install google-cloud-cli)", pytrace=False)
    template = tmp_path / "config-template"
    subprocess.run([gcloud, "config", "set", "project", "ff-offline-check"], env=gcloud_env(template),
                   check=True, capture_output=True, timeout=60)
    commands = every_command(tmp_path)
    local = threading.local()
    counter = iter(range(1000))
    lock = threading.Lock()

    def check(argv: list[str]) -> str | None:
        if not hasattr(local, "config"):  # one config copy per thread: gcloud writes to its config dir
            with lock:
                local.config = tmp_path / f"config-{next(counter)}"
            shutil.copytree(template, local.config)
        return parse_problem(gcloud, argv, local.config)

    with ThreadPoolExecutor(max_workers=max(4, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(check, CANARIES + commands))
    canaries, problems = results[:len(CANARIES)], [p for p in results[len(CANARIES):] if p]
    assert all(canaries), f"gcloud accepted a command it should refuse: {CANARIES[canaries.index(None)]}"
    assert len(commands) > 100
    for words in (["beta", "run", "worker-pools", "deploy"], ["beta", "run", "worker-pools", "update"],
                  ["beta", "run", "worker-pools", "delete"], ["parametermanager", "parameters", "versions", "create"],
                  ["run", "jobs", "deploy"], ["run", "jobs", "execute"], ["run", "jobs", "delete"]):
        assert any(argv[1:1 + len(words)] == words for argv in commands), words
    assert not problems, f"{len(problems)} of {len(commands)} gcloud commands were refused:\n" + "\n".join(problems)
