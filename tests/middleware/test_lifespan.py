"""The lifespan protocol: the middleware starts the verifier before the app, closes it after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

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
from tests.asgi_client import call, lifespan
from tests.helpers import ORDERS_AUDIENCE as AUDIENCE
from tests.helpers import bearer

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
