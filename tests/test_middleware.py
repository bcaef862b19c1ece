"""BearerAuthMiddleware at the ASGI level: every row of the reply table, WebSockets,
lifespan, public paths, anonymous mode and hostile input."""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any
from unittest import mock

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from resource_guard import (
    AccessToken,
    InvalidTokenError,
    KeysUnavailableError,
    TokenVerifier,
    middleware,
)
from resource_guard._token_cache import token_digest
from resource_guard.middleware import BearerAuthMiddleware, TokenUser, get_access_token
from resource_guard.testing import FakeClock, FakeIssuer, generate_key

from .asgi_client import Result, call, lifespan, websocket
from .loopback import LoopbackServer

AUDIENCE = "api://orders"
CHALLENGE = re.compile(
    r'Bearer realm="(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
    r'(?:, (?:error|error_description|scope)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
)
REPLY_HEADERS = {
    b"content-type",
    b"content-length",
    b"cache-control",
    b"www-authenticate",
    b"retry-after",
}


# -- the app under test ----------------------------------------------------------------


def describe(request: Request | WebSocket) -> dict[str, Any]:
    token = get_access_token(request)
    return {
        "path": request.url.path,
        "authenticated": request.user.is_authenticated,
        "name": request.user.display_name,
        "scopes": request.auth.scopes,
        "subject": token.subject if token else None,
    }


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(describe(request))


@requires("orders:read")
async def starlette_requires(request: Request) -> JSONResponse:
    return JSONResponse(describe(request))


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(describe(websocket))
    await websocket.close()


@requires("orders:read")
async def ws_requires(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json(describe(websocket))
    await websocket.close()


ROUTES = [
    Route("/requires", starlette_requires),
    WebSocketRoute("/ws", ws_echo),
    WebSocketRoute("/ws-requires", ws_requires),
    Route("/{path:path}", echo),
]


def protect(verifier: Any, **options: Any) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, **options)
    return app


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> FakeIssuer:
    return FakeIssuer(audience=AUDIENCE, algorithm="ES256")


@pytest.fixture
def verifier(fake: FakeIssuer) -> Iterator[TokenVerifier]:
    yield TokenVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client())
    fake.clear_faults()


@pytest.fixture
def app(verifier: TokenVerifier) -> Starlette:
    return protect(verifier, public_paths=("/health", "/docs/*"))


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + token.encode())]


def assert_refusal(result: Result, status: int, error: str) -> None:
    """A refusal as RFC 6750 and DESIGN.md describe it, with nothing else attached."""
    assert result.status == status
    assert {name for name, _ in result.headers} <= REPLY_HEADERS
    assert result.header(b"content-type") == b"application/json"
    assert result.header(b"cache-control") == b"no-store"
    assert set(result.json()) == {"error", "error_description"}
    assert result.json()["error"] == error
    challenge = result.header(b"www-authenticate")
    if status == 503:
        assert challenge is None
    else:
        assert challenge is not None
        assert CHALLENGE.fullmatch(challenge.decode("ascii")), challenge


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
    assert result.header(b"www-authenticate") == b'Bearer realm="api"'


async def test_token_only_in_query_string_is_not_accepted(app: Starlette, fake: FakeIssuer) -> None:
    token = fake.mint(scopes=("orders:read",))
    result = await call(app, query=b"access_token=" + token.encode())
    assert_refusal(result, 401, "unauthorized")
    assert result.header(b"www-authenticate") == b'Bearer realm="api"'


async def test_realm_is_configurable(verifier: TokenVerifier) -> None:
    result = await call(protect(verifier, realm="orders"))
    assert result.header(b"www-authenticate") == b'Bearer realm="orders"'


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


