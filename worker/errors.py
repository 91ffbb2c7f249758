"""Error classes of the push path, and the HTTP status each one maps to.

- :class:`BadRequestError` — the request itself is malformed (not a Pub/Sub envelope, bad base64,
  frame not identifiable). 400: Pub/Sub redelivers it until the dead-letter policy moves it aside,
  so nothing is lost silently.
- :class:`PermanentFrameError` — the frame is identifiable but can never succeed (undecodable
  image, unknown schema). An error record is stored and the message is acknowledged (204).
  :class:`ImageTooLargeError` is the one for images larger than the limits (413 on the front door).
- :class:`TransientError` — the trouble may pass (storage unavailable, overloaded). 503 or 429
  with ``Retry-After``: Pub/Sub backs off and redelivers.
"""

from __future__ import annotations


class BadRequestError(ValueError):
    """A malformed push request. Maps to 400 with ``reason``."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentFrameError(ValueError):
    """A frame that can never be processed. Recorded, then acknowledged (204)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageTooLargeError(PermanentFrameError):
    """An image whose header declares more pixels (or a longer side) than allowed. 413 on the front door."""


class TransientError(RuntimeError):
    """Trouble that may pass. Maps to 503 (or 429 when overloaded) with ``Retry-After``."""

    def __init__(self, reason: str, status: int = 503, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
