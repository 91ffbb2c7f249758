"""The report generator on recorded runs (and one hand-made run with every kind of answer): goodput,
failures by kind, latency of the good answers; the table and the chart."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loadtest.report import chart_kinds, goodput_ratios, markdown_report, markdown_table, plot_runs, write_report
from loadtest.results import (
    FrameLatency,
    RunFolderError,
    load_run,
    locust_results,
    name_kind,
    percentile,
    pipeline_results,
)

FIXTURES = Path(__file__).parent / "fixtures"
HEADER = ("| run | server | client | load | s | good/s | requests | good | refused (Retry-After) | failures | "
          "failures by kind | good p50 ms | good p95 ms | good p99 ms | load generator |")
HTTP_ROW = ("| local-study-short-20261128T172750Z | worker | study | 10 users | 10 | 4.2 | 1180 | 38 (3.2 %) | – | "
            "1142 (96.8 %) | 429: 1142 | 980 | 1500 | 1600 | host saturated |")
PIPELINE_ROW = ("| pipeline-3fps-20261128T172815Z | worker | pipeline | 3 frames/s | 10 | 3.1 | 30 | 30 (100.0 %) | "
                "– | 0 (0.0 %) | – | 226 | 506 | 527 | host saturated |")
KINDS_ROW = ("| baseline-retry-after | baseline | retry-after | 20 users | 3 | 4.0 | 94 | 40 (42.6 %) | "
             "30 (31.9 %; 429: 30) | 24 (25.5 %) | "
             "conn closed: 12, 503: 5, conn reset: 3, timeout: 2, 200 bad body: 1, conn refused: 1 | "
             "200 | 900 | 1200 | ok |")


@pytest.fixture
def kinds_run() -> Path:
    """Hand-made: every kind of answer the locustfile names (fixtures/http-kinds/README.md)."""
    return FIXTURES / "http-kinds"


def test_locust_run_totals(http_fixture_run: Path) -> None:
    run = load_run(http_fixture_run)
    t = run.totals
    assert (t.requests, t.failures) == (1180, 1142)
    assert t.rps == pytest.approx(130.66664617937485)
    assert t.ok_per_s == pytest.approx(130.66664617937485 * 38 / 1180)
    assert t.failure_percent == pytest.approx(100 * 1142 / 1180)
    assert (t.p50_ms, t.p95_ms, t.p99_ms) == (40, 140, 1100)
    assert (t.ok, t.ok_p50_ms, t.ok_p95_ms, t.ok_p99_ms) == (38, 980, 1500, 1600)
    assert t.failures_by_kind == {"429": 1142}
    assert t.refusals_by_kind == {} and t.refusals == 0
    assert (run.server, run.profile) == ("worker", "study")  # older run.json: no server, no client profile
    assert run.duration_s == 10
    assert run.load == "10 users"
    assert run.client["host_saturated"] is True and run.client["client_bound"] is False


def test_locust_run_series(http_fixture_run: Path) -> None:
    series = load_run(http_fixture_run).series
    assert [p.t_s for p in series] == list(range(10))
    assert [p.users for p in series] == [0] + [10] * 9
    assert series[0].p50_ms is None and series[0].p95_ms is None  # "N/A" before the first response
    assert (series[3].rps, series[3].failures_per_s, series[3].p50_ms, series[3].p95_ms) == (138, 135, 39, 140)
    assert (series[3].ok_per_s, series[3].ok_p50_ms, series[3].ok_p95_ms) == (3, 840, 1100)
    assert series[3].by_kind == {"429": 135}
    assert series[9].rps == pytest.approx(122.857143)
    assert series[9].ok_p95_ms == 1500  # the "/predict" (good responses) row of the same second


def test_goodput_and_failures_by_kind(kinds_run: Path) -> None:
    run = load_run(kinds_run)
    t = run.totals
    assert (t.requests, t.ok, t.failures, t.refusals) == (94, 40, 24, 30)
    assert t.ok_per_s == pytest.approx(4.0)  # 9.4 req/s x 40 good / 94 requests
    assert t.failures_by_kind == {"conn closed": 12, "503": 5, "conn reset": 3, "timeout": 2, "200 bad body": 1,
                                  "conn refused": 1}  # most frequent first; the last from an older message format
    assert list(t.failures_by_kind) == ["conn closed", "503", "conn reset", "timeout", "200 bad body", "conn refused"]
    assert t.refusals_by_kind == {"429": 30}  # honoured by the retry-after client: not failures
    assert (t.ok_p50_ms, t.ok_p95_ms, t.ok_p99_ms) == (200, 900, 1200)  # the good answers only
    assert (t.p50_ms, t.p95_ms, t.p99_ms) == (190, 8000, 60000)  # all answers: the timeouts dominate
    assert (run.server, run.profile, run.load) == ("baseline", "retry-after", "20 users")


def test_series_by_kind(kinds_run: Path) -> None:
    series = load_run(kinds_run).series
    assert [p.t_s for p in series] == [0, 1, 2]
    assert [p.ok_per_s for p in series] == [0, 3, 5]
    assert [p.ok_p95_ms for p in series] == [None, 700, 900]
    assert [p.by_kind for p in series] == [{}, {"conn closed": 1, "refused 429": 4},
                                           {"503": 0.5, "conn closed": 2.5, "refused 429": 3}]
    assert chart_kinds([load_run(kinds_run)]) == ["503", "conn closed", "refused 429"]


@pytest.mark.parametrize(("name", "kind"), [
    ("/predict", "ok"), ("/predict [HTTP 429]", "429"), ("/predict [HTTP 200]", "200 bad body"),
    ("/predict [refused 503]", "refused 503"), ("/predict [conn reset]", "conn reset"),
    ("/predict [HTTP 0]", "conn error"), ("Aggregated", None), ("/other", None),
])
def test_name_kind(name: str, kind: str | None) -> None:
    assert name_kind(name) == kind


def test_markdown_table_exact(http_fixture_run: Path, pipeline_fixture_run: Path) -> None:
    table = markdown_table([load_run(http_fixture_run), load_run(pipeline_fixture_run),
                            load_run(FIXTURES / "http-kinds")])
    lines = table.splitlines()
    assert lines[0] == HEADER
    assert lines[2] == HTTP_ROW
    assert lines[3] == PIPELINE_ROW
    assert lines[4] == KINDS_ROW
    assert len(lines) == 5


def test_goodput_ratios(http_fixture_run: Path, kinds_run: Path) -> None:
    runs = [load_run(kinds_run), load_run(http_fixture_run)]
    assert goodput_ratios(runs) == ("good answers/s relative to baseline-retry-after (4.0/s): "
                                    "local-study-short-20261128T172750Z **1.05×**")  # 4.2079 / 4.0
    assert goodput_ratios(runs[:1]) is None


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
    assert totals.failures_by_kind == {"429": 8, "conn refused": 3, "503": 2, "other": 1}


def test_pipeline_results_missing_and_errors() -> None:
    frames = [FrameLatency(0, 1_000_000, 1_200_000, "ok"), FrameLatency(1, 1_500_000, 2_600_000, "error-record"),
              FrameLatency(2, 2_000_000, None, "missing"), FrameLatency(3, 2_500_000, 3_000_000, "ok")]
    series, totals = pipeline_results(frames, 2.0)
    assert (totals.requests, totals.failures) == (4, 2)
    assert totals.failures_by_kind == {"error-record": 1, "missing": 1}
    assert totals.ok_per_s == pytest.approx(2 / 2.0)
    assert (totals.ok, totals.p50_ms, totals.p95_ms) == (2, 200.0, 500.0)
    assert [(p.rps, p.failures_per_s, p.users) for p in series] == [(1, 0, 2), (1, 1, 2), (1, 0, 0)]
    assert [(p.ok_per_s, p.by_kind) for p in series] == [(1, {}), (0, {"error-record": 1}), (1, {})]


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([5.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.95) == 95.0


def test_chart_one_column_per_run(http_fixture_run: Path, pipeline_fixture_run: Path, tmp_path: Path) -> None:
    import matplotlib.image

    one = matplotlib.image.imread(plot_runs([load_run(http_fixture_run)], tmp_path / "one.png", dpi=50))
    two = matplotlib.image.imread(plot_runs([load_run(http_fixture_run), load_run(pipeline_fixture_run)],
                                            tmp_path / "two.png", dpi=50))
    assert one.shape[:2] == (475, 290)  # 5.8 x 9.5 in at 50 dpi
    assert two.shape[:2] == (475, 550)
    assert one.std() > 0.05  # something was drawn


def test_write_report_files(http_fixture_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(http_fixture_run, run_dir)
    report, chart = write_report([load_run(run_dir)], tmp_path / "out", command="python -m loadtest report run")
    text = report.read_text()
    assert text.startswith("# Load test report\n\n```sh\npython -m loadtest report run\n```\n")
    assert HTTP_ROW in text
    assert "![good answers/s and other answers by kind, latency of good answers, users](report.png)" in text
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_report_lists_client_verdicts(http_fixture_run: Path) -> None:
    text = markdown_report([load_run(http_fixture_run)], None)
    assert ("- **local-study-short-20261128T172750Z** load generator: the machine was at >= 90 % CPU in 100% of the "
            "samples: client and anything else on it compete for the cores.") in text


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match=r"no run\.json"):
        load_run(tmp_path)