# -- a token verified before meets every request rule again -------------------------------


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        (lambda value: [(b"authorization", value), (b"authorization", value)], b""),
        (lambda value: [(b"authorization", value), (b"authorization", b"Basic eDp5")], b""),
        (lambda value: [(b"authorization", value)], b"access_token=abc"),
        (lambda value: [(b"authorization", value)], b"access%5Ftoken=abc"),
        (lambda value: [(b"authorization", value)], b"page=2;access_token=abc"),
    ],
    ids=[
        "the-same-header-twice",
        "bearer-and-basic",
        "query-too",
        "query-encoded",
        "query-after-semicolon",
    ],
)
async def test_a_cached_token_is_still_refused_in_a_malformed_request(
    app: Starlette, fake: FakeIssuer, headers: Any, query: bytes
) -> None:
    value = b"Bearer " + fake.mint().encode()
    assert (await call(app, headers=[(b"authorization", value)])).status == 200
    assert_refusal(await call(app, headers=headers(value), query=query), 400, "invalid_request")


@pytest.mark.parametrize(
    "spelling",
    [b"bearer %s", b"Bearer   %s", b"Bearer %s  ", b"\tBearer %s"],
    ids=["lower-case", "many-spaces", "trailing-space", "leading-tab"],
)
async def test_a_cached_token_is_accepted_in_every_valid_spelling(
    app: Starlette, fake: FakeIssuer, spelling: bytes
) -> None:
    token = fake.mint("carol").encode()
    assert (await call(app, headers=bearer(token.decode()))).status == 200
    result = await call(app, headers=[(b"authorization", spelling % token)])
    assert result.status == 200
    assert result.json()["subject"] == "carol"


