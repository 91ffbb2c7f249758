"""Job ids: validation and generation.

Usage::

    job_id = validate_job_id("vtest-20261128t120000-ab12")
    new_id = generate_job_id("/videos/My Video.avi")
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

JOB_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
MAX_JOB_ID_LENGTH = 63


class InvalidJobIdError(ValueError):
    """A job id that does not match ``[a-z0-9][a-z0-9-]{0,62}``."""


def validate_job_id(job_id: str) -> str:
    """Return ``job_id`` unchanged if it is valid, else raise :class:`InvalidJobIdError`.

    The job id becomes part of object names, so anything that could escape the job's
    prefix (``/``, ``..``), upper case, or an empty id is refused with a reason.
    """
    if not isinstance(job_id, str) or job_id == "":
        raise InvalidJobIdError("job id is empty; use lowercase letters, digits and '-'")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJobIdError(
            f"job id {job_id[:20]!r}... is {len(job_id)} characters; at most {MAX_JOB_ID_LENGTH}"
        )
    if JOB_ID_PATTERN.fullmatch(job_id) is None:
        if job_id[0] == "-":
            why = "it must start with a lowercase letter or digit"
        elif job_id != job_id.lower():
            why = "upper-case letters are not allowed"
        else:
            bad = sorted({c for c in job_id if not (c.isascii() and (c.isdigit() or c.islower() or c == "-"))})
            why = f"it contains {''.join(bad)!r}; only lowercase letters, digits and '-' are allowed"
        raise InvalidJobIdError(f"invalid job id {job_id!r}: {why}")
    return job_id


def slugify(text: str, max_length: int = 40) -> str:
    """Lower-case ``text`` and keep ``[a-z0-9-]``, collapsing everything else to single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_length].strip("-")


def generate_job_id(
    source_name: str,
    now: dt.datetime | None = None,
    suffix: str | None = None,
) -> str:
    """Build a job id from a source name, the UTC time and a short random suffix.

    >>> generate_job_id("/data/vtest.avi", dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC), "ab12")
    'vtest-20261128t120000-ab12'
    """
    now = now or dt.datetime.now(dt.UTC)
    suffix = suffix if suffix is not None else secrets.token_hex(2)
    stem = source_name.rstrip("/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    slug = slugify(stem) or "job"
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dt%H%M%S")
    return validate_job_id(f"{slug}-{stamp}-{suffix}")
