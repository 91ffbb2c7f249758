"""Credentials in source URLs: strip them before anything is logged, stored or published (pure).

Usage::

    redact_url("rtsp://admin:hunter2@10.0.0.5:554/stream1")   # 'rtsp://***@10.0.0.5:554/stream1'
    redact_url("http://cam/video.cgi?user=admin&pwd=hunter2")  # 'http://cam/video.cgi?user=***&pwd=***'
    scrub("connect to rtsp://admin:hunter2@cam failed", url_secrets(url))   # secrets → '***'
    expand_env_placeholders("rtsp://admin:{CAM_PASSWORD}@cam/stream1")    # the password from the environment

Cameras put credentials in the user-info part (``user:password@host``) and, just as often, in the
query (``?user=admin&pwd=...``, ``?token=...``). Both are replaced by ``***``: the user name is hidden
too, since it is half of the credential and often the camera's default. Whatever text comes back
from a library (an exception message that quotes the URL) is passed through :func:`scrub` with the
URL's secrets before a person or a log sees it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"

MIN_SCRUBBED_USER = 4
"""A user name alone is scrubbed from free text only from this length on: 'me' or 'pi' would mangle
every message. URLs are always shown through :func:`redact_url`, which hides any user name."""

SECRET_QUERY_KEYS = frozenset({
    "user", "username", "usr", "login", "password", "passwd", "pass", "pwd", "psw", "token", "access_token",
    "auth", "authorization", "key", "apikey", "api_key", "secret", "signature", "sig", "credential", "credentials",
})
"""Query parameters whose values are treated as secrets (compared case-insensitively)."""

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingVariableError(ValueError):
    """A ``{NAME}`` placeholder in a URL names an environment variable that is not set."""


def is_url(source: str) -> bool:
    """True for ``scheme://...`` strings."""
    return _SCHEME.match(source) is not None


def _is_secret_key(key: str) -> bool:
    key = key.lower()
    return key in SECRET_QUERY_KEYS or key.endswith(("password", "token", "secret"))


def redact_url(url: str) -> str:
    """``url`` with user-info and secret query values replaced by ``***``; other strings unchanged.

    >>> redact_url("rtsp://u:p@cam:554/live?channel=1&token=abc")
    'rtsp://***@cam:554/live?channel=1&token=***'
    """
    if not is_url(url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: keep only the scheme
        return url.split("://", 1)[0] + "://" + MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pair(pair: str) -> str:
    key, sep, value = pair.partition("=")
    if sep and value and _is_secret_key(unquote(key)):
        return f"{key}={MASK}"
    return pair


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret strings of ``url`` (user, password, secret query values; raw and percent-decoded).

    Longest first, so that :func:`scrub` replaces a password before a user name contained in it.
    """
    if not is_url(url):
        return ()
    found: set[str] = set()
    netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        user, _, password = userinfo.partition(":")
        found |= {userinfo + "@", password}
        if len(user) >= MIN_SCRUBBED_USER:
            found.add(user)
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and value and _is_secret_key(unquote(key)):
            found.add(value)
    found |= {unquote(s) for s in found}
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***`` (a ``user:pass@`` by ``***@``)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK + "@" if secret.endswith("@") else MASK)
    return text


def expand_env_placeholders(url: str, environ: Mapping[str, str] | None = None) -> str:
    """``url`` with each ``{NAME}`` replaced by the environment variable ``NAME``, percent-encoded.

    A password on the command line is visible to every local user in ``ps``; written as a
    placeholder, only the variable's name is. The value is percent-encoded (it is a secret, not
    URL syntax), so ``@``, ``:`` or ``/`` in a password are safe. Non-URLs are returned unchanged.
    Raises :class:`MissingVariableError` for a variable that is not set.

    >>> expand_env_placeholders("rtsp://admin:{CAM_PASSWORD}@cam/live", {"CAM_PASSWORD": "p@ss:1"})
    'rtsp://admin:p%40ss%3A1@cam/live'
    """
    if not is_url(url):
        return url
    env = os.environ if environ is None else environ

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise MissingVariableError(f"environment variable {name} is not set (the source URL uses {{{name}}})")
        return quote(env[name], safe="")

    return _PLACEHOLDER.sub(value, url)