async def test_each_request_owns_its_scope_list(verifier: TokenVerifier, fake: FakeIssuer) -> None:
    """Repeated tokens share their sorted scopes, never a list an app could change."""

    async def meddling(request: Request) -> JSONResponse:
        scopes = list(request.auth.scopes)
        request.auth.scopes.append("orders:admin")
        return JSONResponse(scopes)

    app = Starlette(routes=[Route("/orders", meddling)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    headers = bearer(fake.mint(scopes=("orders:write", "orders:read")))
    for _ in range(3):
        assert (await call(app, path="/orders", headers=headers)).json() == [
            "orders:read",
            "orders:write",
        ]


async def test_a_verifier_subclass_overriding_verify_sees_every_request(
    fake: FakeIssuer,
) -> None:
    """The cache shortcut is TokenVerifier's own: an overridden verify() (say, a jti
    deny-list) is called for every request, cached token or not."""
    calls: list[str] = []

    class DenyListVerifier(TokenVerifier):
        async def verify(self, token: str) -> AccessToken:
            calls.append(token)
            verified = await super().verify(token)
            if verified.subject == "mallory":
                raise InvalidTokenError("the token was revoked")
            return verified

    async with fake.async_client() as client:
        app = protect(DenyListVerifier(fake.issuer, AUDIENCE, http_client=client))
        alice, mallory = fake.mint("alice"), fake.mint("mallory")
        for _ in range(2):
            assert (await call(app, headers=bearer(alice))).status == 200
            assert_refusal(await call(app, headers=bearer(mallory)), 401, "invalid_token")
    assert calls == [alice, mallory, alice, mallory]


async def test_a_repeated_token_costs_one_hash_and_no_verify_call(
    app: Starlette, verifier: TokenVerifier, fake: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token seen before is answered by ``cached()`` alone: one digest, no coroutine.
    A new token is looked up, then verified (hashed again inside verify())."""
    hashed: list[bytes] = []
    real_hash = token_digest

    def counting(data: bytes) -> Any:
        hashed.append(data)
        return real_hash(data)

    monkeypatch.setattr("resource_guard._verifier.token_digest", counting)
    token = fake.mint()
    assert (await call(app, headers=bearer(token))).status == 200
    assert hashed == [token.encode()] * 2
    hashed.clear()
    verify_calls = 0
    real_verify = TokenVerifier.verify

    async def counting_verify(self: TokenVerifier, raw: str) -> AccessToken:
        nonlocal verify_calls
        verify_calls += 1
        return await real_verify(self, raw)

    assert (await call(app, headers=bearer(token))).status == 200
    assert hashed == [token.encode()]
    # Patching the class is an override too: from now on every request awaits it.
    monkeypatch.setattr(TokenVerifier, "verify", counting_verify)
    assert (await call(app, headers=bearer(token))).status == 200
    assert verify_calls == 1


# -- a verify() set on the instance, patched or overridden is never bypassed -------------

REVOKED_JTI = "jti-revoked"


VerifyFunction = Callable[[str], Coroutine[Any, Any, AccessToken]]


def deny_list(verify: VerifyFunction, calls: list[str]) -> VerifyFunction:
    """An audit and jti deny-list wrapper around ``verify`` (records every token seen)."""

    async def checked(token: str) -> AccessToken:
        calls.append(token)
        verified = await verify(token)
        if verified.claims.get("jti") == REVOKED_JTI:
            raise InvalidTokenError("the token was revoked")
        return verified

    return checked


@pytest.mark.parametrize("installed", ["before-the-first-request", "after-the-first-request"])
async def test_a_verify_set_on_the_instance_sees_every_request(
    verifier: TokenVerifier, fake: FakeIssuer, installed: str
) -> None:
    """``verifier.verify = wrapper`` is honoured even for a token already in the cache."""
    app = protect(verifier)
    calls: list[str] = []
    wrapper = deny_list(verifier.verify, calls)
    allowed = fake.mint("alice")
    revoked = fake.mint("mallory", claims={"jti": REVOKED_JTI})
    if installed == "before-the-first-request":
        verifier.verify = wrapper  # type: ignore[method-assign, assignment]
    for token in (allowed, revoked):  # both verify, both are cached
        assert (await call(app, headers=bearer(token))).status in (200, 401)
    verifier.verify = wrapper  # type: ignore[method-assign, assignment]
    calls.clear()
    assert (await call(app, headers=bearer(allowed))).status == 200
    assert_refusal(await call(app, headers=bearer(revoked)), 401, "invalid_token")
    assert calls == [allowed, revoked]


async def test_a_verify_patched_with_mock_sees_every_request(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = protect(verifier)
    token = fake.mint("alice")
    assert (await call(app, headers=bearer(token))).status == 200  # now in the cache
    with mock.patch.object(
        verifier, "verify", side_effect=InvalidTokenError("the token was revoked")
    ) as patched:
        assert_refusal(await call(app, headers=bearer(token)), 401, "invalid_token")
    patched.assert_awaited_once_with(token)
    with mock.patch.object(verifier, "verify", wraps=verifier.verify) as spy:
        assert (await call(app, headers=bearer(token))).status == 200
    spy.assert_awaited_once_with(token)
    assert (await call(app, headers=bearer(token))).status == 200  # unpatched again


class DuckVerifier:
    """A verifier that is no TokenVerifier: verify() only, no cached()."""

    def __init__(self, inner: TokenVerifier) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def verify(self, token: str) -> AccessToken:
        self.calls.append(token)
        return await self.inner.verify(token)

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_verifier_without_cached_is_awaited_for_every_request(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    duck = DuckVerifier(verifier)
    app = protect(duck)
    token = fake.mint("alice")
    for _ in range(3):
        result = await call(app, headers=bearer(token))
        assert result.json()["subject"] == "alice"
    assert duck.calls == [token] * 3
    assert_refusal(await call(app, headers=bearer(forged(fake))), 401, "invalid_token")


class CachingDuckVerifier(DuckVerifier):
    """A verifier of its own with a cached(): the middleware asks it first."""

    def __init__(self, inner: TokenVerifier) -> None:
        super().__init__(inner)
        self.looked_up: list[str | bytes] = []

    def cached(self, token: str | bytes) -> AccessToken | None:
        self.looked_up.append(token)
        return self.inner.cached(token)


async def test_a_verifier_with_cached_is_asked_before_verify(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    duck = CachingDuckVerifier(verifier)
    app = protect(duck)
    token = fake.mint("alice")
    for _ in range(3):
        assert (await call(app, headers=bearer(token))).json()["subject"] == "alice"
    assert duck.calls == [token]  # verified once, then answered by cached()
    assert duck.looked_up == [token.encode()] * 3


class BrokenCacheVerifier(DuckVerifier):
    def cached(self, token: str | bytes) -> AccessToken | None:
        raise RuntimeError("cache bug")


async def test_a_failing_cached_falls_back_to_verify(
    verifier: TokenVerifier, fake: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    duck = BrokenCacheVerifier(verifier)
    token = fake.mint("alice")
    with caplog.at_level(logging.ERROR, logger="resource_guard.middleware"):
        result = await call(protect(duck), headers=bearer(token))
    assert result.json()["subject"] == "alice"
    assert duck.calls == [token]
    assert "RuntimeError" in caplog.text
    assert token not in caplog.text


async def test_a_mock_verifier_is_always_awaited() -> None:
    """An AsyncMock has every attribute, "cached" too: a coroutine is never a token."""
    verifier = mock.AsyncMock()
    verifier.verify.side_effect = InvalidTokenError("refused by the mock")
    app = protect(verifier)
    for _ in range(2):
        assert_refusal(await call(app, headers=bearer("a.b.c")), 401, "invalid_token")
    assert verifier.verify.await_count == 2
    verifier.cached.assert_not_called()


def test_the_middleware_uses_only_public_names_of_other_objects() -> None:
    """No ``other._name``: what the middleware needs of a verifier is its public API."""
    tree = ast.parse(inspect.getsource(middleware))
    private = sorted(
        f"{ast.unparse(node.value)}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    )
    assert private == []


async def test_a_cached_token_expires_like_any_other(fake: FakeIssuer) -> None:
    clock = FakeClock()
    async with fake.async_client() as client:
        verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=client, clock=clock)
        app = protect(verifier)
        token = fake.mint(expires_in=60)
        assert (await call(app, headers=bearer(token))).status == 200
        clock.advance(60 + 30 + 1)
        result = await call(app, headers=bearer(token))
    assert_refusal(result, 401, "invalid_token")
    assert result.json()["error_description"] == "the token expired"


# -- 401: invalid_token --------------------------------------------------------------------

OTHER_KEY = generate_key("ES256")


def forged(fake: FakeIssuer) -> str:
    """Signed by a stranger under the issuer's own kid."""
    return fake.mint(key=OTHER_KEY, kid=fake.current_key.kid)


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


# -- public paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/health", "/docs", "/docs/", "/docs/oauth2-redirect", "/docs/a/b"]
)
async def test_public_paths_need_no_token(app: Starlette, path: str) -> None:
    result = await call(app, path=path)
    assert result.status == 200
    assert result.json()["authenticated"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/health/",
        "/healthz",
        "/Health",
        "/health/x",
        "/docsx",
        "/docs/../orders",
        "/docs/./x",
        "/docs//x",
        "/openapi.json",
        "/",
    ],
)
async def test_other_paths_stay_protected(app: Starlette, path: str) -> None:
    assert_refusal(await call(app, path=path), 401, "unauthorized")


WELL_KNOWN = ("/.well-known/*", "/static/*", "/health")
DOT_NAMES_ARE_PUBLIC = {
    "protected-resource-metadata": "/.well-known/oauth-protected-resource",
    "metadata-for-a-path": "/.well-known/oauth-protected-resource/orders",
    "openid-configuration": "/.well-known/openid-configuration",
    "the-base": "/.well-known",
    "the-base-with-slash": "/.well-known/",
    "trailing-slash": "/.well-known/x/",
    "hidden-file": "/static/.hidden",
    "dotted-name": "/static/app.min.js",
    "three-dots": "/static/...",
    "dot-dot-name": "/static/..x",
    "name-dot-dot": "/static/x..",
    "dot-inside-deeper": "/static/a/.b/c",
}
DOT_SEGMENTS_STAY_PROTECTED = {
    "dotdot-to-admin": "/.well-known/../admin",
    "dot-segment": "/.well-known/./x",
    "double-slash": "/.well-known//x",
    "trailing-dotdot": "/.well-known/x/..",
    "trailing-dot": "/.well-known/x/.",
    "base-dot": "/.well-known/.",
    "base-dotdot": "/.well-known/..",
    "deep-dotdot": "/.well-known/a/b/../../../admin",
    "trailing-double-slash": "/.well-known/x//",
    "leading-double-slash": "//.well-known/x",
    "dotdot-semicolon": "/.well-known/..;/admin",
    "dot-semicolon": "/.well-known/.;x/admin",
    "backslash-dotdot": "/.well-known/..\\admin",
    "backslash-dot-segment": "/.well-known/x\\.\\y",
    "glued-prefix": "/.well-knownx",
    "static-dotdot": "/static/../admin",
    "static-hidden-then-dotdot": "/static/.hidden/../../admin",
}


@pytest.mark.parametrize("path", DOT_NAMES_ARE_PUBLIC.values(), ids=DOT_NAMES_ARE_PUBLIC.keys())
async def test_dot_named_segments_are_ordinary_names(verifier: TokenVerifier, path: str) -> None:
    result = await call(protect(verifier, public_paths=WELL_KNOWN), path=path)
    assert result.status == 200
    assert result.json()["authenticated"] is False


@pytest.mark.parametrize(
    "path", DOT_SEGMENTS_STAY_PROTECTED.values(), ids=DOT_SEGMENTS_STAY_PROTECTED.keys()
)
async def test_dot_segments_and_empty_segments_stay_protected(
    verifier: TokenVerifier, path: str
) -> None:
    result = await call(protect(verifier, public_paths=WELL_KNOWN), path=path)
    assert_refusal(result, 401, "unauthorized")


RAW_TARGETS = {
    "protected-resource-metadata": ("/.well-known/oauth-protected-resource", 200),
    "percent-encoded-dot-name": ("/%2Ewell-known/oauth-protected-resource", 200),
    "dotdot-to-admin": ("/.well-known/../admin", 401),
    "percent-encoded-dotdot": ("/.well-known/%2e%2e/admin", 401),
    "percent-encoded-slash-dotdot": ("/.well-known/..%2Fadmin", 401),
    "dot-segment": ("/.well-known/./x", 401),
    "double-slash": ("/.well-known//x", 401),
    "trailing-dotdot": ("/.well-known/x/..", 401),
}


@pytest.fixture(scope="module")
def well_known_server(fake: FakeIssuer) -> Iterator[tuple[str, int]]:
    """The app under uvicorn on 127.0.0.1; no request here needs the verifier to start."""
    verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client())
    app = protect(verifier, public_paths=WELL_KNOWN, manage_verifier=False)
    with LoopbackServer(app, log_level="critical") as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


