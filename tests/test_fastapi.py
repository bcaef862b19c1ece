"""resource_guard.fastapi: scope dependencies, the current token, the OpenAPI scheme."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from fastapi.routing import APIRoute

from resource_guard import AccessToken, TokenVerifier
from resource_guard.fastapi import (
    SCHEME_NAME,
    CurrentToken,
    current_token,
    install_openapi,
    optional_token,
    require_scopes,
)
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeIssuer
from tests.helpers import bearer

from .asgi_client import lifespan, websocket

AUDIENCE = "api://orders"
PUBLIC = ("/health", "/docs", "/openapi.json")


def build_app(verifier: TokenVerifier | None, **options: Any) -> FastAPI:
    app = FastAPI()
    admin = APIRouter(prefix="/admin", dependencies=[require_scopes("orders:admin")])

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/orders", dependencies=[require_scopes("orders:read")])
    async def list_orders(token: AccessToken = Depends(current_token)) -> dict[str, Any]:
        return {"caller": token.subject}

    @app.post("/orders")
    async def create_order(
        token: AccessToken = require_scopes("orders:write", "orders:read"),
    ) -> dict[str, Any]:
        return {"created_by": token.subject}

    @app.get("/either")
    async def either(
        token: Annotated[AccessToken, require_scopes("orders:read", "reports:read", any_of=True)],
    ) -> dict[str, Any]:
        return {"scopes": sorted(token.scopes)}

    @app.get("/me")
    async def me(token: CurrentToken) -> dict[str, Any]:
        return {"subject": token.subject}

    @app.get("/maybe")
    async def maybe(
        token: Annotated[AccessToken | None, Depends(optional_token)],
    ) -> dict[str, Any]:
        return {"subject": token.subject if token else None}

    @admin.get("/stats")
    async def stats() -> dict[str, int]:
        return {"orders": 3}

    @app.websocket("/feed")
    async def feed(
        ws: WebSocket, token: Annotated[AccessToken, require_scopes("orders:read")]
    ) -> None:
        await ws.accept()
        await ws.send_json({"subject": token.subject})
        await ws.close()

    app.include_router(admin)
    if verifier is not None:
        app.add_middleware(BearerAuthMiddleware, verifier=verifier, public_paths=PUBLIC, **options)
    return app


@pytest.fixture
def app(verifier: TokenVerifier) -> FastAPI:
    return build_app(verifier)


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


def erin(fake: FakeIssuer, *scopes: str) -> str:
    """A token of the user erin with ``scopes``."""
    return fake.mint("erin", scopes=scopes)


# -- dependencies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "scopes", "body"),
    [
        ("GET", "/orders", ("orders:read",), {"caller": "erin"}),
        ("POST", "/orders", ("orders:read", "orders:write"), {"created_by": "erin"}),
        ("GET", "/either", ("reports:read",), {"scopes": ["reports:read"]}),
        ("GET", "/me", (), {"subject": "erin"}),
        ("GET", "/maybe", (), {"subject": "erin"}),
        ("GET", "/admin/stats", ("orders:admin",), {"orders": 3}),
    ],
    ids=[
        "dependencies-list",
        "parameter",
        "annotated-any-of",
        "current-token",
        "optional",
        "router",
    ],
)
async def test_granted_requests_reach_the_route(
    app: FastAPI,
    fake: FakeIssuer,
    method: str,
    path: str,
    scopes: tuple[str, ...],
    body: dict[str, Any],
) -> None:
    async with client(app) as http:
        response = await http.request(method, path, headers=bearer(erin(fake, *scopes)))
    assert response.status_code == 200
    assert response.json() == body


@pytest.mark.parametrize(
    ("method", "path", "scopes", "required", "description"),
    [
        ("GET", "/orders", ("other",), "orders:read", "the token lacks a required scope"),
        (
            "POST",
            "/orders",
            ("orders:read",),
            "orders:write orders:read",
            "the token lacks a required scope",
        ),
        (
            "GET",
            "/either",
            ("orders:write",),
            "orders:read reports:read",
            "the token grants none of the accepted scopes",
        ),
        (
            "GET",
            "/admin/stats",
            ("orders:read",),
            "orders:admin",
            "the token lacks a required scope",
        ),
    ],
    ids=["dependencies-list", "parameter", "any-of", "router"],
)
async def test_missing_scope_is_the_rfc6750_403(
    app: FastAPI,
    fake: FakeIssuer,
    method: str,
    path: str,
    scopes: tuple[str, ...],
    required: str,
    description: str,
) -> None:
    async with client(app) as http:
        response = await http.request(method, path, headers=bearer(erin(fake, *scopes)))
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="api", error="insufficient_scope", '
        f'error_description="{description}", scope="{required}"'
    )
    assert response.json() == {"error": "insufficient_scope", "error_description": description}


async def test_middleware_refusals_come_first(app: FastAPI, fake: FakeIssuer) -> None:
    async with client(app) as http:
        missing = await http.get("/orders")
        expired = await http.get("/orders", headers=bearer(fake.mint_expired()))
    assert missing.status_code == 401
    assert missing.headers.get_list("www-authenticate")[0] == 'Bearer realm="api"'
    assert expired.status_code == 401
    assert expired.json() == {"error": "invalid_token", "error_description": "the token expired"}


@pytest.mark.parametrize("path", ["/orders", "/me"])
async def test_anonymous_request_gets_401_from_the_dependency(
    verifier: TokenVerifier, path: str
) -> None:
    app = build_app(verifier, allow_anonymous=True, realm="orders")
    async with client(app) as http:
        response = await http.get(path)
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate")[0] == 'Bearer realm="orders"'
    assert response.json() == {
        "error": "unauthorized",
        "error_description": "a bearer token is required",
    }


def guarded_parent(verifier: TokenVerifier) -> FastAPI:
    """The orders app mounted at /v1 under a parent that has the middleware."""
    parent = FastAPI()
    parent.mount("/v1", build_app(None))
    parent.add_middleware(BearerAuthMiddleware, verifier=verifier)
    return parent


async def test_a_mounted_sub_app_still_gets_the_rfc6750_403(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    """With the middleware on the parent, FastAPI's own handler answers for the sub-app."""
    async with client(guarded_parent(verifier)) as http:
        response = await http.get("/v1/orders", headers=bearer(erin(fake, "reports:read")))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["detail"]["error"] == "insufficient_scope"


