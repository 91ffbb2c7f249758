"""``python -m deploy.gcp``: the plans for the flag combinations that matter, the runner's idempotency logic,
and every generated command parsed by the installed Google Cloud CLI (offline, no credentials).

Usage::

    .venv/bin/python -m pytest tests/deploy/test_gcp.py            # ~30-60 s (gcloud runs ~1 s per command)
    .venv/bin/python -m pytest -m gcloud_offline                    # only the gcloud argument checks
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.gcp import cli
from deploy.gcp.commands import (
    FRONTDOOR_URL,
    LIFECYCLE_FILE,
    PROJECT_NUMBER,
    WORKER_URL,
    Plan,
    build_plan,
    gcloud_commands,
    substitute,
)
from deploy.gcp.options import DeployOptions, OptionsError
from deploy.gcp.runner import DeployError, Result, execute

REPO = Path(__file__).resolve().parents[2]
BASE = DeployOptions(project="ff-test-project", region="europe-west1", tag="abc123")


def flat(plan: Plan) -> list[str]:
    return [" ".join(argv) for argv in gcloud_commands(plan)]


def command(plan: Plan, *words: str) -> list[str]:
    """The single command of the plan that starts with ``gcloud <words>``."""
    found = [argv for argv in gcloud_commands(plan) if tuple(argv[1:1 + len(words)]) == words]
    assert len(found) == 1, f"expected one `gcloud {' '.join(words)}`, got {len(found)}"
    return found[0]


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
    only_frontdoor = flat(build_plan("down", dataclasses.replace(BASE, target="frontdoor")))
    assert [line.split(" --")[0] for line in only_frontdoor] == [
        "gcloud run services describe frame-fanout-frontdoor", "gcloud run services delete frame-fanout-frontdoor"]


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
])
def test_bad_options_are_refused_with_one_line(change: dict, message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        build_plan("up", dataclasses.replace(BASE, **change))
    assert message in str(caught.value) and "\n" not in str(caught.value)


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
]


def gcloud_env(config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDSDK_", "GOOGLE_"))}
    env.update({
        "CLOUDSDK_CONFIG": str(config_dir), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false", "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true", "CLOUDSDK_SURVEY_DISABLE_PROMPTS": "true",
    })
    return env


def every_command(lifecycle_file: Path) -> list[list[str]]:
    """Every distinct command of every combination, placeholders filled with realistic values."""
    values = {**SAMPLE_VALUES, LIFECYCLE_FILE: str(lifecycle_file)}
    lifecycle_file.write_text(build_plan("up", BASE).files[LIFECYCLE_FILE])
    unique: dict[tuple[str, ...], None] = {}
    for action, options in COMBINATIONS:
        for argv in gcloud_commands(build_plan(action, options)):
            unique[tuple(substitute(argv, values))] = None
    return [list(argv) for argv in unique]


CANARIES = [  # commands gcloud must refuse: proof that the check tells argument errors from the credential error
    ["gcloud", "pubsub", "subscriptions", "create", "s", "--topic=t", "--bogus-flag"],
    ["gcloud", "run", "deploy", "s", "--image=i", "--region=europe-west1", "--concurrency=abc"],
    ["gcloud", "run", "deploy", "s", "--image=i", "--region=europe-west1", "--startup-probe=bogus=1"],
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
    commands = every_command(tmp_path / "lifecycle.json")
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
    assert len(commands) > 40
    assert not problems, f"{len(problems)} of {len(commands)} gcloud commands were refused:\n" + "\n".join(problems)