@pytest.mark.slow
@pytest.mark.parametrize(("target", "status"), RAW_TARGETS.values(), ids=RAW_TARGETS.keys())
async def test_public_dot_names_over_real_http(
    well_known_server: tuple[str, int], target: str, status: int
) -> None:
    """Raw request targets (a client library would resolve the dot segments itself)."""
    host, port = well_known_server
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    finally:
        writer.close()
    assert head.split(b" ")[1] == str(status).encode()


async def test_public_path_ignores_even_a_bad_token(app: Starlette) -> None:
    result = await call(app, path="/health", headers=bearer("not-a-jwt"))
    assert result.status == 200
    assert result.json()["subject"] is None


async def test_by_default_every_path_is_protected(verifier: TokenVerifier) -> None:
    app = protect(verifier)
    for path in ("/health", "/docs", "/openapi.json"):
        assert (await call(app, path=path)).status == 401


async def test_slash_star_makes_every_path_public(verifier: TokenVerifier) -> None:
    app = protect(verifier, public_paths=("/*",))
    assert (await call(app, path="/orders")).status == 200
    assert (await call(app, path="/")).status == 200


async def test_public_paths_match_below_the_root_path(app: Starlette) -> None:
    assert (await call(app, path="/api/health", root_path="/api")).status == 200
    assert (await call(app, path="/api/orders", root_path="/api")).status == 401
    assert (await call(app, path="/apihealth", root_path="/api")).status == 401
    assert (await call(app, path="/api", root_path="/api")).status == 401
    assert (await call(app, path="/health", root_path="/api")).status == 200  # not below it