async def test_optional_token_is_none_for_anonymous_requests(verifier: TokenVerifier) -> None:
    app = build_app(verifier, allow_anonymous=True)
    async with client(app) as http:
        response = await http.get("/maybe")
    assert response.json() == {"subject": None}


@pytest.mark.parametrize("path", ["/orders", "/me", "/maybe"])
async def test_missing_middleware_fails_loudly(fake: FakeIssuer, path: str) -> None:
    async with client(build_app(None)) as http:
        with pytest.raises(RuntimeError, match=r"add app\.add_middleware\(BearerAuthMiddleware"):
            await http.get(path, headers=bearer(erin(fake, "orders:read")))


@pytest.mark.parametrize(
    ("args", "options", "error"),
    [(("a b",), {}, ValueError), (("a",), {"any_of": 1}, TypeError)],
    ids=["space", "any-of-type"],
)
def test_bad_arguments_are_refused(
    args: tuple[str, ...], options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        require_scopes(*args, **options)


# -- WebSockets --------------------------------------------------------------------------------


async def test_websocket_route_with_scope(app: FastAPI, fake: FakeIssuer) -> None:
    headers = bearer(erin(fake, "orders:read"))
    session = await websocket(app, path="/feed", headers=headers)
    assert session.texts() == [{"subject": "erin"}]


async def test_websocket_without_scope_gets_a_403_denial(app: FastAPI, fake: FakeIssuer) -> None:
    headers = bearer(erin(fake))
    session = await websocket(app, path="/feed", headers=headers)
    denial = session.denial
    assert denial is not None
    assert denial.status == 403
    challenge = denial.header(b"www-authenticate")
    assert challenge is not None
    assert b'error="insufficient_scope"' in challenge
    assert b'scope="orders:read"' in challenge


async def test_websocket_without_scope_closes_1008_without_denial_extension(
    app: FastAPI, fake: FakeIssuer
) -> None:
    headers = bearer(erin(fake))
    session = await websocket(app, path="/feed", headers=headers, denial_extension=False)
    assert not session.accepted
    assert session.close_code == 1008


async def test_a_mounted_sub_app_closes_a_websocket_1008_without_denial_extension(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    headers = bearer(erin(fake))
    session = await websocket(
        guarded_parent(verifier), path="/v1/feed", headers=headers, denial_extension=False
    )
    assert not session.accepted
    assert session.close_code == 1008


# -- OpenAPI -------------------------------------------------------------------------------------


def security_of(schema: dict[str, Any], method: str, path: str) -> Any:
    return schema["paths"][path][method].get("security")


def test_routes_declare_their_scopes(app: FastAPI) -> None:
    schema = app.openapi()
    assert security_of(schema, "get", "/orders") == [{SCHEME_NAME: ["orders:read"]}]
    assert security_of(schema, "post", "/orders") == [
        {SCHEME_NAME: ["orders:write", "orders:read"]}
    ]
    assert security_of(schema, "get", "/admin/stats") == [{SCHEME_NAME: ["orders:admin"]}]
    assert security_of(schema, "get", "/me") == [{SCHEME_NAME: []}]
    assert security_of(schema, "get", "/maybe") == [{SCHEME_NAME: []}]
    assert security_of(schema, "get", "/either") == [{SCHEME_NAME: ["orders:read", "reports:read"]}]
    assert security_of(schema, "get", "/health") is None


def test_without_install_the_scheme_is_http_bearer(app: FastAPI) -> None:
    assert app.openapi()["components"]["securitySchemes"][SCHEME_NAME] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "OAuth 2.0 access token (RFC 6750 bearer JWT)",
    }


def oauth2_scheme(token_url: str, scopes: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "description": "OAuth 2.0 client credentials; send the token as a bearer JWT",
        "flows": {"clientCredentials": {"tokenUrl": token_url, "scopes": scopes}},
    }


ALL_SCOPES = {
    "orders:admin": "",
    "orders:read": "",
    "orders:write": "",
    "reports:read": "",
}


def test_configured_token_url_makes_a_client_credentials_scheme(app: FastAPI) -> None:
    install_openapi(app, token_url="https://idp.example/token")
    schemes = app.openapi()["components"]["securitySchemes"]
    assert schemes == {SCHEME_NAME: oauth2_scheme("https://idp.example/token", ALL_SCOPES)}


def test_scope_descriptions_are_used(app: FastAPI) -> None:
    install_openapi(
        app,
        token_url="https://idp.example/token",
        scope_descriptions={"orders:read": "Read orders", "extra:scope": "Not on a route"},
    )
    scopes = app.openapi()["components"]["securitySchemes"][SCHEME_NAME]["flows"][
        "clientCredentials"
    ]["scopes"]
    assert scopes == {**ALL_SCOPES, "orders:read": "Read orders", "extra:scope": "Not on a route"}


async def test_served_openapi_document_has_the_scheme(app: FastAPI) -> None:
    install_openapi(app, token_url="https://idp.example/token")
    async with client(app) as http:
        document = (await http.get("/openapi.json")).json()
    flows = document["components"]["securitySchemes"][SCHEME_NAME]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "https://idp.example/token"


async def test_token_url_is_discovered_at_start_up(
    app: FastAPI, verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    install_openapi(app, verifier=verifier)
    assert app.openapi()["components"]["securitySchemes"][SCHEME_NAME]["type"] == "http"
    async with lifespan(app):
        schemes = app.openapi()["components"]["securitySchemes"]
    assert schemes == {SCHEME_NAME: oauth2_scheme(fake.token_endpoint, ALL_SCOPES)}


async def test_issuer_without_token_endpoint_keeps_the_bearer_scheme(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeIssuer(audience=AUDIENCE, algorithm="ES256")
    fake.metadata_overrides["token_endpoint"] = None
    verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client())
    app = build_app(verifier)
    install_openapi(app, verifier=verifier)
    with caplog.at_level(logging.WARNING, logger="resource_guard.fastapi"):
        async with lifespan(app):
            scheme = app.openapi()["components"]["securitySchemes"][SCHEME_NAME]
    assert scheme["type"] == "http"
    assert "token_url=" in caplog.text


class BrokenDiscovery:
    async def token_endpoint(self) -> str | None:
        raise OSError("unreachable")


async def test_failing_discovery_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()
    install_openapi(app, verifier=BrokenDiscovery())
    with caplog.at_level(logging.WARNING, logger="resource_guard.fastapi"):
        async with lifespan(app):
            pass
    assert "OSError" in caplog.text


async def test_the_apps_own_lifespan_still_runs(verifier: TokenVerifier) -> None:
    events: list[str] = []

    async def app_lifespan(app: FastAPI) -> Any:
        events.append("startup")
        yield {"ready": True}
        events.append("shutdown")

    app = FastAPI(lifespan=app_lifespan)
    install_openapi(app, verifier=verifier)
    async with lifespan(app) as state:
        assert state == {"ready": True}
    assert events == ["startup", "shutdown"]


@pytest.mark.parametrize(
    ("target", "options", "error", "match"),
    [
        ("app", {}, ValueError, "token_url=... or verifier="),
        ("app", {"token_url": ""}, ValueError, "non-empty URL"),
        ("app", {"verifier": object()}, TypeError, "token_endpoint"),
        ("app", {"token_url": "https://x", "scope_descriptions": {"a b": ""}}, ValueError, "scope"),
        ("app", {"token_url": "https://x", "scope_descriptions": {"a": 1}}, TypeError, "descr"),
        ("not-an-app", {"token_url": "https://x"}, TypeError, "FastAPI application"),
    ],
    ids=["nothing", "empty-url", "not-a-verifier", "bad-scope", "bad-description", "not-fastapi"],
)
def test_install_openapi_checks_its_arguments(
    target: str, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    app: Any = FastAPI() if target == "app" else object()
    with pytest.raises(error, match=match):
        install_openapi(app, **options)


def test_scope_collection_skips_non_operation_members() -> None:
    from resource_guard.fastapi import _collect_scopes

    schema = {
        "paths": {
            "/a": {
                "parameters": [{"name": "x", "in": "query"}],
                "get": {"security": [{SCHEME_NAME: ["b", "a"]}, {"other": ["c"]}]},
            }
        }
    }
    assert _collect_scopes(schema) == ["a", "b"]


# -- the optional import -----------------------------------------------------------------------


def test_import_without_fastapi_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "resource_guard.fastapi")
    with pytest.raises(ImportError, match=r"pip install 'resource-guard\[fastapi\]'"):
        importlib.import_module("resource_guard.fastapi")


@pytest.mark.parametrize(
    "dependency",
    [require_scopes("orders:read"), Depends(current_token), Depends(optional_token)],
    ids=["require_scopes", "current_token", "optional_token"],
)
def test_each_dependency_is_a_single_call(dependency: Any) -> None:
    """No sub-dependencies: FastAPI spends about as much per dependency level as the
    middleware spends on the whole token, so ours resolve in one call."""
    app = FastAPI()

    @app.get("/orders", dependencies=[dependency])
    async def orders() -> dict[str, str]:
        return {}

    route = next(route for route in app.routes if isinstance(route, APIRoute))
    (ours,) = route.dependant.dependencies
    assert ours.dependencies == []
