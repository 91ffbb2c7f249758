"""Authentication of Pub/Sub push requests (the ``Authorization: Bearer <OIDC token>`` they carry).

Usage::

    verifier = PushAuthVerifier(PushAuthConfig.from_env())       # once per process
    if verifier.enabled:
        claims = verifier.verify(request.headers.get("Authorization"))   # raises AuthError

A push subscription configured with ``--push-auth-service-account=SA`` (and optionally
``--push-auth-token-audience=AUD``) sends a Google-signed ID token. It is accepted only if

- it is a well-formed RS256 JWT whose ``kid`` names one of Google's current signing certificates
  and whose signature verifies against it (``google.auth.jwt.decode``);
- ``iat``/``exp`` hold, allowing ``clock_skew_s`` of skew (``google.auth.jwt.decode``);
- ``iss`` is ``accounts.google.com`` or ``https://accounts.google.com``;
- ``aud`` equals the configured audience (when the subscription sets none, Pub/Sub uses the push
  endpoint URL, e.g. ``https://worker-xyz.a.run.app/pubsub/push``);
- ``email_verified`` is true and ``email`` is one of the allowed push service accounts.

Statuses (RFC 6750 section 3.1; every refusal carries ``WWW-Authenticate: Bearer ...``):

- **401** — no bearer token, or a token that does not authenticate *for this endpoint*: malformed,
  bad signature, unknown key, expired / not yet valid, wrong issuer, **wrong audience**. RFC 6750
  calls a token "invalid for other reasons" ``invalid_token`` (401), and RFC 7519 section 4.1.3
  says a JWT whose ``aud`` does not name the recipient MUST be rejected, i.e. it is not a valid
  credential here at all; a token minted for another service must not be treated as "authenticated".
- **403** — a genuine Google token minted for this audience, but the identity it proves is not
  allowed to push: ``email`` not in the allow-list, or ``email_verified`` not true
  (``error="insufficient_scope"``, the RFC 6750 code for "valid token, not enough privilege").
- **503** — Google's certificates cannot be fetched (and no usable cached copy): transient, with
  ``Retry-After``; not the sender's fault, so Pub/Sub should simply redeliver.

For Pub/Sub every non-2xx answer means "not acknowledged, redeliver with backoff" (eventually to
the dead-letter topic); the 401/403 split is for the people reading logs: 401 means the token
itself is wrong (audience mismatch, clock, forgery), 403 means the subscription pushes as a service
account this worker does not trust.

Certificates are cached in process (:class:`CertCache`), honouring ``Cache-Control: max-age``
(minus ``Age``), clamped to [60 s, 24 h]; an unknown ``kid`` forces at most one refetch per
60 s (key rotation); if a refresh fails, the previous certificates are used for up to an hour
past their expiry before verification reports 503.

Environment (see :meth:`PushAuthConfig.from_env`). Running without authentication is an explicit
choice: a worker started with neither an audience nor ``WORKER_PUSH_AUTH=off`` refuses to start,
so an image deployed by hand cannot silently accept unauthenticated pushes.

- ``WORKER_PUSH_AUTH`` — ``off`` to run without push authentication (the local stack: the emulator
  sends no token); unset or ``on`` requires the two variables below.
- ``WORKER_PUSH_AUDIENCE`` — the expected ``aud``.
- ``WORKER_PUSH_SERVICE_ACCOUNTS`` — comma-separated allowed ``email`` values (the subscription's
  push service account); required when the audience is set.
- ``WORKER_PUSH_CERTS_URL`` — certificate endpoint in Google's v1 PEM format
  (``{"kid": "-----BEGIN CERTIFICATE-----..."}``); default ``https://www.googleapis.com/oauth2/v1/certs``.
- ``WORKER_PUSH_CLOCK_SKEW_S`` — allowed clock skew for ``iat``/``exp``, default 10.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.auth import jwt

log = logging.getLogger("worker.auth")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
"""Google's OAuth2 signing certificates, ``{kid: PEM X.509 certificate}`` (the format used here)."""

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
REALM = "pubsub-push"
SUPPORTED_ALGORITHMS = frozenset({"RS256"})

