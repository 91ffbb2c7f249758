"""Admission by time and the start deadline of PipelineRunner: the pure policy, then the real pipeline."""

from __future__ import annotations

import pytest

from tests.worker.conftest import blank_jpeg
from worker.errors import TransientError
from worker.runner import Admission, PipelineRunner, decide_admission, updated_service_s


@pytest.mark.parametrize(
    ("held", "service_s", "budget_s", "max_held", "expected"),
    [
        (0, 0.05, 10, 128, Admission(True, 0.0)),
        (198, 0.05, 10, 1000, Admission(True, 9.9)),  # 9.9 s of wait + its own 0.05 s fits 10 s
        (199, 0.05, 10, 1000, Admission(False, 9.95, 1)),  # 9.95 + 0.05 > 10: back in 1 s
        (400, 0.05, 10, 1000, Admission(False, 20.0, 11)),  # 20.05 - 10 = 10.05 s too much
        (128, 0.01, 10, 128, Admission(False, 1.28, 1)),  # the cap, though the wait would fit
        (3, 2.0, 5, 128, Admission(False, 6.0, 3)),  # a slow model: 3 ahead x 2 s + its own 2 s - 5 s
    ],
)
def test_admission_policy(held: int, service_s: float, budget_s: float, max_held: int, expected: Admission) -> None:
    assert decide_admission(held, service_s, budget_s, max_held) == expected


def test_the_service_time_estimate_follows_measurements() -> None:
    estimate = 0.05
    for _ in range(30):
        estimate = updated_service_s(estimate, 0.2)
    assert estimate == pytest.approx(0.2, abs=0.001)


def test_admission_beyond_the_budget_is_429_with_retry_after_from_the_queue(pipeline) -> None:
    runner = PipelineRunner(pipeline, max_in_flight=100)
    runner.service_s = 1.0
    with runner.admit(budget_s=3), runner.admit(budget_s=3), runner.admit(budget_s=3):  # waits 0, 1, 2 s
        assert runner.held == 3
        with pytest.raises(TransientError) as err, runner.admit(budget_s=3):
            pass
        assert (err.value.status, err.value.retry_after_s) == (429, 1)
        assert err.value.reason == ("worker is busy: a new request would wait about 3.0 s, over its 3 s budget "
                                    "(3 requests ahead)")
        with runner.admit(budget_s=10):  # a longer budget fits
            assert runner.held == 4
    assert runner.held == 0  # places are given back


def test_frame_that_cannot_start_within_budget_is_503_and_never_runs_late(pipeline) -> None:
    runner = PipelineRunner(pipeline)
    with runner._lock, pytest.raises(TransientError) as err:  # another frame holds the pipeline
        runner.process(blank_jpeg(), budget_s=0.05)
    assert err.value.status == 503 and err.value.retry_after_s == 2
    assert err.value.reason == "frame could not start within its 0.05 s budget"
    result = runner.process(blank_jpeg(), budget_s=5)
    assert result.width == 64 and "queue" in result.latency_ms
    assert runner.service_s != 0.05  # measured


def test_max_in_flight_must_be_positive(pipeline) -> None:
    with pytest.raises(ValueError):
        PipelineRunner(pipeline, max_in_flight=0)
