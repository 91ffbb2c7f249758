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

Where the user-info ends (:func:`parse_source_url`): people paste passwords into URLs as they are,
so ``@``, ``:``, ``/``, ``?`` and ``#`` turn up raw. The user-info is everything before the *last*
``@`` of the authority, the user name runs to the first ``:``, and percent-encoding (``%2F``) is
decoded, as curl and browsers do; so ``@`` and ``:`` in a password need nothing. A raw ``/``, ``?``
or ``#`` would end the authority early; when what would then be its host cannot be one (``user:pa``
in ``http://user:pa/ss@cam/``), the authority runs on to the next ``@`` and the host after it. Any
other ``@`` after a ``/``, ``?`` or ``#`` makes the URL ambiguous (``rtsp://admin:1234/x@cam/`` may
be host ``admin`` port 1234, or password ``1234/x``): :class:`AmbiguousUrlError`, and it is shown
with everything before its last ``@`` hidden.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

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
_AUTHORITY_END = re.compile(r"[/?#]")
_HOST_PORT = re.compile(r"(?:\[[^\]]*\]|[^:@\[\]]*)(:\d*)?")
"""A host (a name, an IPv4 address or an ``[IPv6]`` literal) and maybe a port: what an authority without ``@`` is."""
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingVariableError(ValueError):
    """A ``{NAME}`` placeholder in a URL names an environment variable that is not set."""


class AmbiguousUrlError(ValueError):
    """A URL whose user name and password cannot be told from its host, path or query."""

    remedy = ("percent-encode them in the user name and password (/ %2F, ? %3F, # %23, @ %40) or write {NAME} for "
              "the password and export NAME; write an '@' of the path or query as %40")

    def __init__(self, shown: str) -> None:
        super().__init__(f"ambiguous URL {shown!r}: an '@' after a '/', '?' or '#' may end a user name or password "
                         "that contains them")
        self.shown = shown


@dataclass(frozen=True)
class SourceUrl:
    """A URL split at its user-info, everything kept as typed. Made by :func:`parse_source_url`."""

    scheme: str
    userinfo: str | None
    """``user[:password]`` as typed (percent-encoding kept), ``None`` if the URL has none."""
    rest: str
    """``host[:port]`` and whatever follows it."""

    @property
    def user(self) -> str | None:
        return None if self.userinfo is None else self.userinfo.partition(":")[0]

    @property
    def password(self) -> str | None:
        """The password as typed; ``None`` without one (no user-info, or no ``:`` in it)."""
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return self.userinfo.partition(":")[2]

    @property
    def host(self) -> str:
        """The host (``""`` if there is none), without its port."""
        authority = self.rest[:_authority_end(self.rest, 0)]
        match = _HOST_PORT.fullmatch(authority)
        return authority[:match.start(1)] if match and match.group(1) is not None else authority

    def credentials(self) -> tuple[str, str | None] | None:
        """``(user, password)`` percent-decoded, ``None`` without user-info."""
        if self.userinfo is None or self.user is None:
            return None
        return unquote(self.user), None if self.password is None else unquote(self.password)

    def without_userinfo(self) -> str:
        """The URL to request: no credentials in it."""
        return f"{self.scheme}://{self.rest}"

    def with_encoded_userinfo(self) -> str:
        """The URL with its user name and password percent-encoded (what FFmpeg parses and decodes).

        >>> parse_source_url("rtsp://admin:a/b@cam/live").with_encoded_userinfo()
        'rtsp://admin:a%2Fb@cam/live'
        """
        credentials = self.credentials()
        if credentials is None:
            return self.without_userinfo()
        user, password = credentials
        userinfo = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
        return f"{self.scheme}://{userinfo}@{self.rest}"


def parse_source_url(url: str) -> SourceUrl:
    """Split ``url`` (``scheme://...``) at its user-info, as the module docstring says; :class:`AmbiguousUrlError`.

    >>> parse_source_url("http://admin:pa/ss@cam/video").credentials()
    ('admin', 'pa/ss')
    """
    scheme, _, rest = url.partition("://")
    end = _authority_end(rest, 0)
    head = rest[:end]
    if rest.find("@", end) < 0:  # the usual URL: the authority ends at the first '/', '?' or '#'
        if "@" not in head:
            return SourceUrl(scheme, None, rest)
        userinfo = head.rpartition("@")[0]
        return SourceUrl(scheme, userinfo, rest[len(userinfo) + 1:])
    if not _HOST_PORT.fullmatch(head.rpartition("@")[2]):  # 'user:pa', then a raw '/', '?' or '#' of a password
        userinfo = rest[:_authority_end(rest, rest.index("@", end))].rpartition("@")[0]
        after = rest[len(userinfo) + 1:]
        if "@" not in after:
            return SourceUrl(scheme, userinfo, after)
    raise AmbiguousUrlError(f"{scheme}://{MASK}@{_redact_query(rest.rpartition('@')[2])}")


def _authority_end(rest: str, start: int) -> int:
    """Index of the first '/', '?' or '#' at or after ``start`` (``len(rest)`` if none)."""
    match = _AUTHORITY_END.search(rest, start)
    return match.start() if match else len(rest)


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
        parsed = parse_source_url(url)
    except AmbiguousUrlError as exc:
        return exc.shown
    return f"{parsed.scheme}://{'' if parsed.userinfo is None else MASK + '@'}{_redact_query(parsed.rest)}"


def _redact_query(rest: str) -> str:
    """``host/path?query#fragment`` with the secret query values replaced by ``***``."""
    before, question, query = rest.partition("?")
    if not question:
        return rest
    query, hash_sign, fragment = query.partition("#")
    return before + "?" + "&".join(_redact_pair(pair) for pair in query.split("&")) + hash_sign + fragment


def _redact_pair(pair: str) -> str:
    key, sep, value = pair.partition("=")
    if sep and value and _is_secret_key(unquote(key)):
        return f"{key}={MASK}"
    return pair


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret strings of ``url`` (user, password, secret query values; as typed, decoded and encoded).

    Longest first, so that :func:`scrub` replaces a password before a user name contained in it. For
    an ambiguous URL, every reading's ``userinfo@``.
    """
    if not is_url(url):
        return ()
    found: set[str] = set()
    try:
        parsed = parse_source_url(url)
    except AmbiguousUrlError:
        rest = url.partition("://")[2]
        found |= {rest[: at + 1] for at, char in enumerate(rest) if char == "@"}
        parsed = SourceUrl("", None, rest.rpartition("@")[2])
    if parsed.userinfo is not None:
        user, password = parsed.user or "", parsed.password
        found |= {parsed.userinfo + "@", password or ""}
        if len(unquote(user)) >= MIN_SCRUBBED_USER:
            found.add(user)
    query = parsed.rest.partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        key, sep, value = pair.partition("=")
        if sep and value and _is_secret_key(unquote(key)):
            found.add(value)
    found |= {unquote(s) for s in found} | {quote(unquote(s), safe="") for s in found if not s.endswith("@")}
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
