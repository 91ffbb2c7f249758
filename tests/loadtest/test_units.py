"""Pure parts: response checks, the client verdict, run planning, joining pipeline results."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from framecontract.layout import frame_objects
from loadtest.checks import (
    Image,
    check_predict_response,
    connection_kind,
    failure_kind,
    status_of_failure,
    study_body,
)
from loadtest.cpu import CpuSample, judge_client
from loadtest.pipeline import PipelinePlan, frame_results, to_us
from loadtest.results import FrameLatency
from loadtest.runner import is_loopback, plan_run, resolve_processes
from loadtest.scenario import parse_scenario

IMAGE = Image("dog.jpg", b"\xff\xd8jpeg", 768, 576)
GOOD = {"name": "dog.jpg", "width": 768, "height": 576, "uri": "gs://frames/predict/x.jpg", "model": "nanodet",
        "latency_ms": {"total": 80.0}, "detections": [{"label": "dog", "score": 0.9, "box": [0, 0, 1, 1]}]}


def body(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_study_body() -> None:
    sent = json.loads(study_body(IMAGE))
    assert sent == {"name": "dog.jpg", "image": base64.b64encode(b"\xff\xd8jpeg").decode()}


@pytest.mark.parametrize(("status", "answer", "error", "expected"), [
    (200, body(), None, (True, None)),
    (200, b"<html>", None, (False, "HTTP 200: response is not a JSON object")),
    (200, json.dumps({"name": "x"}).encode(), None,
     (False, "HTTP 200: response lacks width, height, detections, uri, model, latency_ms")),
    (200, body(detections=[{"label": "dog"}]), None, (False, "HTTP 200: a detection lacks one of label, score, box")),
    (200, body(width=640), None, (False, "HTTP 200: size 640x576 does not match the 768x576 image sent")),
    (200, body(uri="/tmp/x"), None, (False, "HTTP 200: 'uri' is not a gs:// URI")),
    (429, b'{"error": "worker is at capacity (2 requests in flight)"}', None,
     (False, "HTTP 429: worker is at capacity (2 requests in flight)")),
    (503, b"Service Unavailable", None, (False, "HTTP 503")),
    (0, None, "ConnectionRefusedError(111, 'Connection refused')",
     (False, "HTTP 0 conn refused: ConnectionRefusedError(111, 'Connection refused')")),
    (0, None, "HTTPConnectionClosed('connection closed.')",
     (False, "HTTP 0 conn closed: HTTPConnectionClosed('connection closed.')")),
])
def test_check_predict_response(status: int, answer: bytes | None, error: str | None,
                                expected: tuple[bool, str | None]) -> None:
    verdict = check_predict_response(status, answer, IMAGE, error)
    assert (verdict.ok, verdict.failure) == expected
    if verdict.failure:
        assert status_of_failure(verdict.failure) == str(status)


def test_the_baseline_answers_with_a_null_uri() -> None:
    assert check_predict_response(200, body(uri=None), IMAGE, stored=False).ok
    assert (check_predict_response(200, body(uri=None), IMAGE).failure ==
            "HTTP 200: 'uri' is not a gs:// URI")  # our worker must name the stored JPEG
    assert (check_predict_response(200, body(), IMAGE, stored=False).failure ==
            "HTTP 200: 'uri' is not null (this server stores nothing)")


@pytest.mark.parametrize(("status", "answer", "error", "kind"), [
    (200, body(), None, "ok"),
    (200, b"{}", None, "200 bad body"),
    (429, b"", None, "429"),
    (503, b"", None, "503"),
    (0, None, "RetriesExceeded('http://127.0.0.1:8000/predict', 0, original=TimeoutError('timed out'))", "timeout"),
    (0, None, "Timeout(60.0)", "timeout"),
    (0, None, "HTTPConnectionClosed('connection closed.')", "conn closed"),
    (0, None, "RetriesExceeded('http://h/predict', 0, original=EmptyResponse('http://h/predict', 'Empty response "
              "body received'))", "conn closed"),
    (0, None, "BrokenPipeError(32, 'Broken pipe')", "conn closed"),
    (0, None, "ConnectionResetError(104, 'Connection reset by peer')", "conn reset"),
    (0, None, "ConnectionRefusedError(111, 'Connection refused')", "conn refused"),
    (0, None, "gaierror(-2, 'Name or service not known')", "conn error"),
])
def test_kind_of_every_answer(status: int, answer: bytes | None, error: str | None, kind: str) -> None:
    verdict = check_predict_response(status, answer, IMAGE, error)
    assert verdict.kind == kind
    if verdict.failure:
        assert failure_kind(verdict.failure) == kind
        assert failure_kind(f"CatchResponseError({verdict.failure!r})") == kind  # as Locust's failures CSV has it


def test_failure_kind_of_older_messages() -> None:
    older = "HTTP 0 connection error: ConnectionResetError(104, 'Connection reset by peer')"
    assert failure_kind(older) == "conn reset"
    assert failure_kind("CatchResponseError('HTTP 0 connection error: no response')") == "conn error"
    assert failure_kind("RescheduleTask()") == "other"
    assert connection_kind("") == "conn error"


def test_long_reasons_are_cut() -> None:
    verdict = check_predict_response(400, json.dumps({"error": "x" * 200}).encode(), IMAGE)
    assert verdict.failure == "HTTP 400: " + "x" * 79 + "…"


def samples(busiest: list[float], host: list[float]) -> list[CpuSample]:
    return [CpuSample(float(i + 3), b, b, h, 1) for i, (b, h) in enumerate(zip(busiest, host, strict=True))]


def test_client_bound_when_a_process_sits_at_a_full_core() -> None:
    verdict = judge_client(samples([99, 98, 50, 97], [60, 60, 60, 60]), processes=1)
    assert verdict.client_bound and not verdict.host_saturated
    assert verdict.reason == ("a Locust process was at >= 90 % of a core in 75% of the samples: the load generator "
                              "limited the request rate; use more processes (--processes)")


def test_not_client_bound() -> None:
    verdict = judge_client(samples([20, 30, 25, 40], [50, 95, 50, 50]))
    assert not verdict.client_bound and verdict.host_saturated  # 1 of 4 samples >= 90 %: the 25 % threshold
    assert verdict.busiest_p90 == 40 and verdict.host_mean == 61.2
    quiet = judge_client(samples([20, 30], [40, 50]))
    assert quiet.reason == "not client-bound (busiest Locust process p90 30 % of a core, machine mean 45 %)"


def test_start_up_samples_are_ignored() -> None:
    start_up = [CpuSample(0.5, 100, 100, 100, 1), CpuSample(1.5, 100, 100, 100, 1)]
    assert not judge_client(start_up + samples([10, 10], [10, 10])).client_bound


def test_processes() -> None:
    assert is_loopback("http://127.0.0.1:8080") and is_loopback("http://localhost") and is_loopback("http://[::1]:80")
    assert not is_loopback("https://svc-abc.a.run.app")
    assert resolve_processes("auto", "http://127.0.0.1:8080", 1000, 8)[0] == 1
    assert resolve_processes("auto", "https://svc.a.run.app", 1000, 8)[0] == 8
    assert resolve_processes("auto", "https://svc.a.run.app", 150, 8)[0] == 2
    assert resolve_processes(3, "http://127.0.0.1:8080", 10, 8) == (3, "set by the scenario or --processes")


def test_plan_run_command(tmp_path: Path) -> None:
    scenario = parse_scenario({
        "name": "exp", "description": "d", "load": {"users": 500, "spawn_rate": 50, "duration_s": 60, "fps": 5},
        "deploy": {"target": "local", "workers": 2}}, "x.yml")
    plan = plan_run(scenario, "https://svc.a.run.app/", tmp_path, cpu_count=4, python="py",
                    now=dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC))
    assert plan.run_dir == tmp_path / "exp-20261128T120000Z"
    assert plan.processes == 4 and plan.timeout_s == 60 + 10 + 60
    cmd = plan.command
    assert cmd[:6] == ["py", "-m", "locust", "-f", cmd[4], "--headless"] and cmd[4].endswith("loadtest/locustfile.py")
    pairs = dict(zip(cmd[6::1], cmd[7::1], strict=False))
    assert pairs["--host"] == "https://svc.a.run.app" and pairs["--users"] == "500"
    assert pairs["--run-time"] == "60s" and pairs["--fps"] == "5" and pairs["--processes"] == "4"
    assert pairs["--csv"] == str(plan.run_dir / "locust") and "--csv-full-history" in cmd
    with pytest.raises(ValueError, match="--host must be an http"):
        plan_run(scenario, "127.0.0.1:8080", tmp_path)


def test_plan_run_against_the_baseline_with_the_retry_after_client(tmp_path: Path) -> None:
    scenario = parse_scenario({
        "name": "exp", "description": "d",
        "load": {"users": 20, "spawn_rate": 20, "duration_s": 30, "client": "retry-after"},
        "deploy": {"target": "local", "workers": 2}}, "x.yml")
    plan = plan_run(scenario, "http://127.0.0.1:8000", tmp_path, python="py", server="baseline",
                    now=dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC))
    assert plan.run_dir == tmp_path / "exp-baseline-20261128T120000Z" and plan.server == "baseline"
    pairs = dict(zip(plan.command, plan.command[1:], strict=False))
    assert pairs["--client"] == "retry-after" and pairs["--server"] == "baseline"
    default = plan_run(scenario, "http://127.0.0.1:8000", tmp_path).command
    assert default[default.index("--server") + 1] == "worker"
    with pytest.raises(ValueError, match="server must be one of worker, baseline, got 'nginx'"):
        plan_run(scenario, "http://127.0.0.1:8000", tmp_path, server="nginx")


def test_frame_results_join() -> None:
    created = dt.datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=dt.UTC)
    base = to_us(dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC))
    captured = {0: base, 1: base + 100_000, 2: base + 200_000}
    listed = [
        (frame_objects("lt", 0, captured[0]).detections, created),
        (frame_objects("lt", 1, captured[1]).error, created),
        (frame_objects("other", 2, captured[2]).detections, created),   # another job's frame: ignored
        (frame_objects("lt", 2, captured[2] + 1).detections, created),  # another timestamp: not this frame
        ("jobs/lt/manifest.json", created),
    ]
    assert frame_results("lt", captured, listed) == [
        FrameLatency(0, base, base + 250_000, "ok"),
        FrameLatency(1, base + 100_000, base + 250_000, "error-record"),
        FrameLatency(2, base + 200_000, None, "missing"),
    ]
    assert frame_results("lt", captured, listed)[0].latency_ms == 250.0


def test_pipeline_plan_limits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^--rate must be > 0 and <= 1000 frames/s, got 0$"):
        PipelinePlan(0, 10, IMAGE, tmp_path)
    with pytest.raises(ValueError, match="gives no frames"):
        PipelinePlan(0.5, 1, IMAGE, tmp_path)
    assert PipelinePlan(2.5, 10, IMAGE, tmp_path).frames == 25
