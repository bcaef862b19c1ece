"""ProtectedResourceMetadata (RFC 9728): options, the well-known URL, the document, and the
scopes collected from an app's routes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Host, Mount, Route

from resource_guard import (
    AccessToken,
    BearerAuthMiddleware,
    IssuerTemplate,
    ProtectedResourceMetadata,
    TokenVerifier,
    TrustedIssuers,
)
from resource_guard.dpop import DPoPMode, DPoPPolicy
from resource_guard.fastapi import current_token
from resource_guard.fastapi import require_scopes as fastapi_scopes
from resource_guard.metadata import (
    ROUTE_SCOPES_ATTRIBUTE,
    WELL_KNOWN_PATH,
    MetadataEndpoint,
    route_scopes,
)
from resource_guard.starlette import require_scopes as starlette_scopes
from tests.asgi_client import call

ISSUER = "https://login.test"

# -- the resource identifier and its well-known URL (RFC 9728 §1.2, §3.1) ---------------------


@pytest.mark.parametrize(
    ("resource", "path", "url"),
    [
        ("https://api.test", WELL_KNOWN_PATH, "https://api.test" + WELL_KNOWN_PATH),
        ("https://api.test/", WELL_KNOWN_PATH, "https://api.test" + WELL_KNOWN_PATH),
        (
            "https://api.test/v1",
            WELL_KNOWN_PATH + "/v1",
            "https://api.test/.well-known/oauth-protected-resource/v1",
        ),
        (
            "https://api.test:8443/a/b/",
            WELL_KNOWN_PATH + "/a/b/",
            "https://api.test:8443/.well-known/oauth-protected-resource/a/b/",
        ),
        ("http://127.0.0.1:8000/mcp", WELL_KNOWN_PATH + "/mcp", None),
    ],
    ids=["host", "host-slash", "path", "port-and-trailing-slash", "loopback-http"],
)
def test_the_well_known_url_inserts_the_suffix_between_host_and_path(
    resource: str, path: str, url: str | None
) -> None:
    metadata = ProtectedResourceMetadata(resource)
    assert metadata.resource == resource  # §3.3: the document names it exactly
    assert metadata.path == path
    assert metadata.url == (url or "http://127.0.0.1:8000" + path)


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        ("https://api.test/?x=1", "no query and no fragment"),
        ("https://api.test/#f", "no query and no fragment"),
        ("https://api.test/a?", "no query and no fragment"),
        ("http://api.test", "must use https"),
        ("ftp://api.test", "absolute https URL"),
        ("/relative", "absolute https URL"),
        ("api://orders", "absolute https URL"),
        ("https://user:pw@api.test", "credentials"),
        ("https://api.test/a b", "RFC 3986 characters"),
        ('https://api.test/"', "RFC 3986 characters"),
        ("https://api.test/\\", "RFC 3986 characters"),
        ("https://api.test/caf\u00e9", "RFC 3986 characters"),
        ("", "RFC 3986 characters"),
        ("https://api.test:99999", "port"),
    ],
)
def test_a_bad_resource_is_refused_saying_why(resource: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProtectedResourceMetadata(resource)


def test_plain_http_needs_the_opt_in() -> None:
    metadata = ProtectedResourceMetadata("http://api.internal", allow_insecure_http=True)
    assert metadata.url == "http://api.internal" + WELL_KNOWN_PATH
    assert metadata.allow_insecure_http is True


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"resource": 1}, TypeError, "resource must be a URL string"),
        ({"allow_insecure_http": "yes"}, TypeError, "allow_insecure_http"),
        ({"route_scopes": 1}, TypeError, "route_scopes"),
        ({"max_age": 1.5}, TypeError, "max_age"),
        ({"max_age": True}, TypeError, "max_age"),
        ({"max_age": -1}, ValueError, "max_age"),
        ({"max_age": 10**7}, ValueError, "max_age"),
        ({"scopes_supported": "a b"}, TypeError, "sequence of scopes"),
        ({"scopes_supported": ["a b"]}, ValueError, "scope"),
        ({"authorization_servers": ISSUER}, TypeError, "sequence of issuer URLs"),
        ({"authorization_servers": 5}, TypeError, "sequence of issuer URLs"),
        ({"authorization_servers": []}, ValueError, "at least one issuer"),
        ({"authorization_servers": [ISSUER + "?a"]}, ValueError, "no query"),
        ({"authorization_servers": ["login.test"]}, ValueError, "absolute https URL"),
        ({"resource_name": 3}, TypeError, "resource_name"),
        ({"resource_name": "  "}, ValueError, "resource_name"),
        ({"resource_name": "a\nb"}, ValueError, "resource_name"),
        ({"resource_documentation": "docs"}, ValueError, "resource_documentation"),
        ({"resource_tos_uri": 1}, TypeError, "resource_tos_uri"),
        ({"dpop_signing_alg_values_supported": "ES256"}, TypeError, "dpop_signing"),
        ({"dpop_signing_alg_values_supported": [""]}, TypeError, "dpop_signing"),
        ({"dpop_bound_access_tokens_required": "no"}, TypeError, "dpop_bound"),
    ],
)
def test_bad_options_fail_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    arguments: dict[str, Any] = {"resource": "https://api.test", **options}
    with pytest.raises(error, match=message):
        ProtectedResourceMetadata(**arguments)


# -- the document (RFC 9728 §2) ------------------------------------------------------------------


def test_the_smallest_document() -> None:
    metadata = ProtectedResourceMetadata("https://api.test", authorization_servers=[ISSUER])
    assert metadata.document() == {
        "resource": "https://api.test",
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
    }


def test_every_member_we_offer() -> None:
    metadata = ProtectedResourceMetadata(
        "https://api.test/v1",
        authorization_servers=[ISSUER, "https://other.test/t", ISSUER],
        scopes_supported=["b", "a"],
        resource_name="Orders API",
        resource_documentation="https://docs.test/orders",
        resource_policy_uri="https://docs.test/policy",
        resource_tos_uri="https://docs.test/tos",
        dpop_signing_alg_values_supported=["ES256", "EdDSA"],
        dpop_bound_access_tokens_required=False,
    )
    document = metadata.document(["c", "a"])
    assert document == {
        "resource": "https://api.test/v1",
        "authorization_servers": [ISSUER, "https://other.test/t"],  # once each, in order
        "scopes_supported": ["a", "b", "c"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Orders API",
        "resource_documentation": "https://docs.test/orders",
        "resource_policy_uri": "https://docs.test/policy",
        "resource_tos_uri": "https://docs.test/tos",
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
        "dpop_bound_access_tokens_required": False,
    }
    # Not signed: no signed_metadata and no resource_signing_alg_values_supported.
    assert "signed_metadata" not in document
    assert "resource_signing_alg_values_supported" not in document
    assert repr(metadata) == "ProtectedResourceMetadata(resource='https://api.test/v1')"


def test_the_document_needs_its_authorization_servers() -> None:
    metadata = ProtectedResourceMetadata("https://api.test")
    with pytest.raises(ValueError, match="authorization_servers is unknown"):
        metadata.document()
    with pytest.raises(ValueError, match="authorization_servers is unknown"):
        MetadataEndpoint(metadata)


def test_the_endpoint_takes_metadata_only() -> None:
    with pytest.raises(TypeError, match="ProtectedResourceMetadata"):
        MetadataEndpoint("https://api.test")  # type: ignore[arg-type]


# -- for_verifier: the verifier's issuers and audiences -------------------------------------------


class Several:
    """What TrustedIssuers tells: every issuer (tenant templates too) and audience."""

    def __init__(self, issuers: Any, audiences: Any) -> None:
        self.issuers = issuers
        self.audiences = audiences


def test_a_token_verifier_gives_its_issuer() -> None:
    verifier = TokenVerifier(ISSUER, "https://api.test", jwks_uri=ISSUER + "/keys")
    bound = ProtectedResourceMetadata("https://api.test").for_verifier(verifier)
    assert bound.authorization_servers == (ISSUER,)
    assert bound.resource == "https://api.test"
    assert bound.url == "https://api.test" + WELL_KNOWN_PATH


def test_several_issuers_without_templates() -> None:
    verifier = Several(
        (ISSUER, "https://login.microsoftonline.com/{tenant}/v2.0", "https://b.test", ISSUER),
        ("https://api.test", "api://other"),
    )
    bound = ProtectedResourceMetadata("https://api.test").for_verifier(verifier)
    assert bound.authorization_servers == (ISSUER, "https://b.test")


def test_given_authorization_servers_win() -> None:
    metadata = ProtectedResourceMetadata("https://api.test", authorization_servers=[ISSUER])
    assert metadata.for_verifier(Several(("https://b.test",), None)) is metadata


class WithPolicy(Several):
    """A verifier with a DPoP policy, and one whose dpop_policy is no DPoPPolicy."""

    def __init__(self, policy: object) -> None:
        super().__init__((ISSUER,), None)
        self.policy = policy

    def dpop_policy(self, token: object = None) -> object:
        return self.policy


@pytest.mark.parametrize(
    ("mode", "members"),
    [
        (
            "allowed",
            {
                "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
                "dpop_bound_access_tokens_required": False,
            },
        ),
        (
            "required",
            {
                "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
                "dpop_bound_access_tokens_required": True,
            },
        ),
        ("off", {}),
    ],
)
def test_the_verifier_s_dpop_policy_fills_the_dpop_members(
    mode: DPoPMode, members: dict[str, object]
) -> None:
    """RFC 9449 §5.2: what DPoP the resource accepts, from the policy in force."""
    verifier = TokenVerifier(
        ISSUER,
        "https://api.test",
        jwks_uri=ISSUER + "/keys",
        dpop=DPoPPolicy(mode, algorithms=("EdDSA", "ES256")),
    )
    document = ProtectedResourceMetadata("https://api.test").for_verifier(verifier).document()
    dpop = {name: value for name, value in document.items() if name.startswith("dpop_")}
    assert dpop == members


def test_given_dpop_members_win_over_the_policy() -> None:
    metadata = ProtectedResourceMetadata(
        "https://api.test",
        authorization_servers=[ISSUER],
        dpop_signing_alg_values_supported=["ES256"],
        dpop_bound_access_tokens_required=True,
    )
    assert metadata.for_verifier(WithPolicy(DPoPPolicy("allowed"))) is metadata


class AsyncPolicy(Several):
    async def dpop_policy(self, token: object = None) -> object:
        return DPoPPolicy("required")  # never awaited: an async dpop_policy breaks the contract


@pytest.mark.parametrize(
    "verifier",
    [WithPolicy(None), WithPolicy("allowed"), AsyncPolicy((ISSUER,), None)],
    ids=["none", "a-string", "async"],
)
def test_a_dpop_policy_that_is_not_one_is_ignored(verifier: object) -> None:
    metadata = ProtectedResourceMetadata("https://api.test", authorization_servers=[ISSUER])
    assert metadata.for_verifier(verifier) is metadata


@pytest.mark.parametrize(
    "verifier",
    [
        Several(("https://login.microsoftonline.com/{tenant}/v2.0",), None),
        Several((), None),
        Several(5, None),
        Several("https://b.test", None),
        object(),
    ],
    ids=["templates-only", "none", "not-a-list", "a-string", "nothing"],
)
def test_no_issuer_to_publish_says_what_to_pass(verifier: object) -> None:
    with pytest.raises(ValueError, match="authorization_servers="):
        ProtectedResourceMetadata("https://api.test").for_verifier(verifier)


@pytest.mark.parametrize(
    "audiences", [("https://api.test/",), "https://other.test", ("api://orders",)]
)
def test_the_resource_must_be_an_audience(audiences: Any) -> None:
    metadata = ProtectedResourceMetadata("https://api.test")
    with pytest.raises(ValueError, match="make the resource one of the verifier's audiences"):
        metadata.for_verifier(Several((ISSUER,), audiences))


@pytest.mark.parametrize("audiences", [None, 5, (), (1, 2)], ids=["none", "int", "empty", "ints"])
def test_audiences_the_verifier_does_not_tell_are_not_checked(audiences: Any) -> None:
    bound = ProtectedResourceMetadata("https://api.test").for_verifier(
        Several((ISSUER,), audiences)
    )
    assert bound.authorization_servers == (ISSUER,)


def test_an_audience_given_as_a_string_is_checked() -> None:
    bound = ProtectedResourceMetadata("https://api.test").for_verifier(
        Several((ISSUER,), "https://api.test")
    )
    assert bound.resource == "https://api.test"


# -- the scopes the routes require -----------------------------------------------------------------


def fastapi_app() -> FastAPI:
    app = FastAPI()
    router = APIRouter(dependencies=[fastapi_scopes("router:read")])

    @router.get("/r")
    async def routed() -> dict[str, str]:
        return {}  # pragma: no cover - never called

    @app.get("/a", dependencies=[fastapi_scopes("a:read", "a:write")])
    async def a() -> dict[str, str]:
        return {}  # pragma: no cover - never called

    @app.get("/b")
    async def b(token: AccessToken = fastapi_scopes("b:read", any_of=True)) -> dict[str, str]:
        return {}  # pragma: no cover - never called

    async def nested(token: AccessToken = fastapi_scopes("nested:read")) -> None:
        return None  # pragma: no cover - never called

    @app.get("/c")
    async def c(_: None = Depends(nested), t: AccessToken = Depends(current_token)) -> None:
        return None  # pragma: no cover - never called

    app.include_router(router, prefix="/router")
    return app


def test_fastapi_routes_routers_and_nested_dependencies() -> None:
    """Included routers are read from the OpenAPI document (FastAPI's own structure)."""
    assert route_scopes(fastapi_app()) == (
        "a:read",
        "a:write",
        "b:read",
        "nested:read",
        "router:read",
    )


def test_fastapi_app_dependencies() -> None:
    app = FastAPI(dependencies=[fastapi_scopes("app:read")])

    @app.get("/x")
    async def x() -> None:
        return None  # pragma: no cover - never called

    assert route_scopes(app) == ("app:read",)


@starlette_scopes("fn:read")
async def function_endpoint(request: Request) -> Response:
    return Response()  # pragma: no cover - never called


@starlette_scopes("sync:read")
def sync_endpoint(request: Request) -> Response:
    return Response()  # pragma: no cover - never called


class Orders(HTTPEndpoint):
    @starlette_scopes("class:read")
    async def get(self, request: Request) -> Response:
        return Response()  # pragma: no cover - never called

    @starlette_scopes("class:write")
    async def post(self, request: Request) -> Response:
        return Response()  # pragma: no cover - never called


async def plain(request: Request) -> Response:
    return JSONResponse({})  # pragma: no cover - never called


def starlette_app() -> Starlette:
    inner = Starlette(routes=[Route("/deep", sync_endpoint)])
    return Starlette(
        routes=[
            Route("/f", function_endpoint),
            Route("/orders", Orders),
            Route("/plain", plain),
            Mount("/sub", routes=[Route("/s", sync_endpoint)]),
            Mount("/app", app=inner),
            Mount("/fastapi", app=fastapi_app()),
            Host("api.test", app=Starlette(routes=[Route("/h", function_endpoint)])),
            Mount("/static", app=Response()),  # an app without routes
        ]
    )


def test_starlette_endpoints_classes_mounts_and_hosts() -> None:
    assert route_scopes(starlette_app()) == (
        "a:read",
        "a:write",
        "b:read",
        "class:read",
        "class:write",
        "fn:read",
        "nested:read",
        "router:read",
        "sync:read",
    )


def test_the_scopes_are_marked_on_the_checks() -> None:
    assert getattr(function_endpoint, ROUTE_SCOPES_ATTRIBUTE) == ("fn:read",)
    assert getattr(sync_endpoint, ROUTE_SCOPES_ATTRIBUTE) == ("sync:read",)


class Wrapper:
    """A middleware: routes are found through its ``.app``."""

    def __init__(self, app: object) -> None:
        self.app = app


def test_middleware_layers_are_looked_through() -> None:
    app = Starlette(routes=[Route("/f", function_endpoint)])
    assert route_scopes(Wrapper(Wrapper(app))) == ("fn:read",)


@pytest.mark.parametrize(
    "app",
    [None, object(), Wrapper(None), Wrapper(Wrapper(object())), Starlette()],
    ids=["none", "object", "wraps-none", "wraps-object", "no-routes"],
)
def test_no_routes_no_scopes(app: object) -> None:
    assert route_scopes(app) == ()


def test_endless_layers_are_bounded() -> None:
    layer: object = Starlette(routes=[Route("/f", function_endpoint)])
    for _ in range(40):
        layer = Wrapper(layer)
    assert route_scopes(layer) == ()


def test_deep_mounts_are_bounded() -> None:
    app = Starlette(routes=[Route("/f", function_endpoint)])
    for _ in range(40):
        app = Starlette(routes=[Mount("/m", app=app)])
    assert route_scopes(app) == ()


def test_deep_dependencies_are_bounded() -> None:
    class Dependant:
        def __init__(self, call: object, dependencies: list[Dependant]) -> None:
            self.call = call
            self.dependencies = dependencies

    class Check:
        resource_guard_scopes = ("deep:read",)

    class FakeRoute:
        endpoint = None

        def __init__(self, dependant: Dependant) -> None:
            self.dependant = dependant

    deep = Dependant(Check(), [])
    for _ in range(40):
        deep = Dependant(None, [deep])
    shallow = Dependant(None, [Dependant(Check(), [])])
    assert route_scopes(Wrapper(Starlette(routes=[FakeRoute(deep)]))) == ()  # type: ignore[list-item]
    assert route_scopes(Starlette(routes=[FakeRoute(shallow)])) == ("deep:read",)  # type: ignore[list-item]


def test_a_marker_that_is_not_a_tuple_of_names_is_ignored() -> None:
    async def endpoint(request: Request) -> Response:
        return Response()  # pragma: no cover - never called

    setattr(endpoint, ROUTE_SCOPES_ATTRIBUTE, ["list:read"])
    assert route_scopes(Starlette(routes=[Route("/x", endpoint)])) == ()
    setattr(endpoint, ROUTE_SCOPES_ATTRIBUTE, (1,))
    assert route_scopes(Starlette(routes=[Route("/x", endpoint)])) == ()


async def test_the_endpoint_reads_the_request_s_app_by_default() -> None:
    metadata = ProtectedResourceMetadata(
        "https://api.test", authorization_servers=[ISSUER], route_scopes=True
    )
    endpoint = MetadataEndpoint(metadata)
    app = Starlette(routes=[Route("/f", function_endpoint)])
    result = await call(endpoint, path=WELL_KNOWN_PATH)  # a scope without "app"
    assert "scopes_supported" not in result.json()
    fresh = MetadataEndpoint(metadata)
    assert b'"scopes_supported":["fn:read"]' in fresh.body({"type": "http", "app": app})
    assert b"scopes_supported" not in MetadataEndpoint(metadata).body()


def test_fastapi_routes_hidden_from_the_schema_are_still_walked() -> None:
    app = FastAPI()

    @app.get("/hidden", include_in_schema=False, dependencies=[fastapi_scopes("hidden:read")])
    async def hidden() -> None:
        return None  # pragma: no cover - never called

    assert route_scopes(app) == ("hidden:read",)


def test_a_broken_openapi_document_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    app = fastapi_app()

    def broken() -> dict[str, Any]:
        raise RuntimeError("no schema")

    app.openapi = broken  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="resource_guard.metadata"):
        scopes = route_scopes(app)
    assert scopes == ("a:read", "a:write", "b:read", "nested:read")  # walked, not the router's
    assert "could not read the app's OpenAPI document" in caplog.text
    assert "RuntimeError" in caplog.text


