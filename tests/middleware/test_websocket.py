"""WebSocket handshakes: accepted with a token, refused with a denial response or 1008."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.types import Message

from resource_guard import (
    TokenVerifier,
)
from resource_guard.testing import FakeIssuer
from tests.asgi_client import scope, websocket
from tests.helpers import bearer

from ._harness import assert_refusal, protect

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

    await asyncio.wait_for(app(scope("websocket", path="/ws"), receive, send), timeout=5)
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