@pytest.mark.parametrize(
    ("public_paths", "error", "match"),
    [
        ("/health", TypeError, "sequence of paths"),
        ([b"/health"], TypeError, "must be str"),
        (["health"], ValueError, "must start with '/'"),
        (["/a?b=1"], ValueError, "no query"),
        (["/a*"], ValueError, "final '/\\*'"),
        (["/*/a/*"], ValueError, "final '/\\*'"),
    ],
    ids=["bare-string", "bytes", "relative", "query", "star-suffix", "star-inside"],
)
def test_bad_public_paths_are_refused(
    verifier: TokenVerifier, public_paths: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        BearerAuthMiddleware(Starlette(), verifier=verifier, public_paths=public_paths)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"verifier": object()}, TypeError, "verifier must be a TokenVerifier"),
        ({"allow_anonymous": 1}, TypeError, "allow_anonymous must be a bool"),
        ({"manage_verifier": "no"}, TypeError, "manage_verifier must be a bool"),
        ({"realm": 1}, TypeError, "realm must be a str"),
        ({"realm": ""}, ValueError, "printable ASCII"),
        ({"realm": "caf\u00e9"}, ValueError, "printable ASCII"),
        ({"realm": "a\nb"}, ValueError, "printable ASCII"),
    ],
    ids=[
        "verifier",
        "anonymous",
        "manage",
        "realm-type",
        "realm-empty",
        "realm-unicode",
        "realm-newline",
    ],
)
def test_bad_options_are_refused(
    verifier: TokenVerifier, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        BearerAuthMiddleware(Starlette(), **{"verifier": verifier, **options})


def test_realm_is_exposed(verifier: TokenVerifier) -> None:
    assert BearerAuthMiddleware(Starlette(), verifier=verifier, realm="orders").realm == "orders"


# -- anonymous mode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Basic dXNlcjpwYXNz")]],
    ids=["no-header", "other-scheme"],
)
async def test_anonymous_mode_lets_credential_less_requests_through(
    verifier: TokenVerifier, headers: list[tuple[bytes, bytes]]
) -> None:
    result = await call(protect(verifier, allow_anonymous=True), headers=headers)
    assert result.status == 200
    assert result.json() == {
        "path": "/orders",
        "authenticated": False,
        "name": "",
        "scopes": [],
        "subject": None,
    }


