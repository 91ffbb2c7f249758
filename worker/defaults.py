"""Serving defaults shared by the gunicorn config (read in gunicorn's master) and the app; no heavy imports.

Usage::

    from worker.defaults import DEFAULT_MAX_IN_FLIGHT
"""

from __future__ import annotations

DEFAULT_MAX_IN_FLIGHT = 256
"""Requests one process holds at most (waiting or running; one gunicorn thread each). gunicorn's
processes share one listening socket and do not balance connections: with a closed loop of 200
clients on 2 processes, one process may hold 130 or more. The latency budgets, not this cap, decide."""
