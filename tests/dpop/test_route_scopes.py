"""A route's 403 ``insufficient_scope`` answers a DPoP request on the ``DPoP`` challenge
(RFC 9449 §7.1), a bearer request on the ``Bearer`` one, with Starlette and FastAPI."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import TokenVerifier
from resource_guard._bearer_reply import BearerReplies
from resource_guard.dpop import DPoPKey, DPoPMode, DPoPPolicy
from resource_guard.fastapi import require_scopes as fastapi_scopes
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.starlette import require_scopes as starlette_scopes
from resource_guard.testing import FakeIssuer
from tests.asgi_client import call
from tests.helpers import ORDERS_AUDIENCE, bearer

URL = "http://api.test/orders"
WANTED = b'error="insufficient_scope", error_description="the token lacks a required scope"'


@starlette_scopes("orders:write")
async def write_orders(request: Request) -> JSONResponse:
    return JSONResponse({"written": True})


def starlette_app(verifier: TokenVerifier) -> Any:
    app = Starlette(routes=[Route("/orders", write_orders)])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    return app


def fastapi_app(verifier: TokenVerifier) -> Any:
    app = FastAPI()

    @app.get("/orders", dependencies=[fastapi_scopes("orders:write")])
    async def orders() -> dict[str, bool]:
        return {"written": True}

    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    return app


APPS = {"starlette": starlette_app, "fastapi": fastapi_app}


def verifier(fake: FakeIssuer, policy: DPoPPolicy) -> TokenVerifier:
    return TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client(), dpop=policy)


@pytest.mark.parametrize("kind", sorted(APPS))
@pytest.mark.parametrize("mode", ["allowed", "required"])
async def test_a_dpop_request_lacking_a_scope_gets_the_error_on_the_dpop_challenge(
    fake: FakeIssuer, kind: str, mode: DPoPMode
) -> None:
    policy = DPoPPolicy(mode, algorithms=["ES256", "EdDSA"])
    app = APPS[kind](verifier(fake, policy))
    key = DPoPKey.generate()
    headers = fake.dpop_headers(key, "GET", URL, scopes=["orders:read"])
    result = await call(app, headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()])
    assert result.status == 403
    assert result.json()["error"] == "insufficient_scope"
    dpop = b'DPoP realm="api", algs="ES256 EdDSA", ' + WANTED + b', scope="orders:write"'
    lines = b", ".join(result.header_lines(b"www-authenticate"))
    if mode == "allowed":  # the bare Bearer challenge too, as on every DPoP refusal
        assert lines == b'Bearer realm="api", ' + dpop
    else:
        assert lines == dpop


@pytest.mark.parametrize("kind", sorted(APPS))
async def test_a_bearer_request_lacking_a_scope_keeps_the_bearer_challenge(
    fake: FakeIssuer, kind: str
) -> None:
    app = APPS[kind](verifier(fake, DPoPPolicy()))
    for _ in range(2):  # verified, then from the cache: the same reply
        result = await call(app, headers=bearer(fake.mint(scopes=["orders:read"])))
        assert result.status == 403
        assert result.header_lines(b"www-authenticate") == [
            b'Bearer realm="api", ' + WANTED + b', scope="orders:write"'
        ]


async def test_a_dpop_request_with_the_scope_reaches_the_route(fake: FakeIssuer) -> None:
    app = starlette_app(verifier(fake, DPoPPolicy()))
    key = DPoPKey.generate()
    headers = fake.dpop_headers(key, "GET", URL, scopes=["orders:write"])
    result = await call(app, headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()])
    assert result.status == 200
    assert result.json() == {"written": True}


def test_the_dpop_views_of_the_replies_are_remembered_and_bounded() -> None:
    replies = BearerReplies("api", dpop_algs=["ES256"])
    first = replies.for_dpop(frozenset({"ES256"}), True)
    assert replies.for_dpop(frozenset({"ES256"}), True) is first
    assert replies.for_dpop(frozenset({"ES256"}), False) is not first
    assert first.missing == replies.missing  # only the route refusals differ
    names = sorted(DPoPPolicy().algorithms)
    for count in range(1, 20):  # more alg sets than the table keeps: it starts over
        replies.for_dpop(frozenset(names[:count] if count <= len(names) else {str(count)}), True)
    assert replies.for_dpop(frozenset({"ES256"}), True) is not first
    refusal = replies.for_dpop(frozenset({"PS256", "ES256"}), False).insufficient_scope(
        ("a", "b"), any_of=True
    )
    assert refusal.headers[-1] == (
        b"www-authenticate",
        b'DPoP realm="api", algs="ES256 PS256", error="insufficient_scope", '
        b'error_description="the token grants none of the accepted scopes", scope="a b"',
    )
