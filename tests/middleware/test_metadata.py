"""RFC 9728 in the middleware: the metadata document served, and named by every challenge."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from resource_guard import ProtectedResourceMetadata, TokenVerifier
from resource_guard.dpop import DPoPPolicy
from resource_guard.exceptions import KeysUnavailableError
from resource_guard.fastapi import require_scopes as fastapi_scopes
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.starlette import require_scopes
from resource_guard.testing import FakeIssuer
from tests.asgi_client import call, websocket
from tests.helpers import bearer

from ._harness import ROUTES, assert_refusal, bare

RESOURCE = "https://api.test/orders"
METADATA_PATH = "/.well-known/oauth-protected-resource/orders"
METADATA_URL = "https://api.test" + METADATA_PATH
NAMED = f'resource_metadata="{METADATA_URL}"'.encode()


@pytest.fixture
def resource_verifier(fake: FakeIssuer) -> TokenVerifier:
    return TokenVerifier(fake.issuer, RESOURCE, http_client=fake.async_client())


@require_scopes("orders:write")
async def write_orders(request: Request) -> JSONResponse:
    return JSONResponse({"written": True})


def protected(verifier: Any, metadata: ProtectedResourceMetadata, **options: Any) -> Starlette:
    app = Starlette(routes=[Route("/write", write_orders, methods=["POST"]), *ROUTES])
    app.add_middleware(
        BearerAuthMiddleware, verifier=verifier, resource_metadata=metadata, **options
    )
    return app


@pytest.fixture
def app(resource_verifier: TokenVerifier) -> Starlette:
    return protected(resource_verifier, ProtectedResourceMetadata(RESOURCE, route_scopes=True))


def token(fake: FakeIssuer, *scopes: str) -> list[tuple[bytes, bytes]]:
    return bearer(fake.mint(audience=RESOURCE, scopes=scopes))


# -- the document --------------------------------------------------------------------------


async def test_the_document_is_served_without_a_token(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path=METADATA_PATH)
    assert result.status == 200
    assert result.header(b"content-type") == b"application/json"
    assert result.header(b"content-length") == str(len(result.body)).encode()
    assert result.header(b"cache-control") == b"public, max-age=3600"
    assert result.header(b"access-control-allow-origin") == b"*"
    assert result.header(b"www-authenticate") is None
    # RFC 9728 §2, member by member; §3.3: "resource" is the identifier exactly.
    assert result.json() == {
        "resource": RESOURCE,
        "authorization_servers": [fake.issuer],
        "scopes_supported": ["orders:write"],  # Starlette's own @requires is not ours
        "bearer_methods_supported": ["header"],
        # RFC 9449 §5.2, from the verifier's DPoP policy (the default: "allowed")
        "dpop_signing_alg_values_supported": sorted(DPoPPolicy().algorithms),
        "dpop_bound_access_tokens_required": False,
    }


async def test_head_gets_the_headers_without_the_body(app: Starlette) -> None:
    get = await call(app, path=METADATA_PATH)
    head = await call(app, path=METADATA_PATH, method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert head.headers == get.headers


async def test_a_cors_preflight_is_answered(app: Starlette) -> None:
    result = await call(app, path=METADATA_PATH, method="OPTIONS")
    assert result.status == 204
    assert result.body == b""
    assert result.header(b"access-control-allow-origin") == b"*"
    assert result.header(b"access-control-allow-methods") == b"GET, HEAD"
    assert result.header(b"allow") == b"GET, HEAD, OPTIONS"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_other_methods_get_405_with_allow(app: Starlette, method: str) -> None:
    result = await call(app, path=METADATA_PATH, method=method)
    assert result.status == 405
    assert result.header(b"allow") == b"GET, HEAD, OPTIONS"
    assert result.json()["error"] == "method_not_allowed"


async def test_the_document_is_served_under_a_root_path(app: Starlette) -> None:
    """Full path, or the path the app routes on (a proxy prefix in ``root_path``)."""
    direct = await call(app, path=METADATA_PATH, root_path="/api")
    prefixed = await call(app, path="/api" + METADATA_PATH, root_path="/api")
    assert direct.status == prefixed.status == 200
    assert direct.json()["resource"] == prefixed.json()["resource"] == RESOURCE


async def test_a_resource_without_a_path_has_the_bare_well_known_path(fake: FakeIssuer) -> None:
    verifier = TokenVerifier(fake.issuer, "https://api.test/", http_client=fake.async_client())
    app = protected(verifier, ProtectedResourceMetadata("https://api.test/"))
    result = await call(app, path="/.well-known/oauth-protected-resource")
    assert result.status == 200
    assert result.json()["resource"] == "https://api.test/"
    assert "scopes_supported" not in result.json()  # route_scopes not asked, none listed
    refused = await call(app, path="/orders")
    for challenge in refused.header_lines(b"www-authenticate"):
        assert b'resource_metadata="https://api.test/.well-known/oauth-protected-resource"' in (
            challenge
        )


async def test_explicit_authorization_servers_and_scopes(
    resource_verifier: TokenVerifier,
) -> None:
    metadata = ProtectedResourceMetadata(
        RESOURCE,
        authorization_servers=["https://login.test/a", "https://login.test/b"],
        scopes_supported=["orders:admin"],
        route_scopes=True,
        resource_name="Orders",
        max_age=60,
    )
    result = await call(protected(resource_verifier, metadata), path=METADATA_PATH)
    assert result.header(b"cache-control") == b"public, max-age=60"
    document = result.json()
    assert document["authorization_servers"] == ["https://login.test/a", "https://login.test/b"]
    assert document["scopes_supported"] == ["orders:admin", "orders:write"]
    assert document["resource_name"] == "Orders"


# -- nothing else becomes public -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",  # the resource has a path: not this one
        "/.well-known/oauth-protected-resource/orders/",
        "/.well-known/oauth-protected-resource/orders/x",
        "/.well-known/oauth-protected-resource/orders/../../admin",
        "/.well-known/oauth-protected-resource/../admin",
        "/.well-known/oauth-protected-resource/ordersx",
        "/.well-known/oauth-protected-resource//orders",
        "//.well-known/oauth-protected-resource/orders",
        "/x/.well-known/oauth-protected-resource/orders",  # ends like it, is not it
        "/.WELL-KNOWN/oauth-protected-resource/orders",
        "/.well-known/oauth-protected-resource/ORDERS",
        "/.well-known/oauth-protected-resource%2Forders",  # as a server that did not decode
        "/.well-known%2Foauth-protected-resource/orders",
        "/.well-known/oauth-protected-resource/orders%00",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
        "/orders",
        "/",
    ],
)
async def test_every_other_path_stays_protected(app: Starlette, path: str) -> None:
    result = await call(app, path=path)
    assert_refusal(result, 401, "unauthorized")
    assert result.header_lines(b"www-authenticate") == bare(named=NAMED)


async def test_a_root_path_lookalike_stays_protected(app: Starlette) -> None:
    """The path under the root must equal the metadata path, not just end with it."""
    result = await call(app, path="/apix" + METADATA_PATH, root_path="/api")
    assert result.status == 401


async def test_a_websocket_on_the_metadata_path_needs_a_token(app: Starlette) -> None:
    session = await websocket(app, path=METADATA_PATH)
    assert session.denial is not None
    assert session.denial.status == 401


async def test_the_app_never_sees_a_metadata_request(resource_verifier: TokenVerifier) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])  # pragma: no cover - must never run

    middleware = BearerAuthMiddleware(
        inner, verifier=resource_verifier, resource_metadata=ProtectedResourceMetadata(RESOURCE)
    )
    for method in ("GET", "HEAD", "OPTIONS", "POST"):
        await call(middleware, path=METADATA_PATH, method=method)
    assert seen == []


async def test_public_paths_still_work_beside_the_metadata(
    resource_verifier: TokenVerifier,
) -> None:
    app = protected(resource_verifier, ProtectedResourceMetadata(RESOURCE), public_paths=["/h"])
    assert (await call(app, path="/h")).json()["authenticated"] is False
    assert (await call(app, path="/orders")).status == 401
    assert (await call(app, path=METADATA_PATH)).status == 200


# -- every challenge names the document --------------------------------------------------------


async def test_a_valid_token_passes(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path="/orders", headers=token(fake, "orders:read"))
    assert result.status == 200
    again = await call(app, path="/orders", headers=token(fake, "orders:read"))
    assert again.json()["authenticated"] is True


CHALLENGE = re.compile(
    r'Bearer realm="api"(?:, (?:error|error_description|scope)="[\x20\x21\x23-\x5b\x5d-\x7e]*")*'
    r', resource_metadata="https://api\.test/\.well-known/oauth-protected-resource/orders"'
)


async def test_a_missing_token_names_the_metadata(app: Starlette) -> None:
    result = await call(app, path="/orders")
    assert_refusal(result, 401, "unauthorized")
    assert result.header_lines(b"www-authenticate") == bare(named=NAMED)


async def test_an_invalid_token_names_the_metadata(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path="/orders", headers=bearer(fake.mint(audience="other")))
    assert_refusal(result, 401, "invalid_token")
    challenge = result.header(b"www-authenticate")
    assert challenge is not None
    assert CHALLENGE.fullmatch(challenge.decode()), challenge
    assert b'error="invalid_token"' in challenge


async def test_a_bad_request_names_the_metadata(app: Starlette) -> None:
    headers = [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]
    result = await call(app, path="/orders", headers=headers)
    assert_refusal(result, 400, "invalid_request")
    challenge = result.header(b"www-authenticate")
    assert challenge is not None
    assert CHALLENGE.fullmatch(challenge.decode()), challenge


async def test_a_route_s_scope_refusal_names_the_metadata(app: Starlette, fake: FakeIssuer) -> None:
    result = await call(app, path="/write", method="POST", headers=token(fake, "orders:read"))
    assert_refusal(result, 403, "insufficient_scope")
    challenge = result.header(b"www-authenticate")
    assert challenge is not None
    assert CHALLENGE.fullmatch(challenge.decode()), challenge
    assert b'scope="orders:write"' in challenge


@pytest.mark.parametrize("anonymous", [False, True], ids=["token-required", "anonymous"])
async def test_a_fastapi_route_s_refusals_name_the_metadata(
    resource_verifier: TokenVerifier, fake: FakeIssuer, anonymous: bool
) -> None:
    """FastAPI's require_scopes answers 403 (a token without the scope) and, for an
    anonymous request, 401: both challenges name the metadata."""
    api = FastAPI()

    @api.get("/orders", dependencies=[fastapi_scopes("orders:write")])
    async def orders() -> dict[str, bool]:
        return {"written": True}

    api.add_middleware(
        BearerAuthMiddleware,
        verifier=resource_verifier,
        resource_metadata=ProtectedResourceMetadata(RESOURCE),
        allow_anonymous=anonymous,
    )
    refused = await call(api, path="/orders", headers=token(fake, "orders:read"))
    assert_refusal(refused, 403, "insufficient_scope")
    challenge = refused.header(b"www-authenticate")
    assert challenge is not None
    assert CHALLENGE.fullmatch(challenge.decode()), challenge
    missing = await call(api, path="/orders")
    assert_refusal(missing, 401, "unauthorized")
    assert missing.header_lines(b"www-authenticate") == bare(named=NAMED)
    allowed = await call(api, path="/orders", headers=token(fake, "orders:write"))
    assert (allowed.status, allowed.json()) == (200, {"written": True})


async def test_a_route_s_missing_token_names_the_metadata(
    resource_verifier: TokenVerifier,
) -> None:
    app = protected(resource_verifier, ProtectedResourceMetadata(RESOURCE), allow_anonymous=True)
    result = await call(app, path="/write", method="POST")
    assert_refusal(result, 401, "unauthorized")
    assert result.header_lines(b"www-authenticate") == bare(named=NAMED)


async def test_503_has_no_challenge(resource_verifier: TokenVerifier, fake: FakeIssuer) -> None:
    class Down(TokenVerifier):
        async def verify(self, token: str) -> Any:
            raise KeysUnavailableError("down", retry_after=5)

    verifier = Down(fake.issuer, RESOURCE, http_client=fake.async_client())
    app = protected(verifier, ProtectedResourceMetadata(RESOURCE))
    result = await call(app, path="/orders", headers=token(fake))
    assert_refusal(result, 503, "temporarily_unavailable")
    assert (await call(app, path=METADATA_PATH)).status == 200


# -- configuration ---------------------------------------------------------------------------


def test_the_resource_must_be_an_audience_of_the_verifier(
    resource_verifier: TokenVerifier,
) -> None:
    metadata = ProtectedResourceMetadata("https://api.test/other")
    with pytest.raises(ValueError, match="not an audience the verifier accepts") as caught:
        BearerAuthMiddleware(Starlette(), verifier=resource_verifier, resource_metadata=metadata)
    assert RESOURCE in str(caught.value)  # says what would be right


def test_resource_metadata_must_be_the_metadata_class(
    resource_verifier: TokenVerifier,
) -> None:
    with pytest.raises(TypeError, match="ProtectedResourceMetadata"):
        BearerAuthMiddleware(
            Starlette(),
            verifier=resource_verifier,
            resource_metadata={"resource": RESOURCE},  # type: ignore[arg-type]
        )


def test_the_middleware_tells_its_metadata(resource_verifier: TokenVerifier) -> None:
    plain = BearerAuthMiddleware(Starlette(), verifier=resource_verifier)
    assert plain.resource_metadata is None
    given = ProtectedResourceMetadata(RESOURCE)
    served = BearerAuthMiddleware(
        Starlette(), verifier=resource_verifier, resource_metadata=given
    ).resource_metadata
    assert served is not None
    assert served is not given  # the issuers filled in on a copy
    assert given.authorization_servers is None
    assert served.authorization_servers == (resource_verifier.issuer,)
    assert served.url == METADATA_URL


async def test_routes_scopes_are_collected_at_the_first_request(
    resource_verifier: TokenVerifier,
) -> None:
    """Routes added after the middleware but before the first request count; the
    document is then built once and kept."""

    @require_scopes("late:read")
    async def late(request: Request) -> JSONResponse:
        return JSONResponse({})  # pragma: no cover - never called

    @require_scopes("later:read")
    async def later(request: Request) -> JSONResponse:
        return JSONResponse({})  # pragma: no cover - never called

    app = protected(resource_verifier, ProtectedResourceMetadata(RESOURCE, route_scopes=True))
    app.router.routes.insert(0, Mount("/late", routes=[Route("/", late)]))
    first = await call(app, path=METADATA_PATH)
    assert first.json()["scopes_supported"] == ["late:read", "orders:write"]
    app.router.routes.insert(0, Route("/later", later))
    assert (await call(app, path=METADATA_PATH)).body == first.body
