"""RFC 6750, the reply side: WWW-Authenticate challenges and JSON refusals (pure)."""

from __future__ import annotations

import json
import re

import pytest

from resource_guard._bearer_reply import BearerReplies, challenge
from resource_guard._bearer_request import DUPLICATE_HEADERS

# RFC 9110 challenge syntax with RFC 6750 parameters: only these shapes may ever be sent.
CHALLENGE = re.compile(
    r'Bearer realm="(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
    r'(?:, (?:error|error_description|scope)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
    r'(?:, resource_metadata="[\x21\x23-\x5b\x5d-\x7e]+")?'
)


def test_bare_challenge_has_no_error() -> None:
    assert challenge("orders") == b'Bearer realm="orders"'


def test_challenge_with_every_parameter() -> None:
    value = challenge(
        "api",
        error="insufficient_scope",
        description="the token lacks a required scope",
        scopes=("orders:read", "orders:write"),
    )
    assert value == (
        b'Bearer realm="api", error="insufficient_scope", '
        b'error_description="the token lacks a required scope", '
        b'scope="orders:read orders:write"'
    )


HOSTILE = [
    'x"\r\nSet-Cookie: a=b',
    'x", error="none',
    "x\\",
    "x\x00\x01\x7f",
    "caf\u00e9 \u202e",
    "\n\n\n",
    '"' * 50,
    "\\" * 50,
]
HOSTILE_IDS = [
    "crlf",
    "quote-breakout",
    "backslash",
    "controls",
    "non-ascii",
    "newlines",
    "quotes",
    "backslashes",
]


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_description_cannot_break_the_challenge(value: str) -> None:
    header = challenge("api", error="invalid_token", description=value).decode("ascii")
    assert CHALLENGE.fullmatch(header), header
    assert "\r" not in header
    assert "\n" not in header


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_realm_is_escaped(value: str) -> None:
    header = challenge(value).decode("ascii")
    assert CHALLENGE.fullmatch(header), header


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_scope_cannot_break_the_challenge(value: str) -> None:
    header = challenge("api", error="insufficient_scope", scopes=(value, "ok")).decode("ascii")
    assert CHALLENGE.fullmatch(header), header
    assert header.endswith('ok"')


def test_long_description_is_cut() -> None:
    header = challenge("api", error="invalid_token", description="x" * 5000)
    assert len(header) < 300


@pytest.fixture
def replies() -> BearerReplies:
    return BearerReplies("orders")


def body(reply_body: bytes) -> object:
    return json.loads(reply_body)


def test_missing_reply_is_bare_401(replies: BearerReplies) -> None:
    reply = replies.missing
    assert reply.status == 401
    assert reply.header(b"www-authenticate") == b'Bearer realm="orders"'
    assert body(reply.body) == {
        "error": "unauthorized",
        "error_description": "a bearer token is required",
    }


def test_invalid_request_reply(replies: BearerReplies) -> None:
    reply = replies.invalid_request(DUPLICATE_HEADERS)
    assert reply.status == 400
    assert reply.header(b"www-authenticate") == (
        b'Bearer realm="orders", error="invalid_request", '
        b'error_description="the request has more than one Authorization header"'
    )
    assert body(reply.body) == {"error": "invalid_request", "error_description": DUPLICATE_HEADERS}


def test_invalid_token_reply(replies: BearerReplies) -> None:
    reply = replies.invalid_token("the token expired")
    assert reply.status == 401
    assert reply.header(b"www-authenticate") == (
        b'Bearer realm="orders", error="invalid_token", error_description="the token expired"'
    )
    assert body(reply.body) == {"error": "invalid_token", "error_description": "the token expired"}


def test_invalid_token_reply_without_usable_description(replies: BearerReplies) -> None:
    reply = replies.invalid_token("\u00e9\u00e9")
    assert body(reply.body) == {"error": "invalid_token", "error_description": "invalid_token"}


def test_insufficient_scope_reply_lists_every_required_scope(replies: BearerReplies) -> None:
    reply = replies.insufficient_scope(("orders:read", "orders:write"))
    assert reply.status == 403
    assert reply.header(b"www-authenticate") == (
        b'Bearer realm="orders", error="insufficient_scope", '
        b'error_description="the token lacks a required scope", '
        b'scope="orders:read orders:write"'
    )
    assert body(reply.body) == {
        "error": "insufficient_scope",
        "error_description": "the token lacks a required scope",
    }


