"""HTTP authentication with cameras: answer a 401 challenge in the scheme it asks for (pure).

Usage::

    challenges = parse_challenges(response.headers.get("WWW-Authenticate", ""))
    challenge = choose_challenge(challenges)     # Digest (SHA-256, then MD5) before Basic; None if neither
    header = authorization(challenge, "admin", "hunter2", "GET", "/video.mjpg", cnonce=secrets.token_hex(16))

Credentials are never sent pre-emptively: the producer's first request carries none, and only a 401
answer names the scheme to use. Digest is preferred whenever the camera offers it (the password
itself never crosses the network); Basic is sent only to a camera that offers nothing else. Digest
follows RFC 7616 (``MD5``, ``MD5-sess``, ``SHA-256``, ``SHA-256-sess``; ``qop=auth`` or the RFC 2069
form without ``qop``); a challenge this module cannot answer is skipped by :func:`choose_challenge`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DIGEST_ALGORITHMS = {"sha-256": "sha256", "sha-256-sess": "sha256", "md5": "md5", "md5-sess": "md5"}
"""Digest algorithms answered (RFC 7616 names, lower-case) and their :mod:`hashlib` names."""

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme (lower-case) and parameters (keys lower-case)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        algorithm = self.params.get("algorithm")
        return self.scheme.capitalize() + (f" ({algorithm})" if algorithm else "")


def parse_challenges(header: str) -> list[Challenge]:
    """Every challenge in a ``WWW-Authenticate`` value (several headers joined by commas are fine).

    >>> [str(c) for c in parse_challenges('Basic realm="a, b", Digest realm="c", nonce="n", algorithm=SHA-256')]
    ['Basic', 'Digest (SHA-256)']
    """
    challenges: list[Challenge] = []
    for item in _split_list(header):
        scheme = _TOKEN.match(item)
        rest = item[scheme.end():] if scheme else item
        if scheme and not rest.lstrip().startswith("="):  # a scheme, maybe followed by its first parameter
            challenges.append(Challenge(scheme[0].lower(), {}))
            item = rest.strip()
            if not item:
                continue
        if not challenges:
            continue  # a parameter before any scheme: not a challenge
        name, sep, value = item.partition("=")
        if sep:
            params = dict(challenges[-1].params)
            params[name.strip().lower()] = _unquote(value.strip())
            challenges[-1] = Challenge(challenges[-1].scheme, params)
    return challenges


def _split_list(header: str) -> list[str]:
    """``header`` split at the commas that are not inside a quoted string; items stripped, empty ones dropped."""
    items, current, quoted, escaped = [], [], False, False
    for char in header:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def supported(challenge: Challenge) -> bool:
    """Can :func:`authorization` answer this challenge?"""
    if challenge.scheme == "basic":
        return True
    if challenge.scheme != "digest" or "nonce" not in challenge.params:
        return False
    qop = challenge.params.get("qop")
    return (challenge.params.get("algorithm", "MD5").lower() in DIGEST_ALGORITHMS
            and (qop is None or "auth" in _qop_options(qop)))


def _qop_options(qop: str) -> list[str]:
    return [option.strip().lower() for option in qop.split(",")]


def choose_challenge(challenges: list[Challenge]) -> Challenge | None:
    """The challenge to answer: Digest SHA-256, else Digest MD5, else Basic; ``None`` if none is supported."""

    def rank(challenge: Challenge) -> int:
        if challenge.scheme == "basic":
            return 0
        return 2 if DIGEST_ALGORITHMS[challenge.params.get("algorithm", "MD5").lower()] == "sha256" else 1

    usable = [c for c in challenges if supported(c)]
    return max(usable, key=rank) if usable else None


def basic_authorization(user: str, password: str) -> str:
    """The ``Authorization`` value for Basic (RFC 7617; Latin-1 when it fits, else UTF-8, as requests does)."""
    text = f"{user}:{password}"
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def digest_authorization(challenge: Challenge, user: str, password: str, method: str, uri: str, cnonce: str,
                         nc: int = 1) -> str:
    """The ``Authorization`` value answering a Digest challenge (RFC 7616; RFC 2069 when it names no qop).

    ``uri`` is the request target (path and query) exactly as requested; ``cnonce`` a fresh random string.
    """
    params = challenge.params
    algorithm = params.get("algorithm", "MD5")
    hash_name = DIGEST_ALGORITHMS[algorithm.lower()]

    def digest(text: str) -> str:
        return hashlib.new(hash_name, text.encode("utf-8")).hexdigest()

    realm, nonce, count = params.get("realm", ""), params["nonce"], f"{nc:08x}"
    ha1 = digest(f"{user}:{realm}:{password}")
    if algorithm.lower().endswith("-sess"):
        ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
    ha2 = digest(f"{method}:{uri}")
    qop = "auth" if "qop" in params else None
    response = digest(f"{ha1}:{nonce}:{count}:{cnonce}:{qop}:{ha2}" if qop else f"{ha1}:{nonce}:{ha2}")
    fields = [f"username={_quote(user)}", f"realm={_quote(realm)}", f"nonce={_quote(nonce)}", f"uri={_quote(uri)}",
              f"algorithm={algorithm}", f"response={_quote(response)}"]
    if "opaque" in params:
        fields.append(f"opaque={_quote(params['opaque'])}")
    if qop:
        fields += [f"qop={qop}", f"nc={count}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(fields)


def authorization(challenge: Challenge, user: str, password: str, method: str, uri: str, cnonce: str) -> str:
    """The ``Authorization`` value answering ``challenge`` (one :func:`choose_challenge` returned)."""
    if challenge.scheme == "basic":
        return basic_authorization(user, password)
    return digest_authorization(challenge, user, password, method, uri, cnonce)
