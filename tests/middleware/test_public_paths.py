"""public_paths: which paths need no token, dot segments included, and bad options."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette

from resource_guard import (
    TokenVerifier,
)
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeIssuer
from tests.asgi_client import call
from tests.helpers import ORDERS_AUDIENCE as AUDIENCE
from tests.helpers import bearer
from tests.loopback import LoopbackServer

from ._harness import assert_refusal, protect

# -- public paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/health", "/docs", "/docs/", "/docs/oauth2-redirect", "/docs/a/b"]
)
async def test_public_paths_need_no_token(app: Starlette, path: str) -> None:
    result = await call(app, path=path)
    assert result.status == 200
    assert result.json()["authenticated"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/health/",
        "/healthz",
        "/Health",
        "/health/x",
        "/docsx",
        "/docs/../orders",
        "/docs/./x",
        "/docs//x",
        "/openapi.json",
        "/",
    ],
)
async def test_other_paths_stay_protected(app: Starlette, path: str) -> None:
    assert_refusal(await call(app, path=path), 401, "unauthorized")


WELL_KNOWN = ("/.well-known/*", "/static/*", "/health")
DOT_NAMES_ARE_PUBLIC = {
    "protected-resource-metadata": "/.well-known/oauth-protected-resource",
    "metadata-for-a-path": "/.well-known/oauth-protected-resource/orders",
    "openid-configuration": "/.well-known/openid-configuration",
    "the-base": "/.well-known",
    "the-base-with-slash": "/.well-known/",
    "trailing-slash": "/.well-known/x/",
    "hidden-file": "/static/.hidden",
    "dotted-name": "/static/app.min.js",
    "three-dots": "/static/...",
    "dot-dot-name": "/static/..x",
    "name-dot-dot": "/static/x..",
    "dot-inside-deeper": "/static/a/.b/c",
}
DOT_SEGMENTS_STAY_PROTECTED = {
    "dotdot-to-admin": "/.well-known/../admin",
    "dot-segment": "/.well-known/./x",
    "double-slash": "/.well-known//x",
    "trailing-dotdot": "/.well-known/x/..",
    "trailing-dot": "/.well-known/x/.",
    "base-dot": "/.well-known/.",
    "base-dotdot": "/.well-known/..",
    "deep-dotdot": "/.well-known/a/b/../../../admin",
    "trailing-double-slash": "/.well-known/x//",
    "leading-double-slash": "//.well-known/x",
    "dotdot-semicolon": "/.well-known/..;/admin",
    "dot-semicolon": "/.well-known/.;x/admin",
    "backslash-dotdot": "/.well-known/..\\admin",
    "backslash-dot-segment": "/.well-known/x\\.\\y",
    "glued-prefix": "/.well-knownx",
    "static-dotdot": "/static/../admin",
    "static-hidden-then-dotdot": "/static/.hidden/../../admin",
}


@pytest.mark.parametrize("path", DOT_NAMES_ARE_PUBLIC.values(), ids=DOT_NAMES_ARE_PUBLIC.keys())
async def test_dot_named_segments_are_ordinary_names(verifier: TokenVerifier, path: str) -> None:
    result = await call(protect(verifier, public_paths=WELL_KNOWN), path=path)
    assert result.status == 200
    assert result.json()["authenticated"] is False


@pytest.mark.parametrize(
    "path", DOT_SEGMENTS_STAY_PROTECTED.values(), ids=DOT_SEGMENTS_STAY_PROTECTED.keys()
)
async def test_dot_segments_and_empty_segments_stay_protected(
    verifier: TokenVerifier, path: str
) -> None:
    result = await call(protect(verifier, public_paths=WELL_KNOWN), path=path)
    assert_refusal(result, 401, "unauthorized")


RAW_TARGETS = {
    "protected-resource-metadata": ("/.well-known/oauth-protected-resource", 200),
    "percent-encoded-dot-name": ("/%2Ewell-known/oauth-protected-resource", 200),
    "dotdot-to-admin": ("/.well-known/../admin", 401),
    "percent-encoded-dotdot": ("/.well-known/%2e%2e/admin", 401),
    "percent-encoded-slash-dotdot": ("/.well-known/..%2Fadmin", 401),
    "dot-segment": ("/.well-known/./x", 401),
    "double-slash": ("/.well-known//x", 401),
    "trailing-dotdot": ("/.well-known/x/..", 401),
}


@pytest.fixture(scope="module")
def well_known_server() -> Iterator[tuple[str, int]]:
    """The app under uvicorn on 127.0.0.1; no request here needs the verifier to start (so
    its issuer is never contacted)."""
    issuer = FakeIssuer(audience=AUDIENCE, algorithm="ES256")
    verifier = TokenVerifier(issuer.issuer, AUDIENCE, http_client=issuer.async_client())
    app = protect(verifier, public_paths=WELL_KNOWN, manage_verifier=False)
    with LoopbackServer(app, log_level="critical") as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


@pytest.mark.slow
@pytest.mark.parametrize(("target", "status"), RAW_TARGETS.values(), ids=RAW_TARGETS.keys())
async def test_public_dot_names_over_real_http(
    well_known_server: tuple[str, int], target: str, status: int
) -> None:
    """Raw request targets (a client library would resolve the dot segments itself)."""
    host, port = well_known_server
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    finally:
        writer.close()
    assert head.split(b" ")[1] == str(status).encode()


async def test_public_path_ignores_even_a_bad_token(app: Starlette) -> None:
    result = await call(app, path="/health", headers=bearer("not-a-jwt"))
    assert result.status == 200
    assert result.json()["subject"] is None


async def test_by_default_every_path_is_protected(verifier: TokenVerifier) -> None:
    app = protect(verifier)
    for path in ("/health", "/docs", "/openapi.json"):
        assert (await call(app, path=path)).status == 401


async def test_slash_star_makes_every_path_public(verifier: TokenVerifier) -> None:
    app = protect(verifier, public_paths=("/*",))
    assert (await call(app, path="/orders")).status == 200
    assert (await call(app, path="/")).status == 200


async def test_public_paths_match_below_the_root_path(app: Starlette) -> None:
    assert (await call(app, path="/api/health", root_path="/api")).status == 200
    assert (await call(app, path="/api/orders", root_path="/api")).status == 401
    assert (await call(app, path="/apihealth", root_path="/api")).status == 401
    assert (await call(app, path="/api", root_path="/api")).status == 401
    assert (await call(app, path="/health", root_path="/api")).status == 200  # not below it


@pytest.mark.parametrize(
    ("public_paths", "error", "match"),
    [
        ("/health", TypeError, "sequence of paths"),
        ([b"/health"], TypeError, "must be str"),
        (["health"], ValueError, "must start with '/'"),
        (["/a?b=1"], ValueError, "no query"),
        (["/a*"], ValueError, "final '/\\*'"),
        (["/*/a/*"], ValueError, "final '/\\*'"),
    ],
    ids=["bare-string", "bytes", "relative", "query", "star-suffix", "star-inside"],
)
def test_bad_public_paths_are_refused(
    verifier: TokenVerifier, public_paths: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        BearerAuthMiddleware(Starlette(), verifier=verifier, public_paths=public_paths)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"verifier": object()}, TypeError, "verifier must be a TokenVerifier"),
        ({"allow_anonymous": 1}, TypeError, "allow_anonymous must be a bool"),
        ({"manage_verifier": "no"}, TypeError, "manage_verifier must be a bool"),
        ({"realm": 1}, TypeError, "realm must be a str"),
        ({"realm": ""}, ValueError, "printable ASCII"),
        ({"realm": "caf\u00e9"}, ValueError, "printable ASCII"),
        ({"realm": "a\nb"}, ValueError, "printable ASCII"),
    ],
    ids=[
        "verifier",
        "anonymous",
        "manage",
        "realm-type",
        "realm-empty",
        "realm-unicode",
        "realm-newline",
    ],
)
def test_bad_options_are_refused(
    verifier: TokenVerifier, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        BearerAuthMiddleware(Starlette(), **{"verifier": verifier, **options})


def test_realm_is_exposed(verifier: TokenVerifier) -> None:
    assert BearerAuthMiddleware(Starlette(), verifier=verifier, realm="orders").realm == "orders"
