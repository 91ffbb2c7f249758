"""``loadtest.followbench``: its pure parts (percentiles, slopes, the latency figures), the exact errors of its
arguments, and a short real run of each subcommand so neither can rot (no assertion on any speed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest.followbench import (
    Sample,
    latency_figures,
    main,
    memory_slope_mib_per_10k,
    percentile,
    rss_at,
    slope,
    summary,
)


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 95) == 95.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError, match="percentile of no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="q must be between 0 and 100, got 101"):
        percentile([1.0], 101)


def test_summary() -> None:
    assert summary([]) == {"count": 0, "p50": None, "p95": None, "max": None}
    assert summary([0.1, 0.2, 0.3, 0.4, 1.0]) == {"count": 5, "p50": 0.3, "p95": 0.88, "max": 1.0}


def test_slope() -> None:
    assert slope([0, 1, 2, 3], [5, 5, 5, 5]) == 0.0
    assert slope([0, 10, 20], [1.0, 2.0, 3.0]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="at least 2 points"):
        slope([1], [1])
    with pytest.raises(ValueError, match="at least 2 different x values"):
        slope([1, 1], [1, 2])
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        slope([1, 2, 3], [1, 2])


def test_memory_slope_ignores_start_up_and_repeated_frame_counts() -> None:
    mib = 1024
    samples = [Sample(0.0, 0, 50 * mib), Sample(1.0, 500, 190 * mib)]  # start-up: imports, first allocations
    samples += [Sample(2.0 + k, 1000 + 1000 * k, 200 * mib + k * 10) for k in range(10)]  # 10 KiB per 1,000
    samples += [Sample(20.0, 10_000, 400 * mib)]  # same frame count as an earlier sample: the first one counts
    assert memory_slope_mib_per_10k(samples, total_frames=10_000) == pytest.approx(100 / 1024)
    assert rss_at(samples, 5000).frames == 5000
    assert rss_at(samples, 99_999) is samples[-1]


def test_latency_figures() -> None:
    lines = [
        (10.5, {"frame_index": 0, "timestamp_us": 10_000_000, "status": "ok"}),
        (10.6, {"frame_index": 1, "timestamp_us": None, "status": "missing"}),
        (11.0, {"frame_index": 2, "timestamp_us": 10_200_000, "status": "error"}),
    ]
    stored = {0: 10.1, 2: 10.4}
    ticks = [9.999, 10.1, 10.2]
    figures = latency_figures(lines, stored, ticks)
    assert figures["frames_written"] == 2
    assert figures["by_status"] == {"ok": 1, "error": 1, "unreadable": 0, "missing": 1}
    assert figures["capture_to_output_s"] == {"count": 2, "p50": 0.65, "p95": 0.785, "max": 0.8}
    assert figures["capture_to_stored_s"]["max"] == pytest.approx(0.2)
    assert figures["stored_to_output_s"]["p50"] == pytest.approx(0.5)
    assert figures["camera_to_producer_s"]["max"] == pytest.approx(0.001)


@pytest.mark.parametrize(("argv", "problem"), [
    (["latency", "--seconds", "0"], "argument --seconds: must be at least 1 and at most 3600, got '0'"),
    (["latency", "--seconds", "soon"], "argument --seconds: invalid value 'soon': give seconds"),
    (["latency", "--fps", "100"], "argument --fps: must be at least 0.5 and at most 60, got '100'"),
    (["latency", "--max-delay", "0"], "argument --max-delay: must be more than 0 seconds, got '0'"),
    (["latency", "--workers", "0"], "argument --workers: must be at least 1 and at most 64, got '0'"),
    (["latency", "--warmup", "inf"], "argument --warmup: must be at least 0 and at most 600, got 'inf'"),
    (["memory", "--frames", "99"], "argument --frames: must be at least 100, got '99'"),
    (["memory", "--frames", "1e4"], "argument --frames: invalid value '1e4': give a whole number of frames"),
    (["memory", "--rate", "0"], "argument --rate: must be at least 1 and at most 10000, got '0'"),
    (["memory", "--sample-s", "nan"], "argument --sample-s: must be at least 0.1 and at most 60, got 'nan'"),
])
def test_bad_arguments_say_exactly_what_is_wrong(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                 problem: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    command = f"python -m loadtest.followbench {argv[0]}"
    assert capsys.readouterr().err.splitlines()[-1] == f"{command}: error: {problem}"


def test_no_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert "the following arguments are required: command" in capsys.readouterr().err


def test_memory_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart, out = tmp_path / "memory.png", tmp_path / "memory.json"
    assert main(["memory", "--frames", "300", "--rate", "200", "--sample-s", "0.2", "--chart", str(chart),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["lines"] == 300 and result["by_status"] == {"ok": 300}
    assert result["follow_exit"] == 0 and "300 frames in order, 0 missing" in result["follow_summary"]
    assert set(result["rss_mib_at"]) == {"10%", "50%", "100%"} and all(v > 0 for v in result["rss_mib_at"].values())
    assert result["vm_hwm_kib"] > 0 and result["ru_maxrss_kib"] > 0
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RSS at 10 %" in capsys.readouterr().out


def test_latency_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "latency.json"
    assert main(["latency", "--seconds", "4", "--warmup", "0", "--poll", "0.5", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["state"] == "complete"
    written, missing = result["frames_written"], result["by_status"]["missing"]
    assert written > 0 and written + missing == result["frames_published"]
    assert result["capture_to_output_s"]["count"] == written
    assert result["capture_to_stored_s"]["count"] == written
    assert result["capture_to_output_s"]["p50"] >= result["capture_to_stored_s"]["p50"] > 0
    assert "capture -> written in order" in capsys.readouterr().out
