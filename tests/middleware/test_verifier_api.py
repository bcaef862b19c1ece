"""What the middleware asks of a verifier: cached() then verify(), and an overridden,
patched or duck-typed verify() is never bypassed."""

from __future__ import annotations

import ast
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any
from unittest import mock

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import (
    AccessToken,
    InvalidTokenError,
    TokenVerifier,
    middleware,
)
from resource_guard._token_cache import token_digest
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeClock, FakeIssuer
from tests.asgi_client import call
from tests.helpers import ORDERS_AUDIENCE as AUDIENCE
from tests.helpers import bearer

from ._harness import assert_refusal, forged, protect

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
