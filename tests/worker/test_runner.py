"""Admission control and the per-frame time budget of PipelineRunner (real pipeline)."""

from __future__ import annotations

import pytest

from tests.worker.conftest import blank_jpeg
from worker.errors import TransientError
from worker.runner import PipelineRunner


def test_admission_beyond_capacity_is_429_at_once(pipeline) -> None:
    runner = PipelineRunner(pipeline, max_in_flight=2)
    with runner.admit(), runner.admit(), pytest.raises(TransientError) as err, runner.admit():
        pass
    assert (err.value.status, err.value.retry_after_s) == (429, 1)
    assert err.value.reason == "worker is at capacity (2 requests in flight)"
    with runner.admit():  # slots are released again
        pass


def test_frame_that_cannot_start_within_budget_is_503(pipeline) -> None:
    runner = PipelineRunner(pipeline, max_in_flight=2)
    with runner._lock, pytest.raises(TransientError) as err:  # another frame is running
        runner.process(blank_jpeg(), budget_s=0.05)
    assert err.value.status == 503
    assert err.value.reason == "frame could not start within its 0.05 s budget"
    result = runner.process(blank_jpeg(), budget_s=5)
    assert result.width == 64 and "queue" in result.latency_ms


def test_max_in_flight_must_be_positive(pipeline) -> None:
    with pytest.raises(ValueError):
        PipelineRunner(pipeline, max_in_flight=0)
