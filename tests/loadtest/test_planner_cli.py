"""The planner's commands: exact errors, the rules table, a small end-to-end plan whose flags deploy.gcp accepts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from deploy.gcp.cli import build_parser as gcp_parser
from deploy.gcp.cli import options_from_args
from deploy.gcp.options import validate
from loadtest.cli import main
from loadtest.planner.rules import RULE_SOURCES

FIXTURES = Path(__file__).parent / "fixtures"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("argv", "message"), [
    (["plan", "--fps", "5"], "plan needs --cameras and --fps (or --rules)"),
    (["plan", "--cameras", "0", "--fps", "5"], "--cameras 0: must be at least 1"),
    (["plan", "--cameras", "4", "--fps", "0"], "--fps 0: must be > 0 and <= 120"),
    (["plan", "--cameras", "4", "--fps", "5", "--cpu", "3"], "--cpu 3: Cloud Run instances have 1, 2, 4, 6 or 8 vCPUs"),
    (["plan", "--cameras", "4", "--fps", "5", "--concurrency", "0"],
     "--concurrency 0: must be 1..1000 (Cloud Run's limit)"),
    (["plan", "--cameras", "4", "--fps", "5", "--max-instances", "0"], "--max-instances 0: must be 1..1000"),
    (["plan", "--cameras", "4", "--fps", "5", "--min-instances", "200"],
     "--min-instances 200: must be 0..--max-instances (100)"),
    (["plan", "--cameras", "4", "--fps", "5", "--slo-p95", "soon"],
     "--slo-p95 'soon': expected a positive duration like 2s, 500ms or 1.5"),
    (["plan", "--cameras", "4", "--fps", "5", "--duration", "60s", "--warmup", "60s"],
     "--warmup 60s: must be shorter than --duration 60s"),
    (["plan", "--cameras", "4", "--fps", "5", "--frame-bytes", "0"], "--frame-bytes 0: must be at least 1"),
    (["plan", "--cameras", "4", "--fps", "5", "--set", "target_cpus=0.5"],
     "--set 'target_cpus=0.5': no rule named 'target_cpus' (did you mean 'target_cpu'?); "
     "python -m loadtest plan --rules lists them"),
    (["plan", "--cameras", "4", "--fps", "5", "--profile", "/nonexistent/p.json"],
     "/nonexistent/p.json: no such profile; record one with python -m loadtest calibrate"),
    (["simulate", "no-such-scenario"], "no scenario 'no-such-scenario': not a file, and not one of: "),
    (["calibrate"], "calibrate needs run folders and/or --startup"),
])
def test_errors_say_exactly_what_is_wrong(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 1 and out == ""
    assert err.startswith(f"error: {message}")
    assert err.count("\n") == 1


def test_plan_rules_lists_every_constant_with_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", "--rules", "--set", "target_cpu=0.7"], capsys)
    assert code == 0
    assert "| `target_cpu` | 0.7 | fraction | field.md: Cloud Run autoscaling targets 60 % CPU" in out
    assert all(f"| `{name}` |" in out for name in RULE_SOURCES)


def test_a_small_plan_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "plan.png"
    code, out, err = run(["plan", "--cameras", "3", "--fps", "2", "--slo-p95", "2s", "--cpu", "1", "--concurrency",
                          "1", "2", "--duration", "90s", "--warmup", "20s", "--chart", str(chart)], capsys)
    assert code == 0, err
    assert out.startswith("plan: 3 cameras x 2 frames/s = 6 frames/s, p95 target 2 s; 90 s simulated, the first 20 s "
                          "not measured; seed 1\n")
    assert "profile loadtest/planner/profiles/local-2core.json: recorded " in out
    assert "prices: field.md, checked 2026-12 (tier 1, USD); overridden: none" in out
    assert "| ★ |" in out and "★ cheapest meeting the target: " in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    command = next(line.strip() for line in out.splitlines() if line.strip().startswith("python -m deploy.gcp up"))
    argv = shlex.split(command.replace("--project P --region R", "--project my-project --region europe-west1"))[3:]
    options = options_from_args(gcp_parser().parse_args(argv))
    validate(options)                                      # deploy.gcp accepts the settings as printed
    assert options.cpu == "1"


def test_the_same_plan_twice_prints_the_same_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--cameras", "2", "--fps", "1", "--cpu", "1", "--mode", "pull", "--duration", "60s", "--warmup",
            "10s", "--seed", "5", "--chart", str(tmp_path / "a.png")]
    first, second = run(argv, capsys)[1], run(argv, capsys)[1]
    assert first == second


def test_simulate_a_local_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["simulate", "local-study-short", "--users", "10", "--duration", "5"], capsys)
    assert code == 0, err
    assert out.startswith("simulate local-study-short: 10 users (study client), 5 s; our worker (admission by time)")
    assert "| model: local-study-short |" in out
    assert "the study saw: the study's single-instance run saw 83 % failures (503, some 429) and p95 ~12 s" in out


def test_calibrate_writes_a_profile_from_run_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "profile.json"
    code, out, err = run(["calibrate", str(FIXTURES / "planner-pull-2fps"), "--validate",
                          str(FIXTURES / "planner-frontdoor-4users"), "--delivery-from",
                          str(FIXTURES / "planner-pull-2fps"), "--cores", "2", "--out", str(out_path)], capsys)
    assert code == 0, err
    assert "calibration: planner-pull-2fps (frame, 60 samples" in out
    assert "validation: planner-frontdoor-4users (request, 60 samples" in out
    data = json.loads(out_path.read_text())
    assert data["format"] == 1 and data["delivery"]["source"] == "planner-pull-2fps"
    assert data["provenance"]["command"].startswith("python -m loadtest calibrate ")


def test_reproduce_our_runs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["reproduce", "--own"], capsys)
    assert code == 0, err
    assert "| run (measured) | load | figure | measured | model, the run's own service times | error |" in out
    assert out.count("| planner-val-pull-4fps |") == 3
