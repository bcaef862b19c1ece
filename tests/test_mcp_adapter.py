"""resource_guard.mcp: every rule mapping a verified token to the MCP SDK's AccessToken,
refusals, outages, the cached fast path, and MCPApp's lifespan and 503."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from mcp.server.auth.provider import AccessToken as MCPAccessToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from resource_guard import AccessToken, KeysUnavailableError, TokenVerifier, TrustedIssuers
from resource_guard.mcp import NO_CLIENT_ID, MCPApp, MCPTokenVerifier
from resource_guard.testing import FakeIssuer
from tests.asgi_client import call, lifespan, websocket

RESOURCE = "https://mcp.test/mcp"
OTHER = "https://other.test"


@pytest.fixture
def verifier(fake: FakeIssuer) -> TokenVerifier:
    return TokenVerifier(fake.issuer, [RESOURCE, OTHER], http_client=fake.async_client())


# -- an accepted token -----------------------------------------------------------------------------


async def test_an_accepted_token_maps_field_by_field(
    fake: FakeIssuer, verifier: TokenVerifier
) -> None:
    raw = fake.mint(
        "user-7",
        audience=RESOURCE,
        client_id="app-1",
        scopes=("tools:call", "orders:read"),
        claims={"tenant": "t1", "nested": {"a": [1]}},
    )
    adapter = MCPTokenVerifier(verifier, resource=RESOURCE)
    found = await adapter.verify_token(raw)
    assert isinstance(found, MCPAccessToken)
    claims = (await verifier.verify(raw)).claims
    assert found.token == raw
    assert found.client_id == "app-1"
    assert found.scopes == ["orders:read", "tools:call"]  # sorted
    assert found.expires_at == claims["exp"]
    assert isinstance(found.expires_at, int)
    assert found.resource == RESOURCE
    assert found.subject == "user-7"
    assert found.claims == dict(claims)
    assert found.claims is not None
    assert found.claims["nested"] == {"a": [1]}


async def test_a_token_naming_no_client_gets_the_empty_client_id(
    fake: FakeIssuer, verifier: TokenVerifier
) -> None:
    """Not ``sub``: a user's ``sub`` may spell a real client's id; "" never does."""
    raw = fake.mint("app-admin", audience=RESOURCE)
    found = await MCPTokenVerifier(verifier).verify_token(raw)
    assert found is not None
    assert found.client_id == NO_CLIENT_ID == ""
    assert found.subject == "app-admin"


async def test_a_token_without_a_subject(fake: FakeIssuer, verifier: TokenVerifier) -> None:
    found = await MCPTokenVerifier(verifier).verify_token(
        fake.mint(None, audience=RESOURCE, client_id="svc")
    )
    assert found is not None
    assert (found.subject, found.client_id, found.scopes) == (None, "svc", [])


# -- resource: the audience that matched -----------------------------------------------------------


@pytest.mark.parametrize(
    ("audience", "configured", "expected"),
    [
        ([RESOURCE, OTHER], RESOURCE, RESOURCE),
        ([OTHER, RESOURCE], RESOURCE, RESOURCE),  # the configured one, wherever it is
        ([OTHER], RESOURCE, OTHER),  # the token is for another accepted audience
        ([OTHER, RESOURCE], None, RESOURCE),  # the verifier's order decides
        (["https://x.test", OTHER], None, OTHER),  # an unaccepted one is skipped
    ],
    ids=["configured", "configured-second", "another-accepted", "verifier-order", "skip"],
)
async def test_resource_is_the_audience_that_matched(
    fake: FakeIssuer,
    verifier: TokenVerifier,
    audience: list[str],
    configured: str | None,
    expected: str,
) -> None:
    adapter = MCPTokenVerifier(verifier, resource=configured)
    found = await adapter.verify_token(fake.mint(audience=audience))
    assert found is not None
    assert found.resource == expected


def verified(claims: dict[str, Any], **fields: Any) -> AccessToken:
    return AccessToken(
        claims=MappingProxyType(claims),
        scopes=frozenset(),
        expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        **fields,
    )


class Stub:
    """A verifier of another kind: no audiences told, answers what it is given."""

    def __init__(self, answer: AccessToken | Exception, cached: Any = None) -> None:
        self.answer = answer
        self.calls: list[str] = []
        if cached is not None:
            self.cached = cached

    async def verify(self, token: str) -> AccessToken:
        self.calls.append(token)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def start(self) -> None:
        self.calls.append("start")

    async def aclose(self) -> None:
        self.calls.append("aclose")


@pytest.mark.parametrize(
    ("aud", "expected"),
    [
        ("https://a.test", "https://a.test"),
        (["https://b.test", "x"], "https://b.test"),
        (None, None),
    ],
    ids=["string", "first-of-list", "none"],
)
async def test_without_audiences_told_the_token_s_first_audience(
    aud: Any, expected: str | None
) -> None:
    stub = Stub(verified({"aud": aud}))
    found = await MCPTokenVerifier(stub).verify_token("t")
    assert found is not None
    assert found.resource == expected
    assert found.expires_at == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())


@pytest.mark.parametrize("audiences", [RESOURCE, None, 5], ids=["string", "none", "int"])
def test_audiences_that_are_no_collection_are_ignored(audiences: Any) -> None:
    stub = Stub(verified({"aud": [OTHER]}))
    stub.audiences = audiences  # type: ignore[attr-defined]
    adapter = MCPTokenVerifier(stub)
    assert adapter.matched_resource(verified({"aud": [OTHER]})) == OTHER


# -- refusals and outages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["expired", "wrong-audience", "malformed", "forged"], ids=lambda kind: kind
)
async def test_a_refused_token_is_none_and_logged_without_the_token(
    fake: FakeIssuer, verifier: TokenVerifier, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    makers: dict[str, Callable[[], str]] = {
        "expired": lambda: fake.mint_expired(audience=RESOURCE),
        "wrong-audience": lambda: fake.mint(audience="https://elsewhere.test"),
        "malformed": lambda: "not.a-token",
        "forged": lambda: fake.mint(audience=RESOURCE)[:-4] + "AAAA",
    }
    token = makers[kind]()
    with caplog.at_level(logging.INFO, logger="resource_guard.mcp"):
        assert await MCPTokenVerifier(verifier).verify_token(token) is None
    assert "token refused" in caplog.text
    assert token not in caplog.text


async def test_an_outage_is_raised_never_a_refusal() -> None:
    stub = Stub(KeysUnavailableError("keys down", retry_after=7))
    with pytest.raises(KeysUnavailableError):
        await MCPTokenVerifier(stub).verify_token("t")


# -- the cached fast path --------------------------------------------------------------------------


async def test_cached_answers_first_without_verify() -> None:
    hit = verified({"aud": RESOURCE}, client_id="c")
    seen: list[str] = []

    def cached(token: str) -> AccessToken | None:
        seen.append(token)
        return hit

    stub = Stub(KeysUnavailableError("must not be asked"), cached=cached)
    found = await MCPTokenVerifier(stub).verify_token("tok")
    assert found is not None
    assert found.client_id == "c"
    assert seen == ["tok"]
    assert stub.calls == []


@pytest.mark.parametrize("miss", [None, "not-a-token"], ids=["none", "wrong-type"])
async def test_a_cache_miss_goes_to_verify(miss: Any) -> None:
    stub = Stub(verified({"aud": RESOURCE}), cached=lambda token: miss)
    assert await MCPTokenVerifier(stub).verify_token("tok") is not None
    assert stub.calls == ["tok"]


async def test_a_failing_cache_is_logged_and_verify_decides(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(token: str) -> AccessToken | None:
        raise RuntimeError("bug")

    stub = Stub(verified({"aud": RESOURCE}), cached=broken)
    with caplog.at_level(logging.ERROR, logger="resource_guard.mcp"):
        assert await MCPTokenVerifier(stub).verify_token("tok") is not None
    assert stub.calls == ["tok"]
    assert "cached() failed (RuntimeError)" in caplog.text


async def test_an_async_cached_is_not_used() -> None:
    async def cached(token: str) -> AccessToken:
        raise AssertionError("never awaited")  # pragma: no cover - must not be called

    stub = Stub(verified({"aud": RESOURCE}), cached=cached)
    assert await MCPTokenVerifier(stub).verify_token("tok") is not None
    assert stub.calls == ["tok"]


# -- configuration and life ------------------------------------------------------------------------


def test_the_verifier_must_be_a_verifier() -> None:
    with pytest.raises(TypeError, match="resource-guard verifier"):
        MCPTokenVerifier(object())  # type: ignore[arg-type]


@pytest.mark.parametrize("resource", ["mcp", "ftp://x", "https://u:p@x.test"])
def test_a_bad_resource_fails_at_construction(verifier: TokenVerifier, resource: str) -> None:
    with pytest.raises(ValueError, match="resource"):
        MCPTokenVerifier(verifier, resource=resource)


async def test_start_and_close_reach_the_verifier() -> None:
    stub = Stub(verified({}))
    async with MCPTokenVerifier(stub) as adapter:
        assert isinstance(adapter, MCPTokenVerifier)
        assert stub.calls == ["start"]
    assert stub.calls == ["start", "aclose"]


# -- MCPApp ----------------------------------------------------------------------------------------


async def down(request: Request) -> PlainTextResponse:
    raise KeysUnavailableError("keys down", retry_after=7)


async def broken(request: Request) -> PlainTextResponse:
    raise RuntimeError("bug")


async def error_page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("server error", status_code=500)


async def fine(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


SDK_LIKE = Starlette(
    routes=[
        Route("/down", down),
        Route("/broken", broken),
        Route("/error", error_page),
        Route("/fine", fine),
    ]
)
"""Like the SDK's app: Starlette's ServerErrorMiddleware sends 500, then re-raises."""


@pytest.fixture
def wrapped() -> MCPApp:
    return MCPApp(SDK_LIKE, MCPTokenVerifier(Stub(verified({}))))


async def test_an_outage_becomes_503_with_retry_after(wrapped: MCPApp) -> None:
    result = await call(wrapped, path="/down")
    assert result.status == 503
    assert result.header(b"retry-after") == b"7"
    assert result.json()["error"] == "temporarily_unavailable"
    assert result.header(b"www-authenticate") is None


async def test_other_failures_stay_500(wrapped: MCPApp) -> None:
    with pytest.raises(RuntimeError, match="bug"):
        await call(wrapped, path="/broken")


async def test_replies_pass_through_unchanged(wrapped: MCPApp) -> None:
    assert (await call(wrapped, path="/fine")).body == b"ok"
    error = await call(wrapped, path="/error")
    assert (error.status, error.body) == (500, b"server error")


async def test_an_outage_raised_before_any_reply_becomes_503() -> None:
    """An app without Starlette's ServerErrorMiddleware: nothing went out, so 503."""

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        raise KeysUnavailableError("down", retry_after=3)

    app = MCPApp(raw, MCPTokenVerifier(Stub(verified({}))))
    result = await call(app, path="/x")
    assert result.status == 503
    assert result.header(b"retry-after") == b"3"


