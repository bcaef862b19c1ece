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
