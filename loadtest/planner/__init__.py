"""The planner: a discrete-event model of Pub/Sub and Cloud Run running our worker, calibrated on our measurements.

Usage::

    python -m loadtest plan --cameras 40 --fps 5 --slo-p95 2s       # cheapest settings that meet the target
    python -m loadtest simulate study-1cpu-concurrency-30            # a scenario in the model
    python -m loadtest reproduce                                     # validation: our runs, the study's table
    python -m loadtest calibrate RUN... --startup                    # measured service times → profile JSON

Modules: :mod:`~loadtest.planner.rules` (every constant with its source), :mod:`~loadtest.planner.policies`
(the rules as pure functions), :mod:`~loadtest.planner.config` (what a simulation takes and returns),
:mod:`~loadtest.planner.model` (the SimPy model), :mod:`~loadtest.planner.profile` and
:mod:`~loadtest.planner.calibrate` (measurements), :mod:`~loadtest.planner.plan`,
:mod:`~loadtest.planner.scenarios`, :mod:`~loadtest.planner.reproduce`, :mod:`~loadtest.planner.figures`,
:mod:`~loadtest.planner.chart`, :mod:`~loadtest.planner.cli`. The model and its limits: docs/planner.md.
"""
