"""A token in the header and one in a form body: refused, without buffering large bodies."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from resource_guard import (
    TokenVerifier,
)
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeIssuer
from tests.asgi_client import scope
from tests.helpers import bearer
from tests.middleware._harness import bare

# -- a token in the header and in a form body ------------------------------------------


async def echo_form(request: Request) -> JSONResponse:
    form = await request.form()
    return JSONResponse({"fields": sorted(form.keys()), "subject": request.user.display_name})


def form_app(verifier: TokenVerifier) -> Starlette:
    app = Starlette(routes=[Route("/orders", echo_form, methods=["POST"])])
    app.add_middleware(BearerAuthMiddleware, verifier=verifier)
    return app


async def post(app: Starlette, headers: list[tuple[bytes, bytes]], content: bytes) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        return await client.post("/orders", headers=headers, content=content)


FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


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
    headers = [*FORM, *bearer(fake.mint())]
    response = await post(form_app(verifier), headers, body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "abc" not in response.text


async def test_a_cached_token_plus_form_token_is_still_400(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    headers = [*FORM, *bearer(fake.mint())]
    app = form_app(verifier)
    assert (await post(app, headers, b"item=tea")).status_code == 200
    response = await post(app, headers, b"item=tea&access_token=abc")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_a_client_leaving_during_the_form_scan_reaches_the_app_as_a_disconnect(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    """The scan stops at the disconnect; the app then receives it (replayed), as without us."""
    request = scope(
        "http",
        method="POST",
        headers=[*FORM, *bearer(fake.mint("dave"))],
    )
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
    await asyncio.wait_for(guarded(request, receive, send), 5)
    assert seen[0]["status"] == 204
    assert seen[1]["body"] == b"http.disconnect"


async def test_a_form_without_a_token_reaches_the_route_intact(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    headers = [*FORM, *bearer(fake.mint("erin"))]
    response = await post(form_app(verifier), headers, b"item=tea&quantity=2")
    assert response.status_code == 200
    assert response.json() == {"fields": ["item", "quantity"], "subject": "erin"}


async def test_a_token_only_in_the_form_counts_as_no_credentials(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    response = await post(form_app(verifier), FORM, f"access_token={fake.mint()}".encode())
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == [c.decode() for c in bare()]


async def test_a_large_form_is_passed_through_unchecked(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    """Beyond the scan limit the body streams on untouched (and is never buffered whole)."""
    headers = [*FORM, *bearer(fake.mint("erin"))]
    body = b"note=" + b"x" * (200 * 1024) + b"&item=tea"
    response = await post(form_app(verifier), headers, body)
    assert response.status_code == 200
    assert response.json()["fields"] == ["item", "note"]
