"""The app every middleware test protects, and the shape of a refusal."""

from __future__ import annotations

import re
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from resource_guard.dpop import DPoPPolicy
from resource_guard.middleware import BearerAuthMiddleware, get_access_token
from resource_guard.testing import FakeIssuer, generate_key
from tests.asgi_client import Result

CHALLENGE = re.compile(
    r'(?:Bearer|DPoP) realm="(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
    r'(?:, algs="[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")?'
    r'(?:, (?:error|error_description|scope)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
    r'(?:, resource_metadata="[\x21\x23-\x5b\x5d-\x7e]+")?'
)
DPOP_ALGS = " ".join(sorted(DPoPPolicy().algorithms))
"""What a bare DPoP challenge names by default: every asymmetric algorithm."""


def bare(realm: str = "api", named: bytes = b"") -> list[bytes]:
    """The challenges of a request without credentials while DPoP is allowed: ``Bearer``
    and ``DPoP`` (``named``: the ``resource_metadata`` parameter both carry)."""
    suffix = b", " + named if named else b""
    return [
        f'Bearer realm="{realm}"'.encode() + suffix,
        f'DPoP realm="{realm}", algs="{DPOP_ALGS}"'.encode() + suffix,
    ]


REPLY_HEADERS = {
    b"content-type",
    b"content-length",
    b"cache-control",
    b"www-authenticate",
    b"retry-after",
    b"dpop-nonce",
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


def assert_refusal(result: Result, status: int, error: str) -> None:
    """A refusal as RFC 6750 and DESIGN.md describe it, with nothing else attached."""
    assert result.status == status
    assert {name for name, _ in result.headers} <= REPLY_HEADERS
    assert result.header(b"content-type") == b"application/json"
    assert result.header(b"cache-control") == b"no-store"
    assert set(result.json()) == {"error", "error_description"}
    assert result.json()["error"] == error
    challenges = result.header_lines(b"www-authenticate")
    if status == 503:
        assert challenges == []
    else:
        assert 1 <= len(challenges) <= 2
        for challenge in challenges:
            assert CHALLENGE.fullmatch(challenge.decode("ascii")), challenge


OTHER_KEY = generate_key("ES256")


def forged(fake: FakeIssuer) -> str:
    """Signed by a stranger under the issuer's own kid."""
    return fake.mint(key=OTHER_KEY, kid=fake.current_key.kid)
