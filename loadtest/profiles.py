"""Client profiles of the locustfile: how a user behaves after an answer (pure parts, tested directly).

Usage::

    CLIENT_PROFILES                                   # ("study", "retry-after")
    retry_after_wait(429, "2")                        # 2.0: wait 2 s before the next request
    retry_after_wait(503, "Sat, 28 Nov 2026 12:00:05 GMT", now=...)   # seconds until that date
    retry_after_wait(429, None), retry_after_wait(200, "1")           # None: not a refusal to honour

- ``study``: the study's closed loop with no wait: each user sends again the moment it gets an
  answer, whatever the answer (the experiment; many real clients do this too).
- ``retry-after``: a well-behaved camera gateway: on 429 or 503 with a ``Retry-After`` header it
  waits that long (at most :data:`MAX_RETRY_AFTER_S`) before its next request. Such an answer is
  counted as a *refusal* the client honoured, not as a failure of the server, and reported by kind
  (``refused 429``); a 429/503 without a usable ``Retry-After`` is a failure as in the study profile.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math

CLIENT_PROFILES = ("study", "retry-after")
DEFAULT_PROFILE = "study"
RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER_S = 30.0
"""Longest wait a ``retry-after`` client accepts from a server (a gateway would not stall longer)."""
REFUSED_PREFIX = "refused "
"""Request-name kind of an honoured refusal: ``/predict [refused 429]``."""


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` value asks for (RFC 9110 §10.2.3), or ``None``.

    Either delay-seconds (``"2"``; a decimal like ``"1.5"`` is accepted too) or an HTTP-date
    (``"Sat, 28 Nov 2026 12:00:05 GMT"``, relative to ``now``, default the current UTC time). A date
    in the past gives 0. Anything else (empty, negative, not a number, not a date) gives ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_wait(status: int, retry_after: str | None, now: dt.datetime | None = None,
                     cap_s: float = MAX_RETRY_AFTER_S) -> float | None:
    """How long a ``retry-after`` client waits after this answer, or ``None`` if it is not a refusal
    to honour (not 429/503, or no usable ``Retry-After``). Bounded by ``cap_s``."""
    if status not in RETRY_STATUSES:
        return None
    seconds = parse_retry_after(retry_after, now)
    return None if seconds is None else min(seconds, cap_s)


def check_profile(name: str) -> str:
    """``name`` if it is a client profile, else ValueError naming the known ones."""
    if name not in CLIENT_PROFILES:
        raise ValueError(f"unknown client profile {name!r}; known: {', '.join(CLIENT_PROFILES)}")
    return name
