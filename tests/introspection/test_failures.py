"""When the introspection endpoint fails: never an active token, always 503 with
Retry-After, one deadline per call, a cooldown instead of a retry storm, and no token in
any log line."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from unittest import mock

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import (
    BearerAuthMiddleware,
    InactiveTokenError,
    IntrospectionUnavailableError,
    IntrospectionVerifier,
    get_access_token,
)
from resource_guard._client_auth import ClientAuthentication
from resource_guard.testing import FakeClock, FakeIssuer
from tests.asgi_client import call
from tests.helpers import bearer

from .conftest import CLIENT_SECRET, MakeVerifier


@pytest.mark.parametrize(
    ("kind", "options", "reason"),
    [
        ("status", {"status": 500}, "HTTP status 500"),
        ("status", {"status": 400}, "HTTP status 400"),
        ("status", {"status": 429}, "HTTP status 429"),
        ("garbage", {}, "not a JSON object"),
        ("not_object", {}, "not a JSON object"),
        ("oversized", {}, "larger than"),
        ("gzip_bomb", {}, "larger than"),
        ("redirect", {}, "HTTP status 302"),
        ("slow", {"delay": 2}, "within 0.3 s"),
        ("drip", {"delay": 0.1}, "within 0.3 s"),
    ],
)
async def test_a_failing_endpoint_is_unavailable_never_active(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    kind: str,
    options: dict[str, float],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = make_verifier(timeout=0.3)
    issuer.fault(kind, endpoint="introspection", **options)  # type: ignore[arg-type]
    token = issuer.issue_opaque()
    started = time.monotonic()
    with (
        caplog.at_level(logging.DEBUG, "resource_guard"),
        pytest.raises(IntrospectionUnavailableError, match=reason) as caught,
    ):
        await verifier.verify(token)
    assert time.monotonic() - started < 2
    for text in (caplog.text, str(caught.value), repr(caught.value)):
        assert token not in text
        assert CLIENT_SECRET not in text
    assert caught.value.retry_after >= 1
    assert verifier.last_error is not None
    assert verifier.cached(token) is None
    assert len(verifier.cache) == 0


async def test_active_as_a_string_is_inactive(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.fault("active_string", endpoint="introspection")
    with pytest.raises(InactiveTokenError):
        await verifier.verify(issuer.issue_opaque())


async def test_a_down_endpoint_is_unavailable(make_verifier: MakeVerifier) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = make_verifier(introspection_endpoint=f"http://127.0.0.1:{port}/introspect")
    with pytest.raises(IntrospectionUnavailableError, match="ConnectError"):
        await verifier.verify("some-token")


@pytest.mark.parametrize(
    "content_type", ["text/html", "", "application/jwt", "application/token-introspection+jwt"]
)
async def test_a_json_answer_needs_the_json_content_type(
    make_verifier: MakeVerifier, content_type: str
) -> None:
    """A hand-built endpoint: the body is fine, only the type is wrong."""

    def endpoint(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        return httpx.Response(200, headers=headers, content=b'{"active": true}')

    verifier = make_verifier(
        introspection_endpoint="https://idp.test/introspect",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
    )
    with pytest.raises(IntrospectionUnavailableError, match="not application/json"):
        await verifier.verify("some-token")


async def test_duplicate_members_make_the_answer_unreadable(make_verifier: MakeVerifier) -> None:
    """``{"active": false, "active": true}`` must not read as active."""
    body = b'{"active": false, "active": true, "aud": "api://orders"}'
    verifier = make_verifier(
        introspection_endpoint="https://idp.test/introspect",
        http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(
                lambda request: httpx.Response(
                    200, headers={"content-type": "application/json"}, content=body
                )
            )
        ),
    )
    with pytest.raises(IntrospectionUnavailableError, match="not a JSON object"):
        await verifier.verify("some-token")


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_client_credentials_are_a_logged_misconfiguration(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    verifier = make_verifier(client_secret="wrong-secret")
    if status == 403:
        issuer.fault("status", endpoint="introspection", status=403)
    token = issuer.issue_opaque()
    with (
        caplog.at_level(logging.DEBUG, "resource_guard"),
        pytest.raises(IntrospectionUnavailableError, match="misconfiguration"),
    ):
        await verifier.verify(token)
    assert f"HTTP {status}" in caplog.text
    assert "client_id='orders-api'" in caplog.text
    assert "wrong-secret" not in caplog.text
    assert token not in caplog.text


async def test_a_failure_starts_a_growing_cooldown(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    verifier = make_verifier(cooldown=2)
    issuer.fault("status", endpoint="introspection", status=503)
    with pytest.raises(IntrospectionUnavailableError) as first:
        await verifier.verify(issuer.issue_opaque())
    assert 2 <= first.value.retry_after <= 3
    for _ in range(5):  # new tokens inside the cooldown fail at once, without a call
        with pytest.raises(IntrospectionUnavailableError, match="cooldown") as fast:
            await verifier.verify(issuer.issue_opaque())
        assert fast.value.retry_after >= 1
    assert issuer.introspection_count == 1
    clock.advance(3)
    with pytest.raises(IntrospectionUnavailableError) as second:
        await verifier.verify(issuer.issue_opaque())
    assert 4 <= second.value.retry_after <= 6  # doubled
    assert issuer.introspection_count == 2
    issuer.clear_faults()
    clock.advance(6)
    assert (await verifier.verify(issuer.issue_opaque())).subject == "user-123"
    assert verifier.last_error is None
    clock.advance(0.5)  # no cooldown after a success
    await verifier.verify(issuer.issue_opaque())


async def test_cached_answers_keep_serving_while_the_endpoint_fails(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    token = issuer.issue_opaque()
    await verifier.verify(token)
    issuer.fault("status", endpoint="introspection", status=500)
    with pytest.raises(IntrospectionUnavailableError):
        await verifier.verify(issuer.issue_opaque())
    assert (await verifier.verify(token)).subject == "user-123"


async def test_without_cooldown_every_token_tries(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(cooldown=0)
    issuer.fault("status", endpoint="introspection", status=500)
    for _ in range(3):
        with pytest.raises(IntrospectionUnavailableError) as caught:
            await verifier.verify(issuer.issue_opaque())
        assert caught.value.retry_after == 1
    assert issuer.introspection_count == 3


async def test_an_unexpected_error_is_a_failure_too(
    issuer: FakeIssuer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier()
    bug = RuntimeError("a bug")
    with (
        mock.patch.object(ClientAuthentication, "apply", side_effect=bug),
        caplog.at_level(logging.DEBUG, "resource_guard"),
        pytest.raises(IntrospectionUnavailableError, match="unexpected RuntimeError: a bug"),
    ):
        await verifier.verify(issuer.issue_opaque())
    assert "Traceback" in caplog.text


def app_with(verifier: IntrospectionVerifier) -> BearerAuthMiddleware:
    async def orders(request: Request) -> JSONResponse:
        token = get_access_token(request)
        assert token is not None
        return JSONResponse({"sub": token.subject, "scopes": sorted(token.scopes)})

    return BearerAuthMiddleware(
        Starlette(routes=[Route("/orders", orders)]), verifier=verifier, manage_verifier=False
    )


async def test_the_middleware_serves_opaque_tokens(
    issuer: FakeIssuer, verifier: IntrospectionVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_with(verifier)
    token = issuer.issue_opaque("alice", scopes=["orders:read"])
    with caplog.at_level(logging.DEBUG, "resource_guard"):
        for _ in range(3):
            reply = await call(app, headers=bearer(token))
            assert (reply.status, reply.json()) == (
                200,
                {"sub": "alice", "scopes": ["orders:read"]},
            )
        refused = await call(app, headers=bearer("unknown-token"))
        assert refused.status == 401
        assert b'error="invalid_token"' in (refused.header(b"www-authenticate") or b"")
        issuer.fault("status", endpoint="introspection", status=500)
        down = await call(app, headers=bearer(issuer.issue_opaque()))
    assert down.status == 503
    assert int(down.header(b"retry-after") or b"0") >= 1
    assert issuer.introspection_count == 3
    assert token not in caplog.text
    assert "unknown-token" not in caplog.text


async def test_after_the_cooldown_one_call_probes_the_endpoint(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    """Once the cooldown is over, a burst of new tokens makes one call, not one each (no
    retry storm on an endpoint coming back); its success lets every token through again."""
    verifier = make_verifier(cooldown=2)
    issuer.fault("status", endpoint="introspection", status=503)
    with pytest.raises(IntrospectionUnavailableError):
        await verifier.verify(issuer.issue_opaque())
    issuer.clear_faults()
    issuer.fault("slow", endpoint="introspection", delay=0.2)
    clock.advance(3)
    tokens = [issuer.issue_opaque(f"user-{n}") for n in range(5)]
    outcomes = await asyncio.gather(
        *(verifier.verify(token) for token in tokens), return_exceptions=True
    )
    assert getattr(outcomes[0], "subject", None) == "user-0"
    for refused in outcomes[1:]:
        assert isinstance(refused, IntrospectionUnavailableError)
        assert "probing" in refused.message
        assert refused.retry_after == 1
    assert issuer.introspection_count == 2
    issuer.clear_faults()
    recovered = await asyncio.gather(*(verifier.verify(token) for token in tokens[1:]))
    assert [access.subject for access in recovered] == ["user-1", "user-2", "user-3", "user-4"]
    assert issuer.introspection_count == 6
