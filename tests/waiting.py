"""Polling for a state a test must reach, with a guard against a hang (not a timing assertion).

Usage::

    from tests.waiting import wait_for
    status = wait_for(lambda: read_status() or None, 60, "the job to finish", every_s=0.5)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.2) -> Any:
    """``condition()``'s first truthy value, polled every ``every_s``; AssertionError naming ``what`` after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
