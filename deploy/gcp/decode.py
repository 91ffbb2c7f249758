"""``decode``: a video already in Cloud Storage published by a Cloud Run job whose tasks are its chunks (pure).

Usage::

    decode = DecodeOptions(video="gs://videos/long.mp4", tasks=40, fps=5.0)
    plan = decode_plan(DeployOptions(project="p", region="europe-west1"), decode)   # what `decode` runs
    plan = decode_plan(options, dataclasses.replace(decode, resume="long-20261201t101500-a1b2"))
    down = decoder_down_steps(options, names)                                        # part of `down`

The plan, after ``up`` made the bucket and the topic:

1. the decoder's own identity ``N-decode`` (created once): ``roles/storage.objectUser`` on the frames bucket
   (it reads and rewrites the manifest, writes the plan and chunk records, claim-checked payloads),
   ``roles/storage.objectViewer`` on the video's bucket when that is another one, ``roles/pubsub.publisher``
   on the frames topic — nothing project-wide;
2. the producer image (``deploy/Dockerfile.producer``: the core and the ``producer`` extra, no model) built by
   Cloud Build into the deployment's Artifact Registry repository, unless ``--producer-image``;
3. ``gcloud run jobs deploy N-decode-<hash of the job id>``: ``--tasks`` tasks of ``python -m producer.cloudjob
   run JOB`` (``--parallelism``, ``--task-timeout``, ``--max-retries``, ``--cpu``, ``--memory``);
4. one execution of a single task, ``python -m producer.cloudjob plan gs://… --job-id JOB --chunks TASKS …``:
   the demux pass and the plan (skipped with ``--resume JOB``);
5. one execution of every task (``--wait``): each publishes its chunks, reading only their byte ranges;
6. ``gcloud run jobs delete`` (the job's executions go with it; the manifest stays in the bucket).

A failed execution stops the plan before the delete: ``decode --resume JOB`` redeploys the same job (idempotent)
and runs step 5 again, each chunk continuing from its confirmed frames.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from deploy.gcp.commands import (
    UNCONDITIONAL,
    Plan,
    Step,
    _flag,
    describe_account,
    describe_repository,
    ensure,
    ensure_account,
    env_value,
    gcloud,
    iam_binding,
    remove,
)
from deploy.gcp.options import DeployOptions, Names, OptionsError, validate
from framecontract.jobid import InvalidJobIdError, generate_job_id, validate_job_id
from framecontract.layout import parse_gs_uri

MAX_TASKS = 1000
"""``producer.cloudjob.MAX_CHUNKS``: one chunk per task, one manifest record per chunk."""
JOB_TIMEOUT_S = 3600


@dataclass(frozen=True)
class DecodeOptions:
    """What ``decode`` publishes and how the Cloud Run job runs (the flags of ``python -m deploy.gcp decode``)."""

    video: str
    """``gs://BUCKET/OBJECT``."""
    tasks: int = 20
    """Tasks of the job = chunks of the file (each task publishes one chunk)."""
    parallelism: int | None = None
    """Tasks running at once (``None``: all of them, as quota allows)."""
    job_id: str | None = None
    resume: str | None = None
    """Continue this job (its plan exists): skip the plan execution."""
    fps: float | None = None
    max_frames: int | None = None
    duration: float | None = None
    max_side: int | None = None
    jpeg_quality: int | None = None
    task_timeout: int = JOB_TIMEOUT_S
    max_retries: int = 3
    producer_image: str | None = None

    @property
    def job(self) -> str:
        """The producer job's id: the one resumed or given, else one generated from the object's name."""
        if self.resume:
            return self.resume
        return self.job_id or generate_job_id(self.video.rsplit("/", 1)[-1])