def test_any_of_scope_reply_says_so(replies: BearerReplies) -> None:
    reply = replies.insufficient_scope(("a", "b"), any_of=True)
    assert body(reply.body) == {
        "error": "insufficient_scope",
        "error_description": "the token grants none of the accepted scopes",
    }


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (30.0, b"30"),
        (0.2, b"1"),
        (2.5, b"3"),
        (-5, b"1"),
        (1e9, b"3600"),
        (float("inf"), b"3600"),
        (float("nan"), b"3600"),
    ],
    ids=["whole", "fraction-rounds-up", "half", "negative", "huge", "inf", "nan"],
)
def test_unavailable_reply_has_retry_after_in_whole_seconds(
    replies: BearerReplies, retry_after: float, header: bytes
) -> None:
    reply = replies.keys_unavailable(retry_after)
    assert reply.status == 503
    assert reply.header(b"retry-after") == header
    assert reply.header(b"www-authenticate") is None
    assert body(reply.body) == {
        "error": "temporarily_unavailable",
        "error_description": "token verification is temporarily unavailable",
    }


def test_replies_are_json_with_length_and_no_store(replies: BearerReplies) -> None:
    reply = replies.invalid_token("bad")
    assert reply.header(b"content-type") == b"application/json"
    assert reply.header(b"content-length") == str(len(reply.body)).encode()
    assert reply.header(b"cache-control") == b"no-store"


def test_replies_are_reused(replies: BearerReplies) -> None:
    assert replies.invalid_token("x") is replies.invalid_token("x")
    assert replies.insufficient_scope(("a",)) is replies.insufficient_scope(("a",))


def test_reply_caches_stay_bounded(replies: BearerReplies) -> None:
    for number in range(600):
        replies.invalid_token(f"d{number}")
        replies.insufficient_scope((f"s{number}",))
    assert len(replies._invalid_token) <= 256
    assert len(replies._scope) <= 256


# -- RFC 9728 §5.1: every challenge names the protected-resource metadata ---------------------

METADATA_URL = "https://api.test/.well-known/oauth-protected-resource/orders"
NAMED = b', resource_metadata="' + METADATA_URL.encode() + b'"'


def test_challenge_names_the_metadata_last() -> None:
    value = challenge("api", error="invalid_token", resource_metadata=METADATA_URL)
    assert value == b'Bearer realm="api", error="invalid_token"' + NAMED