async def test_an_outage_after_another_reply_is_raised() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise KeysUnavailableError("down")

    app = MCPApp(raw, MCPTokenVerifier(Stub(verified({}))))
    with pytest.raises(KeysUnavailableError):
        await call(app, path="/x")


async def test_websockets_pass_through() -> None:
    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.close", "code": 1000})

    app = MCPApp(raw, MCPTokenVerifier(Stub(verified({}))))
    session = await websocket(app, path="/ws")
    assert session.close_code == 1000


async def test_the_lifespan_starts_and_closes_the_verifier() -> None:
    stub = Stub(verified({}))
    app = MCPApp(Starlette(), MCPTokenVerifier(stub))
    async with lifespan(app):
        assert stub.calls == ["start"]
    assert stub.calls == ["start", "aclose"]


def test_mcp_app_checks_its_arguments() -> None:
    adapter = MCPTokenVerifier(Stub(verified({})))
    with pytest.raises(TypeError, match="ASGI app"):
        MCPApp("app", adapter)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MCPTokenVerifier"):
        MCPApp(SDK_LIKE, object())  # type: ignore[arg-type]


# -- the optional import ---------------------------------------------------------------------------


def test_import_without_mcp_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mcp.server.auth.provider", None)
    monkeypatch.delitem(sys.modules, "resource_guard.mcp")
    with pytest.raises(ImportError, match=r"pip install 'resource-guard\[mcp\]'"):
        importlib.import_module("resource_guard.mcp")