def validate_decode(decode: DecodeOptions) -> None:
    """:class:`OptionsError` with a one-line reason for what Cloud Run or the producer would refuse."""
    try:
        parse_gs_uri(decode.video)
    except ValueError:
        raise OptionsError(f"--video {decode.video!r}: expected gs://BUCKET/OBJECT (the video must be in Cloud "
                           "Storage; upload it with gcloud storage cp)") from None
    if "," in decode.video:
        raise OptionsError(f"--video {decode.video!r}: a ',' cannot be passed in a Cloud Run job's arguments; "
                           "rename the object")
    if not 1 <= decode.tasks <= MAX_TASKS:
        raise OptionsError(f"--tasks {decode.tasks}: must be 1..{MAX_TASKS}")
    if decode.parallelism is not None and not 1 <= decode.parallelism <= decode.tasks:
        raise OptionsError(f"--parallelism {decode.parallelism}: must be 1..--tasks ({decode.tasks})")
    if not 60 <= decode.task_timeout <= 7 * 24 * 3600:
        raise OptionsError(f"--task-timeout {decode.task_timeout}: must be 60..604800 seconds")
    if not 0 <= decode.max_retries <= 10:
        raise OptionsError(f"--max-retries {decode.max_retries}: must be 0..10")
    for flag, value in (("--job-id", decode.job_id), ("--resume", decode.resume)):
        if value is not None:
            try:
                validate_job_id(value)
            except InvalidJobIdError as exc:
                raise OptionsError(f"{flag}: {exc}") from None
    if decode.resume and decode.job_id and decode.resume != decode.job_id:
        raise OptionsError("--job-id and --resume name different jobs: give --resume JOB only")
    shaping = {"--fps": decode.fps, "--max-frames": decode.max_frames, "--duration": decode.duration,
               "--max-side": decode.max_side, "--jpeg-quality": decode.jpeg_quality}
    if decode.resume:
        given = [flag for flag, value in shaping.items() if value is not None]
        if given:
            raise OptionsError(f"{given[0]} cannot be used with --resume: the job keeps the options it was "
                               "planned with")
    if decode.producer_image is not None and re.search(r"\s", decode.producer_image):
        raise OptionsError(f"--producer-image {decode.producer_image!r}: not an image URI")


def decoder_account(o: DeployOptions) -> str:
    return f"{o.name}-decode@{o.project}.iam.gserviceaccount.com"


def job_name(o: DeployOptions, job_id: str) -> str:
    """The Cloud Run job of one producer job: ``N-decode-<8 hex of the job id>`` (pure).

    >>> job_name(DeployOptions(project="p", region="r"), "long-20261201t101500-a1b2")
    'frame-fanout-decode-608872db'
    """
    return f"{o.name}-decode-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"


def producer_image(o: DeployOptions, n: Names, decode: DecodeOptions) -> str:
    return decode.producer_image or f"{o.region}-docker.pkg.dev/{o.project}/{n.repository}/producer:{o.tag}"


def plan_arguments(decode: DecodeOptions, job_id: str) -> list[str]:
    """``python -m producer.cloudjob plan …``'s arguments, as ``--args`` lists them (pure)."""
    args = ["-m", "producer.cloudjob", "plan", decode.video, "--job-id", job_id, "--chunks", str(decode.tasks)]
    for flag, value in (("--fps", decode.fps), ("--max-frames", decode.max_frames), ("--duration", decode.duration),
                        ("--max-side", decode.max_side), ("--jpeg-quality", decode.jpeg_quality)):
        if value is not None:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return args


def decoder_identity_steps(o: DeployOptions, n: Names, decode: DecodeOptions) -> list[Step]:
    """The decoder's account and the three bindings it needs (bucket, the video's bucket, topic)."""
    account = decoder_account(o)
    member = _flag("member", f"serviceAccount:{account}")
    project = _flag("project", o.project)
    steps = [
        ensure_account(o, account, "identity of the decoding Cloud Run job only", f"{o.name} decoder (Cloud Run job)"),
        iam_binding(f"decoder may read and write objects in gs://{n.bucket} (manifest, plan, chunk records, "
                    "payloads)", gcloud("storage", "buckets", "add-iam-policy-binding", f"gs://{n.bucket}", project,
                                        member, "--role=roles/storage.objectUser", UNCONDITIONAL)),
        iam_binding(f"decoder may publish to {n.topic} (this topic only)",
                    gcloud("pubsub", "topics", "add-iam-policy-binding", n.topic, project, member,
                           "--role=roles/pubsub.publisher")),
    ]
    video_bucket = parse_gs_uri(decode.video)[0]
    if video_bucket != n.bucket:
        steps.insert(2, iam_binding(f"decoder may read the video's bucket gs://{video_bucket}",
                                    gcloud("storage", "buckets", "add-iam-policy-binding", f"gs://{video_bucket}",
                                           project, member, "--role=roles/storage.objectViewer",
                                           UNCONDITIONAL)))
    return steps


