"""The report generator on recorded runs: numbers, table and chart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loadtest.report import markdown_report, markdown_table, plot_runs, write_report
from loadtest.results import (
    FrameResult,
    RunFolderError,
    load_run,
    locust_results,
    percentile,
    pipeline_results,
)

HTTP_ROW = ("| local-study-short-20261128T172750Z | 10 users | 10 | 1180 | 130.7 | 4.2 | 96.8 | 40 | 140 | 1100 | "
            "1500 | 429: 1142 | host saturated |")
PIPELINE_ROW = ("| pipeline-3fps-20261128T172815Z | 3 frames/s | 10 | 30 | 3.1 | 3.1 | 0.0 | 226 | 506 | 527 | 506 | "
                "– | host saturated |")


def test_locust_run_totals(http_fixture_run: Path) -> None:
    run = load_run(http_fixture_run)
    t = run.totals
    assert (t.requests, t.failures) == (1180, 1142)
    assert t.rps == pytest.approx(130.66664617937485)
    assert t.ok_per_s == pytest.approx(130.66664617937485 * 38 / 1180)
    assert t.failure_percent == pytest.approx(100 * 1142 / 1180)
    assert (t.p50_ms, t.p95_ms, t.p99_ms) == (40, 140, 1100)
    assert (t.ok_p50_ms, t.ok_p95_ms) == (980, 1500)
    assert t.failures_by_status == {"429": 1142}
    assert run.duration_s == 10
    assert run.load == "10 users"
    assert run.client["host_saturated"] is True and run.client["client_bound"] is False


def test_locust_run_series(http_fixture_run: Path) -> None:
    series = load_run(http_fixture_run).series
    assert [p.t_s for p in series] == list(range(10))
    assert [p.users for p in series] == [0] + [10] * 9
    assert series[0].p50_ms is None and series[0].p95_ms is None  # "N/A" before the first response
    assert (series[3].rps, series[3].failures_per_s, series[3].p50_ms, series[3].p95_ms) == (138, 135, 39, 140)
    assert series[9].rps == pytest.approx(122.857143)
    assert series[9].ok_p95_ms == 1500  # the "/predict" (good responses) row of the same second


def test_markdown_table_exact(http_fixture_run: Path, pipeline_fixture_run: Path) -> None:
    table = markdown_table([load_run(http_fixture_run), load_run(pipeline_fixture_run)])
    lines = table.splitlines()
    assert lines[0] == ("| run | load | s | requests | req/s | ok/s | fail % | p50 ms | p95 ms | p99 ms | ok p95 ms | "
                        "failures by status | client |")
    assert lines[2] == HTTP_ROW
    assert lines[3] == PIPELINE_ROW
    assert len(lines) == 4


def test_pipeline_run_numbers(pipeline_fixture_run: Path) -> None:
    run = load_run(pipeline_fixture_run)
    t = run.totals
    assert (t.requests, t.failures) == (30, 0)
    assert t.ok_per_s == pytest.approx(3.061)  # 30 results / 9.800514 s from first capture to last result
    assert (t.p50_ms, t.p95_ms, t.p99_ms) == (225.86, 505.884, 527.135)
    assert [p.rps for p in run.series] == [3.0] * 10
    assert [p.users for p in run.series] == [3.0] * 10


def test_failures_grouped_by_status() -> None:
    failures = [
        {"Method": "POST", "Name": "/predict [HTTP 429]", "Error": "CatchResponseError('HTTP 429: at capacity')",
         "Occurrences": "7"},
        {"Method": "POST", "Name": "/predict [HTTP 503]", "Error": "CatchResponseError('HTTP 503: budget')",
         "Occurrences": "2"},
        {"Method": "POST", "Name": "/predict [HTTP 429]", "Error": "CatchResponseError('HTTP 429')",
         "Occurrences": "1"},
        {"Method": "POST", "Name": "/predict [HTTP 0]",
         "Error": 'CatchResponseError("HTTP 0 connection error: ConnectionRefusedError(111, \'refused\')")',
         "Occurrences": "3"},
        {"Method": "POST", "Name": "/predict", "Error": "RescheduleTask()", "Occurrences": "1"},
    ]
    _, totals = locust_results([], [], failures)
    assert totals.failures_by_status == {"0": 3, "429": 8, "503": 2, "other": 1}


def test_pipeline_results_missing_and_errors() -> None:
    frames = [FrameResult(0, 1_000_000, 1_200_000, "ok"), FrameResult(1, 1_500_000, 2_600_000, "error-record"),
              FrameResult(2, 2_000_000, None, "missing"), FrameResult(3, 2_500_000, 3_000_000, "ok")]
    series, totals = pipeline_results(frames, 2.0)
    assert (totals.requests, totals.failures) == (4, 2)
    assert totals.failures_by_status == {"error-record": 1, "missing": 1}
    assert totals.ok_per_s == pytest.approx(2 / 2.0)
    assert (totals.p50_ms, totals.p95_ms) == (200.0, 500.0)
    assert [(p.rps, p.failures_per_s, p.users) for p in series] == [(1, 0, 2), (1, 1, 2), (1, 0, 0)]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.95) == 95.0


def test_chart_one_column_per_run(http_fixture_run: Path, pipeline_fixture_run: Path, tmp_path: Path) -> None:
    import matplotlib.image

    one = matplotlib.image.imread(plot_runs([load_run(http_fixture_run)], tmp_path / "one.png", dpi=50))
    two = matplotlib.image.imread(plot_runs([load_run(http_fixture_run), load_run(pipeline_fixture_run)],
                                            tmp_path / "two.png", dpi=50))
    assert one.shape[:2] == (375, 290)  # 5.8 x 7.5 in at 50 dpi
    assert two.shape[:2] == (375, 550)
    assert one.std() > 0.05  # something was drawn


def test_write_report_files(http_fixture_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(http_fixture_run, run_dir)
    report, chart = write_report([load_run(run_dir)], tmp_path / "out", command="python -m loadtest report run")
    text = report.read_text()
    assert text.startswith("# Load test report\n\n```sh\npython -m loadtest report run\n```\n")
    assert HTTP_ROW in text
    assert "![requests/s, failures/s, response times and users over time](report.png)" in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_report_lists_client_verdicts(http_fixture_run: Path) -> None:
    text = markdown_report([load_run(http_fixture_run)], None)
    assert ("- **local-study-short-20261128T172750Z** load generator: the machine was at >= 90 % CPU in 100% of the "
            "samples: client and anything else on it compete for the cores.") in text


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match=r"no run\.json"):
        load_run(tmp_path)
