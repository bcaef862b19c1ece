"""Scopes the middleware does not guard pass straight through."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from resource_guard import (
    TokenVerifier,
)
from resource_guard.middleware import BearerAuthMiddleware

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