def decode_plan(o: DeployOptions, decode: DecodeOptions) -> Plan:
    """The ordered steps of ``decode`` (see the module docstring)."""
    validate(o)
    validate_decode(decode)
    n = Names.of(o)
    job_id = decode.job
    name = job_name(o, job_id)
    image = producer_image(o, n, decode)
    region, project = _flag("region", o.region), _flag("project", o.project)
    env = env_value({"GOOGLE_CLOUD_PROJECT": o.project, "FRAMES_TOPIC": n.topic, "FRAMES_BUCKET": n.bucket})
    steps = decoder_identity_steps(o, n, decode)
    if decode.producer_image is None:
        steps += [
            ensure(f"Artifact Registry repository {n.repository} for the images", describe_repository(o, n),
                   gcloud("artifacts", "repositories", "create", n.repository, "--repository-format=docker",
                          _flag("location", o.region), project, _flag("description", f"{o.name} images"))),
            Step(f"build deploy/Dockerfile.producer with Cloud Build → {image}",
                 gcloud("builds", "submit", ".", "--config=deploy/cloudbuild-producer.yaml",
                        "--ignore-file=deploy/gcloudignore-producer", _flag("substitutions", f"_IMAGE={image}"),
                        project)),
        ]
    parallelism = [_flag("parallelism", decode.parallelism)] if decode.parallelism else []
    steps.append(Step(
        f"Cloud Run job {name}: {decode.tasks} task(s) of python -m producer.cloudjob run {job_id} (created or "
        "updated)",
        gcloud("run", "jobs", "deploy", name, _flag("image", image), region, project,
               _flag("service-account", decoder_account(o)), _flag("tasks", decode.tasks), *parallelism,
               _flag("task-timeout", f"{decode.task_timeout}s"), _flag("max-retries", decode.max_retries),
               _flag("cpu", o.cpu), _flag("memory", o.memory), _flag("set-env-vars", env), "--command=python",
               _flag("args", ",".join(["-m", "producer.cloudjob", "run", job_id])),
               _flag("labels", f"app=frame-fanout,deployment={o.name},role=decode"))))
    if not decode.resume:
        steps.append(Step(
            f"plan job {job_id}: one task demuxes {decode.video} and cuts it into {decode.tasks} chunks",
            gcloud("run", "jobs", "execute", name, region, project, "--tasks=1",
                   _flag("args", ",".join(plan_arguments(decode, job_id))), "--wait")))
    steps += [
        Step(f"publish job {job_id}: {decode.tasks} task(s), one chunk each, each reading only its byte ranges",
             gcloud("run", "jobs", "execute", name, region, project, "--wait")),
        Step(f"delete the Cloud Run job {name} (the job's manifest stays in gs://{n.bucket})",
             gcloud("run", "jobs", "delete", name, region, project, "--quiet")),
    ]
    note = (f"job {job_id}: follow it with `collector wait --job {job_id}`; if an execution fails, "
            f"`python -m deploy.gcp decode --project {o.project} --region {o.region} --video {decode.video} "
            f"--tasks {decode.tasks} --resume {job_id}` continues it")
    return Plan("decode", o, n, tuple(steps), note=note)  # type: ignore[arg-type]


def decoder_down_steps(o: DeployOptions, n: Names) -> list[Step]:
    """``down``: the decoder's bucket binding (a kept bucket) and its account; its topic binding goes with the topic.

    Bindings on another bucket holding videos are the owner's to remove (``down`` does not know that bucket).
    """
    account = decoder_account(o)
    unbind = remove(f"decoder's roles/storage.objectUser binding on the kept bucket gs://{n.bucket}",
                    gcloud("storage", "buckets", "describe", f"gs://{n.bucket}", _flag("project", o.project),
                           "--format=value(name)"),
                    gcloud("storage", "buckets", "remove-iam-policy-binding", f"gs://{n.bucket}",
                           _flag("project", o.project), _flag("member", f"serviceAccount:{account}"),
                           "--role=roles/storage.objectUser", "--all"),
                    tolerate=("not found",))
    account_step = remove(f"service account {account}", describe_account(o, account),
                          gcloud("iam", "service-accounts", "delete", account, _flag("project", o.project),
                                 "--quiet"))
    return ([] if o.delete_data else [unbind]) + [account_step]