@pytest.mark.parametrize("value", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_metadata_url_cannot_break_the_challenge(value: str) -> None:
    header = challenge("api", resource_metadata=value).decode("ascii")
    assert "\r" not in header
    assert "\n" not in header
    assert re.fullmatch(r'Bearer realm="api", resource_metadata="(?:[^"\\]|\\.)*"', header)


@pytest.fixture
def named() -> BearerReplies:
    return BearerReplies("orders", resource_metadata=METADATA_URL)


def test_every_challenge_names_the_metadata(named: BearerReplies) -> None:
    """Each reply shape: 401 bare, 400, 401 invalid_token, 403 (all and any_of)."""
    expected = {
        "missing": (named.missing, b'Bearer realm="orders"'),
        "invalid_request": (
            named.invalid_request(DUPLICATE_HEADERS),
            b'Bearer realm="orders", error="invalid_request", '
            b'error_description="the request has more than one Authorization header"',
        ),
        "invalid_token": (
            named.invalid_token("the token expired"),
            b'Bearer realm="orders", error="invalid_token", error_description="the token expired"',
        ),
        "insufficient_scope": (
            named.insufficient_scope(("orders:read",)),
            b'Bearer realm="orders", error="insufficient_scope", '
            b'error_description="the token lacks a required scope", scope="orders:read"',
        ),
        "insufficient_scope_any_of": (
            named.insufficient_scope(("a", "b"), any_of=True),
            b'Bearer realm="orders", error="insufficient_scope", '
            b'error_description="the token grants none of the accepted scopes", scope="a b"',
        ),
    }
    for name, (reply, start) in expected.items():
        header = reply.header(b"www-authenticate")
        assert header == start + NAMED, name
        assert CHALLENGE.fullmatch(header.decode()), name


def test_503_names_no_metadata(named: BearerReplies) -> None:
    assert named.unavailable.header(b"www-authenticate") is None
    assert named.keys_unavailable(5).header(b"www-authenticate") is None


def test_without_metadata_no_challenge_names_one(replies: BearerReplies) -> None:
    assert replies.resource_metadata is None
    assert b"resource_metadata" not in (replies.missing.header(b"www-authenticate") or b"")


def test_named_replies_are_precomputed(named: BearerReplies) -> None:
    assert named.missing is named.missing
    assert named.invalid_token("x") is named.invalid_token("x")
    assert named.insufficient_scope(("a",)) is named.insufficient_scope(("a",))


# -- DPoP (RFC 9449 §7.1) ------------------------------------------------------------------

DPOP_CHALLENGE = re.compile(
    r'DPoP realm="(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*", '
    r'algs="[\x21\x23-\x5b\x5d-\x7e ]+"'
    r'(?:, (?:error|error_description)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
)


def test_a_dpop_challenge_names_the_algorithms() -> None:
    value = challenge("api", scheme="DPoP", algs=("ES256", "EdDSA"), error="invalid_dpop_proof")
    assert value == b'DPoP realm="api", algs="ES256 EdDSA", error="invalid_dpop_proof"'


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_algorithm_names_cannot_break_the_challenge(value: str) -> None:
    header = challenge("api", scheme="DPoP", algs=(value, "ES256"), description=value)
    assert DPOP_CHALLENGE.fullmatch(header.decode("ascii")), header


def test_with_dpop_a_missing_token_gets_both_bare_challenges() -> None:
    replies = BearerReplies("api", dpop_algs=("RS256", "ES256"))
    assert [v for k, v in replies.missing.headers if k == b"www-authenticate"] == [
        b'Bearer realm="api"',
        b'DPoP realm="api", algs="ES256 RS256"',
    ]
    assert replies.missing.description == "a bearer token is required"


def test_with_dpop_required_only_the_dpop_challenge_is_bare() -> None:
    replies = BearerReplies("api", dpop_algs=("ES256",), bearer=False)
    assert [v for k, v in replies.missing.headers if k == b"www-authenticate"] == [
        b'DPoP realm="api", algs="ES256"'
    ]
    assert replies.missing.description == "a DPoP-bound token is required"


def test_without_dpop_algorithms_the_bearer_challenge_stays() -> None:
    assert BearerReplies("api", bearer=False).bearer is True


def test_a_dpop_error_reply() -> None:
    replies = BearerReplies("api", resource_metadata="https://api.test/.well-known/x")
    reply = replies.dpop_error(
        "use_dpop_nonce", "send the nonce", algs=("ES256",), bearer=True, nonce="n\r\n1"
    )
    assert reply.status == 401
    assert [v for k, v in reply.headers if k == b"www-authenticate"] == [
        b'Bearer realm="api", resource_metadata="https://api.test/.well-known/x"',
        b'DPoP realm="api", algs="ES256", error="use_dpop_nonce", '
        b'error_description="send the nonce", resource_metadata="https://api.test/.well-known/x"',
    ]
    assert reply.header(b"dpop-nonce") == b"n1"
    assert json.loads(reply.body) == {
        "error": "use_dpop_nonce",
        "error_description": "send the nonce",
    }
    again = replies.dpop_error(
        "use_dpop_nonce", "send the nonce", algs=("ES256",), bearer=True, nonce="n\r\n1"
    )
    assert again is reply


def test_dpop_error_replies_are_remembered_boundedly(replies: BearerReplies) -> None:
    first = replies.dpop_error("invalid_dpop_proof", "x 0", algs=("ES256",), bearer=False)
    for n in range(1, BearerReplies._CACHE_LIMIT + 1):
        replies.dpop_error("invalid_dpop_proof", f"x {n}", algs=("ES256",), bearer=False)
    assert replies.dpop_error("invalid_dpop_proof", "x 0", algs=("ES256",), bearer=False) == first
    assert first.header(b"www-authenticate") == (
        b'DPoP realm="orders", algs="ES256", error="invalid_dpop_proof", error_description="x 0"'
    )