def test_nothing_but_resource_guard_mcp_imports_mcp() -> None:
    code = (
        "import sys, resource_guard, resource_guard.middleware, resource_guard.starlette, "
        "resource_guard.fastapi, resource_guard.metadata, resource_guard.testing, "
        "resource_guard.client\n"
        "assert not [m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')], 'mcp'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_trusted_issuers_work_through_the_adapter() -> None:
    first = FakeIssuer("https://a.test", audience=RESOURCE, algorithm="ES256")
    second = FakeIssuer("https://b.test", audience=RESOURCE, algorithm="ES256")
    trusted = TrustedIssuers(
        [
            TokenVerifier(first.issuer, RESOURCE, http_client=first.async_client()),
            TokenVerifier(second.issuer, RESOURCE, http_client=second.async_client()),
        ]
    )
    adapter = MCPTokenVerifier(trusted, resource=RESOURCE)
    for fake in (first, second):
        found = await adapter.verify_token(fake.mint(client_id="c"))
        assert found is not None
        assert found.claims is not None
        assert (found.claims["iss"], found.resource) == (fake.issuer, RESOURCE)
    stranger = FakeIssuer("https://c.test", audience=RESOURCE, algorithm="ES256")
    assert await adapter.verify_token(stranger.mint()) is None
    await adapter.aclose()
