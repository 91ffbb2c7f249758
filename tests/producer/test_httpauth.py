"""Answering camera challenges (pure): parsing WWW-Authenticate, choosing the scheme, Digest per RFC 7616."""

from __future__ import annotations

import pytest

from producer.httpauth import (
    Challenge,
    authorization,
    basic_authorization,
    choose_challenge,
    digest_authorization,
    parse_challenges,
)

# RFC 7616, section 3.9.1: the same challenge with SHA-256 and with MD5, and the expected answers
RFC_CHALLENGES = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", '
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_the_rfc_7616_examples() -> None:
    sha256, md5 = parse_challenges(RFC_CHALLENGES)
    answer = digest_authorization(md5, "Mufasa", "Circle of Life", "GET", "/dir/index.html", RFC_CNONCE)
    assert answer == (
        'Digest username="Mufasa", realm="http-auth@example.org", '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", uri="/dir/index.html", algorithm=MD5, '
        'response="8ca523f5e9506fed4657c9700eebdbec", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", qop=auth, nc=00000001, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"')
    answer = digest_authorization(sha256, "Mufasa", "Circle of Life", "GET", "/dir/index.html", RFC_CNONCE)
    assert 'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"' in answer
    assert "algorithm=SHA-256" in answer


def test_parsing_keeps_commas_and_escapes_inside_quotes() -> None:
    challenges = parse_challenges('Basic realm="a, \\"b\\"", charset="UTF-8", Digest realm=c,nonce="n,1"')
    assert challenges == [Challenge("basic", {"realm": 'a, "b"', "charset": "UTF-8"}),
                          Challenge("digest", {"realm": "c", "nonce": "n,1"})]
    assert parse_challenges("") == [] and parse_challenges('realm="orphan"') == []
    assert parse_challenges("Negotiate, NTLM") == [Challenge("negotiate"), Challenge("ntlm")]


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ('Basic realm="x", Digest realm="x", nonce="n", qop="auth"', "Digest"),
        ('Digest realm="x", nonce="n", algorithm=MD5, Digest realm="x", nonce="n", algorithm=SHA-256',
         "Digest (SHA-256)"),
        ('Digest realm="x", nonce="n", algorithm=SHA-512-256, Basic realm="x"', "Basic"),
        ('Digest realm="x", nonce="n", qop="auth-int", Basic realm="x"', "Basic"),
        ('Basic realm="x"', "Basic"),
        ("Negotiate, NTLM", None),
        ('Digest realm="x"', None),  # no nonce
    ],
)
def test_digest_is_chosen_before_basic_and_unknown_schemes_never(header: str, chosen: str | None) -> None:
    challenge = choose_challenge(parse_challenges(header))
    assert (str(challenge) if challenge else None) == chosen


def test_digest_without_qop_is_the_rfc_2069_form() -> None:
    challenge = Challenge("digest", {"realm": "cam", "nonce": "abc"})
    answer = authorization(challenge, "viewer", "pw", "GET", "/stream", cnonce="unused")
    assert answer == ('Digest username="viewer", realm="cam", nonce="abc", uri="/stream", algorithm=MD5, '
                      'response="23c40e964de693b84f212f7ef6b4e3a7"')


def test_basic_and_quoting() -> None:
    assert basic_authorization("Aladdin", "open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert basic_authorization("u", "p/?#@:") == "Basic dTpwLz8jQDo="
    answer = digest_authorization(Challenge("digest", {"nonce": "n", "qop": "auth"}), 'a"b\\c', "pw", "GET", "/", "c")
    assert answer.startswith('Digest username="a\\"b\\\\c", realm="", nonce="n"')
