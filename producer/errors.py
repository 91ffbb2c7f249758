"""Errors the producer reports to a person: what is wrong, and what to do about it.

Usage::

    raise InputError(f"no such file: {path}", "check the path to the video")
    # the CLI prints:  error: no such file: x.mp4 — check the path to the video   (exit 2)
"""

from __future__ import annotations


class ProducerError(Exception):
    """A failure with a one-line explanation and a remedy. Exit status 1 (run-time failure)."""

    exit_code = 1

    def __init__(self, problem: str, remedy: str) -> None:
        super().__init__(f"{problem} — {remedy}")
        self.problem = problem
        self.remedy = remedy

    def for_job(self, job_id: str) -> ProducerError:
        """The same error (same class and exit status) with ``job <id>:`` in front of the problem."""
        return type(self)(f"job {job_id}: {self.problem}", self.remedy)


class UsageError(ProducerError):
    """Bad option values or a bad job id. Exit status 2."""

    exit_code = 2


class InputError(ProducerError):
    """The video cannot be used: missing, not a video, corrupt, no frames. Exit status 2."""

    exit_code = 2


class ResourceNotFoundError(ProducerError):
    """The Pub/Sub topic or the GCS bucket does not exist. Exit status 1."""


class ServiceUnavailableError(ProducerError):
    """Pub/Sub or GCS cannot be reached. Exit status 1."""


class JobExistsError(UsageError):
    """A job with this id already has a manifest. Exit status 2."""


class PublishFailedError(ProducerError):
    """Some frames could not be published or could not be confirmed. Exit status 1."""


class ManifestWriteError(ProducerError):
    """The manifest could not be written. Exit status 1."""