async def test_the_middleware_on_a_fastapi_app_reads_its_openapi_document() -> None:
    """add_middleware: the middleware wraps the router; the app (scope["app"]) tells more."""
    app = fastapi_app()
    verifier = TokenVerifier(ISSUER, "https://api.test", jwks_uri=ISSUER + "/keys")
    metadata = ProtectedResourceMetadata("https://api.test", route_scopes=True)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, resource_metadata=metadata)
    result = await call(app, path=WELL_KNOWN_PATH)
    assert result.json()["scopes_supported"] == [
        "a:read",
        "a:write",
        "b:read",
        "nested:read",
        "router:read",
    ]


async def test_a_middleware_around_a_mounted_app_reads_that_app_only() -> None:
    """The request's app is the outer one: its other routes' scopes are not published."""
    verifier = TokenVerifier(ISSUER, "https://api.test/inner", jwks_uri=ISSUER + "/keys")
    metadata = ProtectedResourceMetadata("https://api.test/inner", route_scopes=True)
    inner = BearerAuthMiddleware(
        Starlette(routes=[Route("/s", sync_endpoint)]),
        verifier=verifier,
        resource_metadata=metadata,
    )
    outer = Starlette(routes=[Route("/f", function_endpoint), Mount("/inner", app=inner)])
    result = await call(outer, path="/inner" + WELL_KNOWN_PATH + "/inner")
    assert result.json()["scopes_supported"] == ["sync:read"]  # not the outer's fn:read


# -- with several trusted issuers ---------------------------------------------------------------


async def test_trusted_issuers_publish_every_listable_issuer() -> None:
    resource = "https://api.test"
    entra = "https://login.microsoftonline.com/{tenant}/v2.0"
    keys = "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    trusted = TrustedIssuers(
        [
            TokenVerifier(ISSUER, resource, jwks_uri=ISSUER + "/keys"),
            IssuerTemplate(entra, resource, jwks_uri=keys, tenants=["t1"]),
            IssuerTemplate(entra.replace("login", "sts"), resource, jwks_uri=keys, any_tenant=True),
        ]
    )
    middleware = BearerAuthMiddleware(
        Starlette(), verifier=trusted, resource_metadata=ProtectedResourceMetadata(resource)
    )
    served = middleware.resource_metadata
    assert served is not None
    assert served.authorization_servers == (
        ISSUER,
        "https://login.microsoftonline.com/t1/v2.0",
    )  # the any-tenant template names no one server
    result = await call(middleware, path=WELL_KNOWN_PATH)
    assert result.json()["authorization_servers"] == [ISSUER, served.authorization_servers[1]]
    with pytest.raises(ValueError, match="not an audience"):
        ProtectedResourceMetadata("https://other.test").for_verifier(trusted)
