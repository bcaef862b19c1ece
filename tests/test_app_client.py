"""AppClient: a synchronous in-process client that runs the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resource_guard.testing import AppClient


def lifespan_app(events: list[str], *, fail: str | None = None) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        events.append("startup")
        if fail == "startup":
            raise RuntimeError("database unreachable")
        yield {"greeting": "hello"}
        events.append("shutdown")
        if fail == "shutdown":
            raise RuntimeError("could not flush")

    async def greet(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "greeting": request.state.greeting,
                "method": request.method,
                "x-test": request.headers.get("x-test"),
                "url": str(request.url),
            }
        )

    async def boom(request: Request) -> Response:
        raise LookupError("a bug in the app")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(5)
        return Response()  # pragma: no cover - the client gives up first

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/", greet, methods=methods),
            Route("/boom", boom),
            Route("/slow", slow),
        ],
        lifespan=lifespan,
    )


def test_lifespan_runs_around_the_requests_and_its_state_reaches_them() -> None:
    events: list[str] = []
    with AppClient(lifespan_app(events), headers={"x-test": "yes"}) as client:
        assert events == ["startup"]
        body = client.get("/").json()
    assert body == {
        "greeting": "hello",
        "method": "GET",
        "x-test": "yes",
        "url": "http://testserver/",
    }
    assert events == ["startup", "shutdown"]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_every_method_helper_sends_its_method(method: str) -> None:
    with AppClient(lifespan_app([])) as client:
        response = getattr(client, method)("/")
    assert response.json()["method"] == method.upper()


def test_head_has_no_body() -> None:
    with AppClient(lifespan_app([])) as client:
        response = client.head("/")
    assert (response.status_code, response.content) == (200, b"")


def test_a_failed_startup_raises_and_closes_the_client() -> None:
    client = AppClient(lifespan_app([], fail="startup"))
    with pytest.raises(RuntimeError) as failure:
        client.start()
    assert str(failure.value) == (
        "the app's lifespan start-up failed: RuntimeError: database unreachable"
    )
    assert str(failure.value.__cause__) == "database unreachable"
    assert repr(client) == "AppClient(http://testserver, closed)"
    with pytest.raises(RuntimeError, match="closed"):
        client.get("/")


def test_a_failed_shutdown_raises_from_close() -> None:
    client = AppClient(lifespan_app([], fail="shutdown")).start()
    with pytest.raises(
        RuntimeError, match=r"^the app's lifespan shutdown failed: RuntimeError: could not flush$"
    ):
        client.close()
    client.close()  # idempotent


async def no_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']}")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_an_app_without_lifespan_support_is_called_all_the_same() -> None:
    with AppClient(no_lifespan_app) as client:
        assert client.get("/").status_code == 204


async def returning_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return  # ignores lifespan without saying anything
    await no_lifespan_app(scope, receive, send)


def test_an_app_that_ignores_lifespan_is_called_all_the_same() -> None:
    with AppClient(returning_lifespan_app) as client:
        assert client.get("/").status_code == 204


def test_the_first_request_starts_the_client() -> None:
    events: list[str] = []
    client = AppClient(lifespan_app(events))
    assert repr(client) == "AppClient(http://testserver, not started)"
    try:
        assert client.get("/").status_code == 200
        assert events == ["startup"]
        assert repr(client) == "AppClient(http://testserver, running)"
        assert client.start() is client  # idempotent
    finally:
        client.close()
    assert events == ["startup", "shutdown"]


def test_closing_an_unstarted_client_is_fine() -> None:
    client = AppClient(no_lifespan_app)
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.start()


def test_exceptions_of_the_app_propagate() -> None:
    with AppClient(lifespan_app([])) as client, pytest.raises(LookupError, match="a bug"):
        client.get("/boom")


def test_a_request_that_takes_too_long_times_out() -> None:
    with AppClient(lifespan_app([]), timeout=0.2) as client, pytest.raises(TimeoutError):
        client.get("/slow")


@pytest.mark.parametrize(
    ("app", "timeout", "error"),
    [
        ("not an app", 1.0, TypeError),
        (no_lifespan_app, "1", TypeError),
        (no_lifespan_app, True, TypeError),
        (no_lifespan_app, 0, ValueError),
        (no_lifespan_app, float("inf"), ValueError),
    ],
    ids=["app-not-callable", "timeout-str", "timeout-bool", "timeout-zero", "timeout-inf"],
)
def test_options_are_checked(app: Any, timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        AppClient(app, timeout=timeout)


async def failing_without_reason(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "lifespan.startup.failed"})


def test_a_failed_startup_without_a_message_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"start-up failed: no reason given$"):
        AppClient(failing_without_reason).start()


def test_tasks_the_app_leaves_running_are_cancelled_on_close() -> None:
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            app.task = asyncio.get_running_loop().create_task(forever())  # type: ignore[attr-defined]
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await no_lifespan_app(scope, receive, send)

    with AppClient(app) as client:
        client.get("/")
    assert cancelled == [True]
