"""The reply table of BearerAuthMiddleware: 200 for a valid token, 401 without
credentials, 400 for a malformed request, 401 invalid_token, 503 when keys are unavailable."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from resource_guard import (
    AccessToken,
    KeysUnavailableError,
    TokenVerifier,
)
from resource_guard.middleware import BearerAuthMiddleware, TokenUser
from resource_guard.testing import FakeIssuer
from tests.asgi_client import call
from tests.helpers import ORDERS_AUDIENCE as AUDIENCE
from tests.helpers import bearer

from ._harness import OTHER_KEY, assert_refusal, bare, forged, protect

# -- 200: a valid token --------------------------------------------------------------------


async def test_valid_token_reaches_the_app(app: Starlette, fake: FakeIssuer) -> None:
    token = fake.mint("alice", scopes=("orders:write", "orders:read"))
    result = await call(app, headers=bearer(token))
    assert result.status == 200
    assert result.json() == {
        "path": "/orders",
        "authenticated": True,
        "name": "alice",
        "scopes": ["orders:read", "orders:write"],
        "subject": "alice",
    }


async def test_scope_holds_auth_credentials_user_and_token(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    seen: dict[str, Any] = {}

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(scope)
        await Response("ok")(scope, receive, send)

    app = BearerAuthMiddleware(inner, verifier=verifier)
    await call(app, headers=bearer(fake.mint("alice", scopes=("b", "a"))))
    assert seen["auth"].scopes == ["a", "b"]
    user = seen["user"]
    assert isinstance(user, TokenUser)
    assert isinstance(user.token, AccessToken)
    assert user.token.subject == "alice"
    assert user.scopes == frozenset({"a", "b"})
    assert user.identity == "alice"
    assert "alice" in repr(user)


async def test_client_credentials_token_is_named_by_client_id(
    app: Starlette, fake: FakeIssuer
) -> None:
    result = await call(app, headers=bearer(fake.mint(None, client_id="billing-service")))
    assert result.status == 200
    assert result.json()["name"] == "billing-service"


async def test_starlette_requires_works_unchanged(app: Starlette, fake: FakeIssuer) -> None:
    allowed = await call(app, path="/requires", headers=bearer(fake.mint(scopes=("orders:read",))))
    refused = await call(app, path="/requires", headers=bearer(fake.mint(scopes=("other",))))
    assert allowed.status == 200
    assert refused.status == 403


# -- 401: no credentials -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"authorization", b'Digest username="u", realm="r"')],
    ],
    ids=["no-header", "basic", "digest"],
)
async def test_no_credentials_is_bare_401(
    app: Starlette, headers: list[tuple[bytes, bytes]]
) -> None:
    result = await call(app, headers=headers)
    assert_refusal(result, 401, "unauthorized")
    assert result.header_lines(b"www-authenticate") == bare()


async def test_token_only_in_query_string_is_not_accepted(app: Starlette, fake: FakeIssuer) -> None:
    token = fake.mint(scopes=("orders:read",))
    result = await call(app, query=b"access_token=" + token.encode())
    assert_refusal(result, 401, "unauthorized")
    assert result.header_lines(b"www-authenticate") == bare()


async def test_realm_is_configurable(verifier: TokenVerifier) -> None:
    result = await call(protect(verifier, realm="orders"))
    assert result.header_lines(b"www-authenticate") == bare("orders")


# -- 400: invalid_request ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")], b""),
        ([(b"authorization", b"Bearer a"), (b"Authorization", b"Bearer a")], b""),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Basic eDp5")], b""),
        ([(b"authorization", b"Bearer abc")], b"access_token=abc"),
        ([(b"authorization", b"Bearer abc")], b"page=2&access_token=xyz"),
        ([(b"authorization", b"Bearer")], b""),
        ([(b"authorization", b"Bearer a b")], b""),
        ([(b"authorization", b"")], b""),
    ],
    ids=[
        "two-headers",
        "two-headers-mixed-case",
        "bearer-and-basic",
        "header-and-query",
        "header-and-query-later",
        "no-token",
        "two-words",
        "empty-header",
    ],
)
async def test_malformed_requests_are_400(
    app: Starlette, headers: list[tuple[bytes, bytes]], query: bytes
) -> None:
    result = await call(app, headers=headers, query=query)
    assert_refusal(result, 400, "invalid_request")
    challenge = result.header(b"www-authenticate")
    assert challenge is not None
    assert challenge.startswith(b'Bearer realm="api", error="invalid_request"')


async def test_malformed_request_is_refused_even_in_anonymous_mode(
    verifier: TokenVerifier,
) -> None:
    app = protect(verifier, allow_anonymous=True)
    headers = [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]
    assert_refusal(await call(app, headers=headers), 400, "invalid_request")


# -- 401: invalid_token --------------------------------------------------------------------

INVALID_TOKENS = {
    "forged-signature": forged,
    "unknown-kid": lambda fake: fake.mint(key=OTHER_KEY),
    "expired": lambda fake: fake.mint_expired(),
    "not-yet-valid": lambda fake: fake.mint_not_yet_valid(),
    "wrong-audience": lambda fake: fake.mint(audience="api://elsewhere"),
    "wrong-issuer": lambda fake: fake.mint(claims={"iss": "https://evil.example"}),
    "alg-none": lambda fake: fake.mint(algorithm="none"),
    "hmac": lambda fake: fake.mint(algorithm="HS256", key="secret" * 6),
    "dpop-typ": lambda fake: fake.mint(typ="dpop+jwt"),
    "no-exp": lambda fake: fake.mint(omit=("exp",)),
    "not-a-jwt": lambda fake: "abc",
    "two-segments": lambda fake: "abc.def",
}


@pytest.mark.parametrize("make", INVALID_TOKENS.values(), ids=INVALID_TOKENS.keys())
async def test_invalid_tokens_are_401_invalid_token(
    app: Starlette, fake: FakeIssuer, make: Any
) -> None:
    token = make(fake)
    result = await call(app, headers=bearer(token))
    assert_refusal(result, 401, "invalid_token")
    challenge = result.header(b"www-authenticate")
    assert challenge is not None
    assert challenge.startswith(b'Bearer realm="api", error="invalid_token", error_description="')
    assert token.encode() not in result.body
    assert token.encode() not in challenge
    assert b"Traceback" not in result.body


async def test_expired_token_says_so(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, headers=bearer(fake.mint_expired()))
    assert result.json()["error_description"] == "the token expired"


async def test_unknown_kid_reads_like_a_bad_signature(app: Starlette, fake: FakeIssuer) -> None:
    """No key-enumeration oracle: the two failures are indistinguishable to the client."""
    unknown = await call(app, headers=bearer(fake.mint(key=OTHER_KEY)))
    bad_signature = await call(app, headers=bearer(forged(fake)))
    assert unknown.status == bad_signature.status == 401
    assert unknown.body == bad_signature.body
    assert unknown.headers == bad_signature.headers


async def test_invalid_token_is_refused_in_anonymous_mode(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = protect(verifier, allow_anonymous=True)
    assert_refusal(await call(app, headers=bearer(forged(fake))), 401, "invalid_token")


def hand_made(header: dict[str, str], payload: dict[str, Any]) -> str:
    """A compact JWS with any header at all (its signature is junk)."""

    def segment(value: Any) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{segment(header)}.{segment(payload)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": 'x", error="none'},
        {"alg": "x\\"},
        {"alg": "x\r\nSet-Cookie: a=b"},
        {"alg": "\u202e\u00e9\x00"},
        {"alg": "ES256", "kid": 'k"\r\nX: y'},
        {"alg": "ES256", "typ": 'x"\r\nX: y'},
    ],
    ids=["quote-breakout", "backslash", "crlf", "unicode-controls", "kid-crlf", "typ-crlf"],
)
async def test_hostile_token_header_cannot_break_the_challenge(
    app: Starlette, fake: FakeIssuer, header: dict[str, str]
) -> None:
    token = hand_made(header, {"sub": "x", "iss": fake.issuer, "aud": AUDIENCE})
    result = await call(app, headers=bearer(token))
    assert_refusal(result, 401, "invalid_token")


# -- 503: keys unavailable and unexpected failures -----------------------------------------


async def test_issuer_down_without_cached_keys_is_503(app: Starlette, fake: FakeIssuer) -> None:
    fake.fault("status", endpoint="jwks", status=503)
    result = await call(app, headers=bearer(fake.mint(scopes=("orders:read",))))
    assert_refusal(result, 503, "temporarily_unavailable")
    retry_after = result.header(b"retry-after")
    assert retry_after is not None
    assert int(retry_after) >= 1


class StubVerifier:
    """Raises what it is told to: the clearest way to force a verifier failure."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def verify(self, token: str) -> AccessToken:
        raise self.error

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_retry_after_comes_from_the_error() -> None:
    app = protect(StubVerifier(KeysUnavailableError("jwks down", retry_after=12.2)))
    result = await call(app, headers=bearer("abc.def.ghi"))
    assert_refusal(result, 503, "temporarily_unavailable")
    assert result.header(b"retry-after") == b"13"


async def test_unexpected_verifier_failure_is_503_and_logged_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = protect(StubVerifier(ZeroDivisionError("internal detail")))
    with caplog.at_level(logging.ERROR, logger="resource_guard.middleware"):
        result = await call(app, headers=bearer("secret.token.value"))
    assert_refusal(result, 503, "temporarily_unavailable")
    assert result.header(b"retry-after") is None
    assert b"internal detail" not in result.body
    assert "ZeroDivisionError" in caplog.text
    assert "secret.token.value" not in caplog.text


async def test_cancellation_is_not_swallowed() -> None:
    app = protect(StubVerifier(asyncio.CancelledError()))
    with pytest.raises(asyncio.CancelledError):
        await call(app, headers=bearer("abc"))