ENV_AUDIENCE = "WORKER_PUSH_AUDIENCE"
ENV_SERVICE_ACCOUNTS = "WORKER_PUSH_SERVICE_ACCOUNTS"
ENV_CERTS_URL = "WORKER_PUSH_CERTS_URL"
ENV_CLOCK_SKEW = "WORKER_PUSH_CLOCK_SKEW_S"
ENV_SWITCH = "WORKER_PUSH_AUTH"
"""``off``: run without push authentication, on purpose (the local stack: the emulator sends no token)."""
NOT_CONFIGURED = (
    f"push authentication is not configured: set {ENV_AUDIENCE} and {ENV_SERVICE_ACCOUNTS} (what python -m "
    f"deploy.gcp does), or {ENV_SWITCH}=off to accept unauthenticated pushes on purpose (the local stack)"
)

_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)


class AuthError(Exception):
    """A refused push request: ``status`` (401, 403 or 503) and a short ``reason`` for the JSON body.

    Usage::

        except AuthError as exc:
            return jsonify(error=exc.reason), exc.status, exc.headers()

    ``detail`` is for logs only (never sent back): it may name the claim value that was refused.
    """

    def __init__(self, status: int, reason: str, detail: str | None = None, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.retry_after_s = retry_after_s

    @property
    def error_code(self) -> str | None:
        """The RFC 6750 ``error`` attribute, or None (no credentials at all, or a 503)."""
        if self.status == 403:
            return "insufficient_scope"
        if self.status == 401 and self.reason not in (MISSING_HEADER, NOT_BEARER):
            return "invalid_token"
        return None

    def headers(self) -> dict[str, str]:
        """Response headers: ``WWW-Authenticate`` for 401/403, ``Retry-After`` for 503."""
        if self.status >= 500:
            return {"Retry-After": str(self.retry_after_s)}
        params = [f'realm="{REALM}"']
        if self.error_code:
            params.append(f'error="{self.error_code}"')
            params.append(f'error_description="{self.reason}"')
        return {"WWW-Authenticate": "Bearer " + ", ".join(params)}


# Reasons (the exact strings returned in {"error": reason}; tests pin them).
MISSING_HEADER = "missing Authorization header"
NOT_BEARER = "Authorization header is not a Bearer token"
MALFORMED_BEARER = "malformed Bearer token"
NOT_A_JWT = "token is not a well-formed JWT"
UNSUPPORTED_ALG = "token algorithm is not RS256"
NO_KID = "token header has no key id"
UNKNOWN_KID = "token signed by an unknown key"
BAD_SIGNATURE = "token signature does not verify"
EXPIRED = "token expired"
NOT_YET_VALID = "token issued in the future"
MISSING_TIMES = "token lacks iat or exp"
INVALID_TOKEN = "invalid token"
WRONG_ISSUER = "token issuer is not Google"
WRONG_AUDIENCE = "token audience does not match this endpoint"
EMAIL_NOT_VERIFIED = "token email is not verified"
EMAIL_NOT_ALLOWED = "token email is not an allowed push service account"
CERTS_UNAVAILABLE = "cannot fetch Google signing certificates"


@dataclass(frozen=True)
class PushAuthConfig:
    """What a push token must satisfy. ``audience=None`` turns push authentication off.

    Usage::

        PushAuthConfig(audience="https://worker-abc.a.run.app/pubsub/push",
                       allowed_emails=frozenset({"pusher@proj.iam.gserviceaccount.com"}))
        PushAuthConfig.from_env()        # WORKER_PUSH_AUDIENCE, WORKER_PUSH_SERVICE_ACCOUNTS, ...

    An audience without allowed service accounts is refused (``ValueError``): anyone with a Google
    account can mint an ID token for any audience, so the audience alone authenticates nobody.
    Service accounts without an audience are refused too (it would look on but be off).
    """

    audience: str | None = None
    allowed_emails: frozenset[str] = frozenset()
    certs_url: str = GOOGLE_CERTS_URL
    clock_skew_s: int = 10

    def __post_init__(self) -> None:
        if self.audience is not None and not self.audience.strip():
            raise ValueError("push audience is empty; use None to disable push authentication")
        if self.audience and not self.allowed_emails:
            raise ValueError(
                f"push audience is set but no push service account is allowed ({ENV_SERVICE_ACCOUNTS}): "
                "any Google account can mint a token for any audience"
            )
        if self.allowed_emails and not self.audience:
            raise ValueError(f"push service accounts are set but no audience ({ENV_AUDIENCE}): auth would be off")
        if not 0 <= self.clock_skew_s <= 300:
            raise ValueError(f"clock_skew_s must be 0..300, got {self.clock_skew_s}")

    @property
    def enabled(self) -> bool:
        return self.audience is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PushAuthConfig:
        """Read ``WORKER_PUSH_AUTH``, ``WORKER_PUSH_AUDIENCE``, ``WORKER_PUSH_SERVICE_ACCOUNTS``
        (comma-separated), ``WORKER_PUSH_CERTS_URL`` and ``WORKER_PUSH_CLOCK_SKEW_S``. Neither an audience
        nor ``WORKER_PUSH_AUTH=off`` → ``ValueError`` (:data:`NOT_CONFIGURED`).

        Service-account emails are lower-cased (Google writes them so in tokens; the claim itself
        is compared exactly)."""
        env = os.environ if environ is None else environ
        audience = env.get(ENV_AUDIENCE, "").strip() or None
        switch = env.get(ENV_SWITCH, "").strip().lower()
        if switch not in ("", "on", "off"):
            raise ValueError(f"{ENV_SWITCH} must be 'on' or 'off', got {env.get(ENV_SWITCH)!r}")
        if switch == "off":
            if audience or env.get(ENV_SERVICE_ACCOUNTS, "").strip():
                raise ValueError(f"{ENV_SWITCH}=off but {ENV_AUDIENCE}/{ENV_SERVICE_ACCOUNTS} are set: choose one")
            return cls()
        if audience is None and not env.get(ENV_SERVICE_ACCOUNTS, "").strip():
            raise ValueError(NOT_CONFIGURED)
        emails = frozenset(e.strip().lower() for e in env.get(ENV_SERVICE_ACCOUNTS, "").split(",") if e.strip())
        skew_raw = env.get(ENV_CLOCK_SKEW, "").strip()
        try:
            skew = int(skew_raw) if skew_raw else 10
        except ValueError:
            raise ValueError(f"{ENV_CLOCK_SKEW} must be an integer, got {skew_raw!r}") from None
        return cls(
            audience=audience,
            allowed_emails=emails,
            certs_url=env.get(ENV_CERTS_URL, "").strip() or GOOGLE_CERTS_URL,
            clock_skew_s=skew,
        )


class CertFetchError(RuntimeError):
    """The certificate endpoint could not be reached or answered something unusable."""


_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)