async def test_anonymous_mode_still_authenticates_tokens(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = protect(verifier, allow_anonymous=True)
    result = await call(app, headers=bearer(fake.mint("bob")))
    assert result.json()["subject"] == "bob"


def test_get_access_token_without_middleware_fails_loudly() -> None:
    request = Request({"type": "http", "headers": []})
    with pytest.raises(RuntimeError, match=r"add app\.add_middleware"):
        get_access_token(request)


# -- other scopes pass through -----------------------------------------------------------------


async def test_unknown_scope_types_pass_through(verifier: TokenVerifier) -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    app = BearerAuthMiddleware(inner, verifier=verifier)

    async def nothing() -> Message:
        raise AssertionError  # pragma: no cover

    async def discard(message: Message) -> None:
        raise AssertionError  # pragma: no cover

    await app({"type": "other"}, nothing, discard)
    assert seen == ["other"]


# -- hostile input never raises or hangs ------------------------------------------------------

HEADER_BYTES = st.binary(max_size=80) | st.sampled_from(
    [b"Bearer ", b"bearer a.b.c", b"Bearer \r\n", b"Basic x", b"Bearer " + b"A" * 20000]
)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(HEADER_BYTES, max_size=3),
    query=st.binary(max_size=40) | st.just(b"access_token=x"),
)
def test_any_authorization_bytes_get_a_clean_reply(values: list[bytes], query: bytes) -> None:
    async def scenario() -> Result:
        fake = FakeIssuer(audience=AUDIENCE, algorithm="ES256")
        verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client())
        app = protect(verifier)
        headers = [(b"authorization", value) for value in values]
        return await call(app, headers=headers, query=query)

    result = asyncio.run(scenario())
    assert result.status in (400, 401)
    assert_refusal(result, result.status, result.json()["error"])


