"""The collector's one error type: what the CLI prints as ``error: <message>`` and exits 1 on.

Usage::

    raise CollectorError(f"job {job_id!r} not found: no manifest at {uri}")
"""

from __future__ import annotations


class CollectorError(Exception):
    """A failure the user can act on; ``str(exc)`` is the complete one-line message."""