def cache_ttl_s(headers: Mapping[str, str], default_s: float, min_s: float, max_s: float) -> float:
    """Freshness lifetime from ``Cache-Control: max-age`` minus ``Age``, clamped to [min_s, max_s].

    Usage: ``cache_ttl_s(response.headers, default_s=300, min_s=60, max_s=86400)``.
    The lower clamp is deliberate: ``no-cache``/``max-age=0`` must not turn into a fetch per push.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    match = _MAX_AGE.search(lowered.get("cache-control", ""))
    ttl = float(match.group(1)) if match else default_s
    with contextlib.suppress(ValueError):
        ttl -= float(lowered.get("age", "0") or 0)
    return max(min_s, min(max_s, ttl))


class CertCache:
    """Google's signing certificates, fetched on demand and kept per ``Cache-Control: max-age``.

    Usage::

        cache = CertCache(GOOGLE_CERTS_URL)
        pem = cache.get("kid-from-token-header")   # None if unknown; raises CertFetchError

    - Fresh copy: served from memory, no HTTP.
    - Expired copy: refetched; if that fails, the old copy is used for up to ``max_stale_s`` more.
    - Unknown ``kid``: one refetch (Google may have rotated keys), at most once per
      ``unknown_kid_refresh_s`` so forged ``kid`` values cannot make every request fetch.
    - After a failed fetch, no new attempt for ``retry_backoff_s`` (requests meanwhile fail fast).

    Thread-safe; at most one fetch at a time. ``fetches`` counts HTTP attempts (for tests/metrics).
    """

    def __init__(
        self,
        certs_url: str,
        request_session: requests.Session | None = None,
        *,
        timeout_s: float = 5.0,
        default_ttl_s: float = 300.0,
        min_ttl_s: float = 60.0,
        max_ttl_s: float = 86400.0,
        unknown_kid_refresh_s: float = 60.0,
        max_stale_s: float = 3600.0,
        retry_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.certs_url = certs_url
        self._request = google.auth.transport.requests.Request(session=request_session or requests.Session())
        self._timeout_s = timeout_s
        self._default_ttl_s, self._min_ttl_s, self._max_ttl_s = default_ttl_s, min_ttl_s, max_ttl_s
        self._unknown_kid_refresh_s = unknown_kid_refresh_s
        self._max_stale_s = max_stale_s
        self._retry_backoff_s = retry_backoff_s
        self._clock = clock
        self._lock = threading.Lock()
        self._certs: dict[str, str] = {}
        self._expires_at = -float("inf")
        self._last_attempt = -float("inf")
        self._next_attempt = -float("inf")
        self._last_error = ""
        self.fetches = 0

    def get(self, kid: str) -> str | None:
        """The PEM certificate for ``kid``, or None if Google does not (or no longer) publish it."""
        with self._lock:
            now = self._clock()
            if now >= self._expires_at:
                try:
                    self._refresh(now)
                except CertFetchError:
                    if not self._certs or now >= self._expires_at + self._max_stale_s:
                        raise
                    # else: keep verifying with the expired copy (Google keys outlive their max-age)
            elif kid not in self._certs and now - self._last_attempt >= self._unknown_kid_refresh_s:
                self._refresh(now)  # a failure here is a 503: cannot tell rotated from forged
            return self._certs.get(kid)

    def _refresh(self, now: float) -> None:
        if now < self._next_attempt:
            raise CertFetchError(f"{self._last_error} (not retried for {self._retry_backoff_s:g} s)")
        self._last_attempt = now
        try:
            certs, ttl = self._fetch()
        except CertFetchError as exc:
            self._last_error = str(exc)
            self._next_attempt = now + self._retry_backoff_s
            log.warning("signing certificate fetch failed", extra={"fields": {
                "certs_url": self.certs_url, "error": self._last_error, "cached_kids": len(self._certs)}})
            raise
        self._certs, self._expires_at = certs, now + ttl

    def _fetch(self) -> tuple[dict[str, str], float]:
        self.fetches += 1
        try:
            response = self._request(self.certs_url, method="GET", timeout=self._timeout_s)
        except google.auth.exceptions.TransportError as exc:
            raise CertFetchError(f"GET {self.certs_url}: {exc}") from exc
        if response.status != 200:
            raise CertFetchError(f"GET {self.certs_url}: HTTP {response.status}")
        try:
            certs = json.loads(response.data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CertFetchError(f"GET {self.certs_url}: not JSON ({exc})") from exc
        if not isinstance(certs, dict) or not certs or not all(
            isinstance(k, str) and isinstance(v, str) and "BEGIN CERTIFICATE" in v for k, v in certs.items()
        ):
            raise CertFetchError(f"GET {self.certs_url}: not a {{kid: PEM certificate}} map (v1 format)")
        ttl = cache_ttl_s(response.headers, self._default_ttl_s, self._min_ttl_s, self._max_ttl_s)
        return certs, ttl


class PushAuthVerifier:
    """Verifies the bearer token of a Pub/Sub push request against a :class:`PushAuthConfig`.

    Usage::

        verifier = PushAuthVerifier(PushAuthConfig.from_env())
        claims = verifier.verify(request.headers.get("Authorization"))   # or raises AuthError

    Build one per process and share it: it holds the certificate cache.
    ``request_session`` is the ``requests.Session`` used to fetch certificates; ``certs`` replaces
    the whole cache (tests use it to drive the clock).
    """

    def __init__(
        self, config: PushAuthConfig, request_session: requests.Session | None = None, *, certs: CertCache | None = None
    ) -> None:
        self.config = config
        self.certs = certs or CertCache(config.certs_url, request_session)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def verify(self, authorization_header: str | None) -> dict[str, Any]:
        """Return the verified claims, or raise :class:`AuthError` (401, 403 or 503)."""
        if not self.config.enabled:
            raise RuntimeError("push authentication is disabled (no audience); check verifier.enabled first")
        token = _bearer_token(authorization_header)
        try:
            header = jwt.decode_header(token)
        except (ValueError, TypeError) as exc:  # google.auth MalformedError is a ValueError
            raise AuthError(401, NOT_A_JWT, detail=str(exc)[:200]) from None
        alg = header.get("alg")
        if alg not in SUPPORTED_ALGORITHMS:
            raise AuthError(401, UNSUPPORTED_ALG, detail=f"alg={str(alg)[:20]!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError(401, NO_KID)
        try:
            pem = self.certs.get(kid)
        except CertFetchError as exc:
            raise AuthError(503, CERTS_UNAVAILABLE, detail=str(exc)) from None
        if pem is None:
            raise AuthError(401, UNKNOWN_KID, detail=f"kid={kid[:64]!r}")
        claims = self._decode(token, kid, pem)
        self._check_claims(claims)
        return claims

    def _decode(self, token: str, kid: str, pem: str) -> dict[str, Any]:
        """Signature, ``iat`` and ``exp`` via ``google.auth.jwt.decode``; map its errors to reasons."""
        try:
            claims = jwt.decode(
                token, certs={kid: pem}, verify=True, audience=None, clock_skew_in_seconds=self.config.clock_skew_s
            )
        except (ValueError, TypeError) as exc:  # InvalidValue / MalformedError are ValueErrors
            message = str(exc)
            lowered = message.lower()
            if "signature" in lowered:
                reason = BAD_SIGNATURE
            elif "expired" in lowered:
                reason = EXPIRED
            elif "too early" in lowered:
                reason = NOT_YET_VALID
            elif "required claim" in lowered:
                reason = MISSING_TIMES
            else:  # google-auth reworded something: still a refusal, only the reason is generic
                reason = INVALID_TOKEN
            raise AuthError(401, reason, detail=message[:200]) from None
        return dict(claims)

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        issuer = claims.get("iss")
        if issuer not in GOOGLE_ISSUERS:
            raise AuthError(401, WRONG_ISSUER, detail=f"iss={str(issuer)[:100]!r}")
        audience = claims.get("aud")
        if audience != self.config.audience:  # Google ID tokens carry a single string audience
            raise AuthError(401, WRONG_AUDIENCE, detail=f"aud={str(audience)[:200]!r}")
        email = claims.get("email")
        if claims.get("email_verified") is not True:
            raise AuthError(403, EMAIL_NOT_VERIFIED, detail=f"email={str(email)[:200]!r}")
        if email not in self.config.allowed_emails:
            raise AuthError(403, EMAIL_NOT_ALLOWED, detail=f"email={str(email)[:200]!r}")


def _bearer_token(authorization_header: str | None) -> str:
    """The token of ``Bearer <token>`` (scheme case-insensitive, RFC 7235), or AuthError 401."""
    if authorization_header is None or not authorization_header.strip():
        raise AuthError(401, MISSING_HEADER)
    scheme = authorization_header.strip().split(" ", 1)[0]
    if scheme.lower() != "bearer":
        raise AuthError(401, NOT_BEARER, detail=f"scheme={scheme[:20]!r}")
    match = _BEARER.match(authorization_header.strip())
    if not match:
        raise AuthError(401, MALFORMED_BEARER)
    return match.group(1)