# -- WebSockets --------------------------------------------------------------------------------


async def test_websocket_with_valid_token_is_accepted(app: Starlette, fake: FakeIssuer) -> None:
    session = await websocket(app, headers=bearer(fake.mint("carol", scopes=("orders:read",))))
    assert session.accepted
    assert session.texts()[0]["name"] == "carol"


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ([], 401, "unauthorized"),
        ([(b"authorization", b"Bearer abc")], 401, "invalid_token"),
        (
            [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")],
            400,
            "invalid_request",
        ),
    ],
    ids=["no-token", "bad-token", "two-headers"],
)
async def test_websocket_refusal_uses_the_denial_response(
    app: Starlette, headers: list[tuple[bytes, bytes]], status: int, error: str
) -> None:
    session = await websocket(app, headers=headers)
    assert not session.accepted
    denial = session.denial
    assert denial is not None
    assert_refusal(denial, status, error)


async def test_websocket_refusal_closes_1008_without_the_extension(app: Starlette) -> None:
    session = await websocket(app, denial_extension=False)
    assert session.types == ["websocket.close"]
    assert session.close_code == 1008


async def test_websocket_refusal_after_an_early_disconnect_sends_nothing(
    verifier: TokenVerifier,
) -> None:
    app = protect(verifier)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.disconnect", "code": 1001}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert sent == []


async def test_websocket_starlette_requires_works(app: Starlette, fake: FakeIssuer) -> None:
    allowed = await websocket(
        app, path="/ws-requires", headers=bearer(fake.mint(scopes=("orders:read",)))
    )
    refused = await websocket(app, path="/ws-requires", headers=bearer(fake.mint(scopes=("x",))))
    assert allowed.texts()[0]["scopes"] == ["orders:read"]
    assert not refused.accepted
    assert refused.types == ["websocket.close"]


async def test_websocket_public_path_needs_no_token(verifier: TokenVerifier) -> None:
    session = await websocket(protect(verifier, public_paths=("/ws",)))
    assert session.accepted
    assert session.texts()[0]["authenticated"] is False


# -- lifespan ------------------------------------------------------------------------------------


class RecordingVerifier(TokenVerifier):
    """The real verifier, noting when the middleware starts and closes it."""

    events: list[str]

    async def start(self) -> None:
        self.events.append("verifier.start")
        await super().start()

    async def aclose(self) -> None:
        self.events.append("verifier.aclose")
        await super().aclose()


@pytest.fixture
def recording(fake: FakeIssuer) -> RecordingVerifier:
    verifier = RecordingVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client())
    verifier.events = []
    return verifier


def lifespan_app(verifier: RecordingVerifier, **options: Any) -> Starlette:
    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        verifier.events.append("app.startup")
        yield {"greeting": "hello"}
        verifier.events.append("app.shutdown")

    async def greeting(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    app = Starlette(routes=[Route("/greeting", greeting)], lifespan=app_lifespan)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, **options)
    return app


async def test_lifespan_starts_verifier_before_app_and_closes_it_after(
    recording: RecordingVerifier, fake: FakeIssuer
) -> None:
    app = lifespan_app(recording)
    before = fake.counts["jwks"]
    async with lifespan(app) as state:
        assert recording.events == ["verifier.start", "app.startup"]
        assert fake.counts["jwks"] == before + 1  # keys fetched eagerly at start-up
        result = await call(app, path="/greeting", headers=bearer(fake.mint()), state=state)
        assert result.json() == {"greeting": "hello"}  # the app's lifespan state still works
        assert fake.counts["jwks"] == before + 1  # and the request did not wait on the IdP
    assert recording.events == [
        "verifier.start",
        "app.startup",
        "app.shutdown",
        "verifier.aclose",
    ]


async def test_lifespan_management_can_be_turned_off(recording: RecordingVerifier) -> None:
    async with lifespan(lifespan_app(recording, manage_verifier=False)):
        pass
    assert recording.events == ["app.startup", "app.shutdown"]


