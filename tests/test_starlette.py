"""resource_guard.starlette.require_scopes on functions, HTTPEndpoint methods and WebSockets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from resource_guard import TokenVerifier
from resource_guard.middleware import BearerAuthMiddleware, get_access_token
from resource_guard.starlette import require_scopes
from resource_guard.testing import FakeIssuer
from tests.helpers import bearer

from .asgi_client import Result, call, scope, websocket


@require_scopes("orders:read")
async def list_orders(request: Request) -> JSONResponse:
    token = get_access_token(request)
    assert token is not None
    return JSONResponse({"orders": [], "caller": token.subject})


@require_scopes("orders:read", "orders:write")
async def edit_orders(request: Request) -> PlainTextResponse:
    return PlainTextResponse("edited")


@require_scopes("orders:admin", "orders:write", any_of=True)
async def either(request: Request) -> PlainTextResponse:
    return PlainTextResponse("either")


@require_scopes("orders:read")
def sync_orders(request: Request) -> PlainTextResponse:
    return PlainTextResponse("sync")


@require_scopes()
async def any_token(request: Request) -> PlainTextResponse:
    return PlainTextResponse("any")


class OrderEndpoint(HTTPEndpoint):
    @require_scopes("orders:read")
    async def get(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("endpoint-get")

    @require_scopes("orders:write")
    def post(self, request: Request) -> PlainTextResponse:
        return PlainTextResponse("endpoint-post")


@require_scopes("orders:read")
async def order_feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"feed": "open"})
    await websocket.close()


ROUTES = [
    Route("/orders", list_orders),
    Route("/orders/edit", edit_orders, methods=["GET"]),
    Route("/either", either),
    Route("/sync", sync_orders),
    Route("/any", any_token),
    Route("/endpoint", OrderEndpoint),
    Route("/health", list_orders),
    WebSocketRoute("/feed", order_feed),
]


def build(verifier: TokenVerifier, **options: Any) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.add_middleware(
        BearerAuthMiddleware, verifier=verifier, public_paths=("/health",), **options
    )
    return app


@pytest.fixture
def app(verifier: TokenVerifier) -> Starlette:
    return build(verifier, realm="orders")


def dana(fake: FakeIssuer, *scopes: str) -> str:
    """A token of the user dana with ``scopes``."""
    return fake.mint("dana", scopes=scopes)


def assert_insufficient_scope(result: Result, scope: str, description: str) -> None:
    assert result.status == 403
    assert (
        result.header(b"www-authenticate")
        == (
            f'Bearer realm="orders", error="insufficient_scope", '
            f'error_description="{description}", scope="{scope}"'
        ).encode()
    )
    assert result.json() == {"error": "insufficient_scope", "error_description": description}


LACKS = "the token lacks a required scope"


@pytest.mark.parametrize(
    ("path", "scopes", "body"),
    [
        ("/orders/edit", ("orders:read", "orders:write"), b"edited"),
        ("/either", ("orders:write",), b"either"),
        ("/either", ("orders:admin",), b"either"),
        ("/sync", ("orders:read",), b"sync"),
        ("/any", (), b"any"),
        ("/endpoint", ("orders:read",), b"endpoint-get"),
    ],
    ids=["all-of", "any-of-first", "any-of-second", "sync-function", "no-scopes", "endpoint"],
)
async def test_granted_scopes_reach_the_endpoint(
    app: Starlette, fake: FakeIssuer, path: str, scopes: tuple[str, ...], body: bytes
) -> None:
    result = await call(app, path=path, headers=bearer(dana(fake, *scopes)))
    assert result.status == 200
    assert result.body == body


async def test_endpoint_sees_the_token(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path="/orders", headers=bearer(dana(fake, "orders:read")))
    assert result.json() == {"orders": [], "caller": "dana"}


async def test_missing_scope_is_403_listing_every_required_scope(
    app: Starlette, fake: FakeIssuer
) -> None:
    result = await call(app, path="/orders/edit", headers=bearer(dana(fake, "orders:read")))
    assert_insufficient_scope(result, "orders:read orders:write", LACKS)


async def test_any_of_refusal_lists_the_alternatives(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path="/either", headers=bearer(dana(fake, "orders:read")))
    assert_insufficient_scope(
        result, "orders:admin orders:write", "the token grants none of the accepted scopes"
    )


async def test_sync_function_refusal(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path="/sync", headers=bearer(dana(fake)))
    assert_insufficient_scope(result, "orders:read", LACKS)


async def test_endpoint_method_refusal(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(
        app, path="/endpoint", method="POST", headers=bearer(dana(fake, "orders:read"))
    )
    assert_insufficient_scope(result, "orders:write", LACKS)


async def test_sync_endpoint_method_allowed(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(
        app, path="/endpoint", method="POST", headers=bearer(dana(fake, "orders:write"))
    )
    assert result.body == b"endpoint-post"


async def test_websocket_with_scope_is_accepted(app: Starlette, fake: FakeIssuer) -> None:
    session = await websocket(app, path="/feed", headers=bearer(dana(fake, "orders:read")))
    assert session.texts() == [{"feed": "open"}]


async def test_websocket_without_scope_gets_a_403_denial(app: Starlette, fake: FakeIssuer) -> None:
    session = await websocket(app, path="/feed", headers=bearer(dana(fake)))
    assert not session.accepted
    denial = session.denial
    assert denial is not None
    assert_insufficient_scope(denial, "orders:read", LACKS)


async def test_websocket_without_scope_is_closed_1008_without_denial_extension(
    app: Starlette, fake: FakeIssuer
) -> None:
    session = await websocket(app, path="/feed", headers=bearer(dana(fake)), denial_extension=False)
    assert session.types == ["websocket.close"]
    assert session.close_code == 1008


async def test_anonymous_request_gets_401_not_403(verifier: TokenVerifier) -> None:
    result = await call(build(verifier, allow_anonymous=True), path="/orders")
    assert result.status == 401
    assert result.header_lines(b"www-authenticate")[0] == b'Bearer realm="api"'


async def test_scoped_route_on_a_public_path_still_needs_a_token(app: Starlette) -> None:
    result = await call(app, path="/health")
    assert result.status == 401
    assert result.header_lines(b"www-authenticate")[0] == b'Bearer realm="orders"'


async def test_missing_middleware_fails_loudly(fake: FakeIssuer) -> None:
    app = Starlette(routes=ROUTES)
    with pytest.raises(RuntimeError, match=r"add app\.add_middleware\(BearerAuthMiddleware"):
        await call(app, path="/orders", headers=bearer(dana(fake, "orders:read")))


async def test_missing_middleware_fails_loudly_on_websockets(fake: FakeIssuer) -> None:
    app = Starlette(routes=ROUTES)
    with pytest.raises(RuntimeError, match="BearerAuthMiddleware"):
        await websocket(app, path="/feed", headers=bearer(dana(fake, "orders:read")))


async def test_connection_may_be_passed_by_keyword(fake: FakeIssuer) -> None:
    request = Request({**scope("http"), "resource_guard.replies": None})
    with pytest.raises(RuntimeError, match="BearerAuthMiddleware"):
        await list_orders(request=request)


async def test_endpoint_without_a_connection_fails_loudly() -> None:
    @require_scopes("a")
    async def helper(value: int) -> int:
        return value  # pragma: no cover

    with pytest.raises(RuntimeError, match="receive a Request or a WebSocket"):
        await helper(1)


def test_decorated_function_keeps_its_name() -> None:
    assert list_orders.__name__ == "list_orders"


@pytest.mark.parametrize(
    ("scopes", "options", "error", "match"),
    [
        (("orders:read orders:write",), {}, ValueError, "separate arguments"),
        (("",), {}, ValueError, "invalid scope name"),
        ((1,), {}, TypeError, "scopes must be strings"),
        (("a",), {"any_of": "yes"}, TypeError, "any_of must be a bool"),
    ],
    ids=["space-separated", "empty", "not-a-string", "any-of-type"],
)
def test_bad_arguments_are_refused_at_decoration(
    scopes: tuple[Any, ...], options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        require_scopes(*scopes, **options)


def test_decorating_a_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="decorates a function"):
        require_scopes("a")("not a function")  # type: ignore[type-var]


def test_refusal_response_is_a_starlette_response() -> None:
    from resource_guard._bearer_reply import BearerReplies
    from resource_guard.starlette import _response

    response = _response(BearerReplies("api").insufficient_scope(("a",)))
    assert isinstance(response, Response)
    assert response.status_code == 403
    assert re.fullmatch(r"\d+", response.headers["content-length"])