async def test_failed_app_startup_closes_the_verifier(recording: RecordingVerifier) -> None:
    @asynccontextmanager
    async def failing(app: Starlette) -> AsyncIterator[None]:
        raise ValueError("database down")
        yield  # pragma: no cover

    app = Starlette(lifespan=failing)
    app.add_middleware(BearerAuthMiddleware, verifier=recording)
    with pytest.raises(RuntimeError, match="database down"):
        async with lifespan(app):
            pass  # pragma: no cover
    assert recording.events == ["verifier.start", "verifier.aclose"]


async def test_app_that_ends_lifespan_without_reporting_still_closes(
    recording: RecordingVerifier,
) -> None:
    async def terse(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown: return without shutdown.complete

    app = BearerAuthMiddleware(terse, verifier=recording)
    inbox: list[Message] = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    outbox: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        outbox.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert recording.events == ["verifier.start", "verifier.aclose"]
    assert outbox == [{"type": "lifespan.startup.complete"}]


# -- a token in the header and in a form body ------------------------------------------


async def echo_form(request: Request) -> JSONResponse:
    form = await request.form()
    return JSONResponse({"fields": sorted(form.keys()), "subject": request.user.display_name})


def form_app(verifier: TokenVerifier) -> Starlette:
    app = Starlette(routes=[Route("/orders", echo_form, methods=["POST"])])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    return app


async def post(app: Starlette, headers: dict[str, str], content: bytes) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.post("/orders", headers=headers, content=content)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    "body",
    [
        b"item=tea&access_token=abc",
        b"access%5Ftoken=abc",
        b"access_token=",
        b"item=tea;access_token=abc",
        b"%&" * 20_000 + b"%61ccess_token=abc",
    ],
    ids=["plain", "percent-encoded-name", "empty-value", "after-semicolon", "after-a-flood"],
)
async def test_header_token_plus_form_token_is_400(
    verifier: TokenVerifier, fake: FakeIssuer, body: bytes
) -> None:
    headers = {**FORM, "Authorization": f"Bearer {fake.mint()}"}
    response = await post(form_app(verifier), headers, body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "abc" not in response.text


async def test_a_cached_token_plus_form_token_is_still_400(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    headers = {**FORM, "Authorization": f"Bearer {fake.mint()}"}
    app = form_app(verifier)
    assert (await post(app, headers, b"item=tea")).status_code == 200
    response = await post(app, headers, b"item=tea&access_token=abc")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_client_leaving_during_the_form_scan_reaches_the_app_as_a_disconnect(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    """The scan stops at the disconnect; the app then receives it (replayed), as without us."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/orders",
        "raw_path": b"/orders",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"api.test"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"authorization", b"Bearer " + fake.mint("dave").encode()),
        ],
    }
    seen: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        seen.append(message)

    async def app_reading_once(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": message["type"].encode()})

    guarded = BearerAuthMiddleware(app_reading_once, verifier=verifier)
    await asyncio.wait_for(guarded(scope, receive, send), 5)
    assert seen[0]["status"] == 204
    assert seen[1]["body"] == b"http.disconnect"


async def test_a_form_without_a_token_reaches_the_route_intact(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    headers = {**FORM, "Authorization": f"Bearer {fake.mint('erin')}"}
    response = await post(form_app(verifier), headers, b"item=tea&quantity=2")
    assert response.status_code == 200
    assert response.json() == {"fields": ["item", "quantity"], "subject": "erin"}


async def test_a_token_only_in_the_form_counts_as_no_credentials(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    response = await post(form_app(verifier), FORM, f"access_token={fake.mint()}".encode())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


async def test_a_large_form_is_passed_through_unchecked(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    """Beyond the scan limit the body streams on untouched (and is never buffered whole)."""
    headers = {**FORM, "Authorization": f"Bearer {fake.mint('erin')}"}
    body = b"note=" + b"x" * (200 * 1024) + b"&item=tea"
    response = await post(form_app(verifier), headers, body)
    assert response.status_code == 200
    assert response.json()["fields"] == ["item", "note"]
