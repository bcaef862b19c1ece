"""Why a request was refused: the decision log, the on_decision hook, readiness and
fail-fast start-up (issue 13, part 3)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import resource_guard
from resource_guard import (
    AccessToken,
    BearerAuthMiddleware,
    Decision,
    KeyFetch,
    KeysUnavailableError,
    TokenVerifier,
)
from resource_guard.fastapi import current_token, require_scopes
from resource_guard.starlette import require_scopes as starlette_require_scopes
from resource_guard.testing import FakeIssuer, generate_key
from tests import asgi_client
from tests.docblocks import python_blocks
from tests.helpers import ORDERS_AUDIENCE

DECISIONS = "resource_guard.decisions"


async def orders(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@starlette_require_scopes("orders:write")
async def write_orders(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def guarded(
    verifier: TokenVerifier, hook: Callable[[Decision], object] | None, **options: Any
) -> BearerAuthMiddleware:
    app = Starlette(routes=[Route("/orders", orders), Route("/write", write_orders)])
    return BearerAuthMiddleware(
        app, verifier=verifier, manage_verifier=False, on_decision=hook, **options
    )


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


@pytest.fixture
def events() -> list[Decision]:
    return []


@pytest.fixture
def decisions_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="resource_guard")
    return caplog


def refusal_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == DECISIONS and r.levelno == logging.INFO]


# -- the table of refusals ----------------------------------------------------------------

FOREIGN = generate_key("ES256", kid="foreign")


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _case(
    make: Callable[[FakeIssuer], tuple[list[tuple[bytes, bytes]], bytes]],
    status: int,
    reason: str,
    details: dict[str, str] | None = None,
    verified: bool = False,
) -> tuple[Any, ...]:
    return (make, status, reason, details or {}, verified)


CASES = {
    "no-credentials": _case(lambda fake: ([], b""), 401, "missing_token"),
    "two-headers": _case(
        lambda fake: ([*bearer(fake.mint()), *bearer(fake.mint())], b""),
        400,
        "invalid_request",
        {"problem": "duplicate_authorization"},
    ),
    "query-and-header": _case(
        lambda fake: (bearer(fake.mint()), b"access_token=x"),
        400,
        "invalid_request",
        {"problem": "two_methods"},
    ),
    "malformed-jwt": _case(lambda fake: (bearer("abc.def"), b""), 401, "malformed_token"),
    "alg-not-allowed": _case(
        lambda fake: (
            bearer(f"{_segment({'alg': 'HS256', 'kid': 'k1'})}.{_segment({})}.c2ln"),
            b"",
        ),
        401,
        "unsupported_algorithm",
    ),
    "bad-signature": _case(
        lambda fake: (bearer(fake.mint(key=FOREIGN, kid=fake.current_key.kid)), b""),
        401,
        "invalid_signature",
    ),
    "expired": _case(
        lambda fake: (bearer(fake.mint_expired(client_id="svc-1")), b""),
        401,
        "token_expired",
        {"claim": "exp", "leeway": "30"},
        verified=True,
    ),
    "wrong-audience": _case(
        lambda fake: (bearer(fake.mint(audience="api://billing", client_id="svc-1")), b""),
        401,
        "invalid_audience",
        {"expected_aud": ORDERS_AUDIENCE, "actual_aud": "api://billing"},
        verified=True,
    ),
    "wrong-issuer": _case(
        lambda fake: (
            bearer(fake.mint(claims={"iss": "https://evil.test"}, client_id="svc-1")),
            b"",
        ),
        401,
        "invalid_issuer",
        {"actual_iss": "https://evil.test"},
        verified=True,
    ),
    "wrong-typ": _case(
        lambda fake: (bearer(fake.mint(typ="dpop+jwt", client_id="svc-1")), b""),
        401,
        "invalid_token_type",
        {"typ": "dpop+jwt"},
        verified=True,
    ),
}


@pytest.mark.parametrize(
    ("make", "status", "reason", "details", "verified"), CASES.values(), ids=CASES.keys()
)
async def test_every_refusal_is_logged_at_info_and_handed_to_the_hook(
    fake: FakeIssuer,
    verifier: TokenVerifier,
    events: list[Decision],
    decisions_log: pytest.LogCaptureFixture,
    make: Callable[[FakeIssuer], tuple[list[tuple[bytes, bytes]], bytes]],
    status: int,
    reason: str,
    details: dict[str, str],
    verified: bool,
) -> None:
    headers, query = make(fake)
    result = await asgi_client.call(guarded(verifier, events.append), headers=headers, query=query)
    assert result.status == status
    [event] = events
    assert (event.outcome, event.status, event.reason) == ("refused", status, reason)
    assert (event.method, event.path, event.decided_by) == ("GET", "/orders", "middleware")
    assert details.items() <= event.details.items()
    assert event.duration is not None
    assert event.duration >= 0
    [record] = refusal_records(decisions_log)
    assert record.__dict__["decision"] == event
    assert f"refused {reason} ({status}) GET /orders" in record.getMessage()
    for name, value in details.items():
        assert f"{name}={value!r}" in record.getMessage()
    if verified:  # a refusal after the signature verified names the caller
        assert (event.subject, event.client_id) == ("user-123", "svc-1")
        assert event.kid == fake.current_key.kid
        assert event.alg == "ES256"
    else:
        assert event.subject is None
        assert event.client_id is None
    for _, header in headers:  # never the token, never its signature
        token = header.decode().removeprefix("Bearer ")
        for part in (token, *token.split(".")[1:]):
            if len(part) > 8:
                assert part not in decisions_log.text


async def test_an_expired_token_shows_exp_against_now(
    fake: FakeIssuer, verifier: TokenVerifier, events: list[Decision]
) -> None:
    token = fake.mint_expired(ago=3600)
    await asgi_client.call(guarded(verifier, events.append), headers=bearer(token))
    details = events[0].details
    assert int(details["now"]) - int(details["exp"]) >= 3600


async def test_keys_unavailable_is_refused_with_503_and_its_own_code(
    fake: FakeIssuer, verifier: TokenVerifier, events: list[Decision]
) -> None:
    fake.fault("status", endpoint="jwks", status=503)
    app = guarded(verifier, events.append)
    result = await asgi_client.call(app, headers=bearer(fake.mint()))
    assert result.status == 503
    assert (events[0].reason, events[0].status) == ("keys_unavailable", 503)
    assert "retry_after" in events[0].details


async def test_a_success_is_logged_at_debug_with_who_and_how(
    fake: FakeIssuer,
    verifier: TokenVerifier,
    events: list[Decision],
    decisions_log: pytest.LogCaptureFixture,
) -> None:
    app = guarded(verifier, events.append)
    token = fake.mint(client_id="svc-1")
    assert (await asgi_client.call(app, headers=bearer(token))).status == 200
    assert (await asgi_client.call(app, headers=bearer(token))).status == 200
    assert [(e.outcome, e.reason, e.status) for e in events] == [
        ("allowed", "verified", None),
        ("allowed", "cached", None),
    ]
    assert events[0].client_id == "svc-1"
    assert events[0].subject == "user-123"
    debug = [r for r in decisions_log.records if r.name == DECISIONS]
    assert [r.levelno for r in debug] == [logging.DEBUG, logging.DEBUG]
    assert token not in decisions_log.text


async def test_a_failing_hook_changes_nothing_about_the_response(
    fake: FakeIssuer, verifier: TokenVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    def hook(decision: Decision) -> None:
        raise RuntimeError("the metrics backend is down")

    app = guarded(verifier, hook)
    with caplog.at_level(logging.ERROR, logger=DECISIONS):
        assert (await asgi_client.call(app, headers=bearer(fake.mint()))).status == 200
        assert (await asgi_client.call(app, headers=bearer("x.y.z"))).status == 401
    assert [r.levelno for r in caplog.records if r.name == DECISIONS] == [logging.ERROR] * 2
    assert "on_decision hook failed (RuntimeError)" in caplog.text


def test_the_hook_must_be_callable(verifier: TokenVerifier) -> None:
    with pytest.raises(TypeError, match="on_decision"):
        BearerAuthMiddleware(Starlette(), verifier=verifier, on_decision="log")  # type: ignore[arg-type]


async def test_no_event_is_built_when_nobody_listens(
    fake: FakeIssuer, verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path: no hook, DEBUG off: an allowed request builds no Decision."""
    built: list[object] = []

    def spy(*args: Any, **kwargs: Any) -> Decision:
        built.append(args)
        return Decision(*args, **kwargs)

    monkeypatch.setattr(resource_guard.middleware, "Decision", spy)
    logging.getLogger(DECISIONS).setLevel(logging.INFO)
    try:
        app = guarded(verifier, None)
        token = fake.mint()
        for _ in range(2):
            assert (await asgi_client.call(app, headers=bearer(token))).status == 200
    finally:
        logging.getLogger(DECISIONS).setLevel(logging.NOTSET)
    assert built == []


# -- refusals decided by a route ------------------------------------------------------------


async def test_a_fastapi_scope_refusal_names_required_and_held_scopes(
    fake: FakeIssuer,
    verifier: TokenVerifier,
    events: list[Decision],
    decisions_log: pytest.LogCaptureFixture,
) -> None:
    api = FastAPI()

    @api.get("/orders", dependencies=[require_scopes("orders:read", "orders:write")])
    async def read(token: AccessToken = Depends(current_token)) -> dict[str, bool]:
        return {"ok": True}

    app = BearerAuthMiddleware(
        api, verifier=verifier, manage_verifier=False, on_decision=events.append
    )
    token = fake.mint(scopes="orders:read profile", client_id="svc-1")
    result = await asgi_client.call(app, headers=bearer(token))
    assert result.status == 403
    assert [(e.outcome, e.reason, e.decided_by) for e in events] == [
        ("allowed", "verified", "middleware"),
        ("refused", "insufficient_scope", "route"),
    ]
    refusal = events[1]
    assert refusal.status == 403
    assert refusal.client_id == "svc-1"
    assert dict(refusal.details) == {
        "required": "orders:read orders:write",
        "held": "orders:read profile",
        "match": "all",
    }
    [record] = refusal_records(decisions_log)
    assert "insufficient_scope (403) GET /orders by the route" in record.getMessage()
    assert "required='orders:read orders:write'" in record.getMessage()


async def test_a_starlette_scope_refusal_is_reported_too(
    fake: FakeIssuer, verifier: TokenVerifier, events: list[Decision]
) -> None:
    app = guarded(verifier, events.append)
    result = await asgi_client.call(app, path="/write", headers=bearer(fake.mint()))
    assert result.status == 403
    assert events[-1].reason == "insufficient_scope"
    assert events[-1].path == "/write"


async def test_a_route_refusal_under_a_root_path_names_the_routed_path(
    fake: FakeIssuer, verifier: TokenVerifier, events: list[Decision]
) -> None:
    """Behind a proxy prefix (root_path), the decision names the path the app routes on."""
    app = guarded(verifier, events.append)
    result = await asgi_client.call(
        app, path="/api/write", root_path="/api", headers=bearer(fake.mint())
    )
    assert result.status == 403
    assert (events[-1].reason, events[-1].path) == ("insufficient_scope", "/write")


async def test_a_route_refusal_is_logged_without_a_hook(
    fake: FakeIssuer, verifier: TokenVerifier, decisions_log: pytest.LogCaptureFixture
) -> None:
    app = guarded(verifier, None)
    assert (await asgi_client.call(app, path="/write", headers=bearer(fake.mint()))).status == 403
    [record] = refusal_records(decisions_log)
    assert "held=''" in record.getMessage()


async def test_anonymous_requests_are_allowed_then_refused_by_the_route(
    verifier: TokenVerifier, events: list[Decision]
) -> None:
    app = guarded(verifier, events.append, allow_anonymous=True)
    assert (await asgi_client.call(app, path="/write")).status == 401
    assert [(e.outcome, e.reason) for e in events] == [
        ("allowed", "anonymous"),
        ("refused", "missing_token"),
    ]


async def test_public_paths_make_no_decision(
    verifier: TokenVerifier, events: list[Decision]
) -> None:
    app = guarded(verifier, events.append, public_paths=("/orders",))
    assert (await asgi_client.call(app)).status == 200
    assert events == []


def test_a_decision_is_immutable() -> None:
    decision = Decision("refused", "token_expired", 401, "GET", "/orders")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.reason = "ok"  # type: ignore[misc]
    assert not hasattr(decision, "__dict__")
    assert decision.refused
    assert dict(decision.details) == {}


# -- readiness -------------------------------------------------------------------------------


def _readiness_example() -> str:
    [block] = [
        b for b in python_blocks() if b.path.name == "operations.md" and "async def ready" in b.code
    ]
    return block.code


async def test_the_documented_readiness_route_follows_the_keys(
    fake: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[TokenVerifier] = []

    def fake_verifier(issuer: str, audience: str, **options: Any) -> TokenVerifier:
        made.append(TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client()))
        return made[-1]

    monkeypatch.setattr(resource_guard, "TokenVerifier", fake_verifier)
    namespace: dict[str, Any] = {"__name__": "readiness_example"}
    exec(compile(_readiness_example(), "operations.md", "exec"), namespace)
    app = namespace["app"]
    assert (await asgi_client.call(app, path="/readyz")).status == 503  # not started
    async with asgi_client.lifespan(app):
        ready = await asgi_client.call(app, path="/readyz")
        assert ready.status == 200
        assert ready.json()["keys"] == "ok"
        assert (await asgi_client.call(app, path="/livez")).status == 200
    status = made[0].key_source.status()
    assert status.usable
    assert status.fresh
    assert status.last_failure is None


# -- fail fast on a misconfiguration, never on an outage -------------------------------------

MISCONFIGURATIONS = {
    "discovery-404": lambda fake: (
        fake.fault("status", endpoint="discovery", status=404),
        fake.fault("status", endpoint="oauth_metadata", status=404),
    ),
    "issuer-mismatch": lambda fake: fake.metadata_overrides.update(issuer="https://evil.test"),
    "no-usable-key": lambda fake: fake.fault("no_keys", endpoint="jwks"),
    "jwks-404": lambda fake: fake.fault("status", endpoint="jwks", status=404),
}


async def start_up(app: Any) -> dict[str, Any]:
    """Send lifespan.startup; the server's reply (the app must end by itself on failure)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await asyncio.wait_for(app(scope, inbox.get, outbox.put), timeout=5)
    reply: dict[str, Any] = outbox.get_nowait()
    assert outbox.empty()
    return reply


@pytest.fixture
def own_fake() -> FakeIssuer:
    return FakeIssuer(audience=ORDERS_AUDIENCE, algorithm="ES256")


@pytest.mark.parametrize("misconfigure", MISCONFIGURATIONS.values(), ids=MISCONFIGURATIONS.keys())
async def test_fail_fast_refuses_to_start_on_a_misconfiguration(
    own_fake: FakeIssuer,
    misconfigure: Callable[[FakeIssuer], object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    misconfigure(own_fake)
    verifier = TokenVerifier(
        own_fake.issuer, ORDERS_AUDIENCE, http_client=own_fake.async_client(), fail_fast=True
    )
    app = BearerAuthMiddleware(Starlette(), verifier=verifier)
    with caplog.at_level(logging.ERROR, logger="resource_guard"):
        reply = await start_up(app)
    assert reply["type"] == "lifespan.startup.failed"
    assert "misconfiguration: this will not fix itself" in reply["message"]
    with pytest.raises(KeysUnavailableError) as caught:
        await verifier.start()
    assert caught.value.permanent
    fetch_lines = [r for r in caplog.records if r.name == "resource_guard.jwks"]
    assert "misconfiguration: this will not fix itself" in fetch_lines[0].getMessage()
    assert any(r.name == "resource_guard.middleware" for r in caplog.records)
    assert verifier.key_source.status().last_failure == "misconfiguration"


@pytest.mark.parametrize("misconfigure", MISCONFIGURATIONS.values(), ids=MISCONFIGURATIONS.keys())
async def test_without_fail_fast_a_misconfiguration_is_logged_as_one(
    own_fake: FakeIssuer,
    misconfigure: Callable[[FakeIssuer], object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    misconfigure(own_fake)
    verifier = TokenVerifier(own_fake.issuer, ORDERS_AUDIENCE, http_client=own_fake.async_client())
    with caplog.at_level(logging.ERROR, logger="resource_guard.jwks"):
        async with verifier:
            status = verifier.key_source.status()
    assert not status.usable
    assert status.last_failure == "misconfiguration"
    assert "misconfiguration: this will not fix itself, check issuer and jwks_uri" in caplog.text


@pytest.mark.parametrize("endpoints", [("discovery", "oauth_metadata"), ("jwks",)])
async def test_an_idp_outage_never_fails_fast_and_is_logged_as_an_outage(
    own_fake: FakeIssuer, endpoints: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    for endpoint in endpoints:
        own_fake.fault("status", endpoint=endpoint, status=503)
    verifier = TokenVerifier(
        own_fake.issuer, ORDERS_AUDIENCE, http_client=own_fake.async_client(), fail_fast=True
    )
    app = BearerAuthMiddleware(Starlette(), verifier=verifier)
    with caplog.at_level(logging.ERROR, logger="resource_guard.jwks"):
        async with asgi_client.lifespan(app):
            status = verifier.key_source.status()
    assert not status.usable
    assert status.last_failure == "outage"
    assert "no usable keys: requests get 503; outage: retrying" in caplog.text
    assert "misconfiguration" not in caplog.text


async def test_an_app_that_answers_its_own_failed_start_up_is_not_heard_twice(
    own_fake: FakeIssuer,
) -> None:
    """Some frameworks catch the failed receive() and send lifespan.startup.failed
    themselves: the server gets the middleware's one answer, nothing after it."""
    own_fake.fault("status", endpoint="jwks", status=404)
    verifier = TokenVerifier(
        own_fake.issuer, ORDERS_AUDIENCE, http_client=own_fake.async_client(), fail_fast=True
    )

    async def polite_app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": f"app: {exc}"})

    reply = await start_up(BearerAuthMiddleware(polite_app, verifier=verifier))
    assert reply["type"] == "lifespan.startup.failed"
    assert not reply["message"].startswith("app: ")


def test_a_key_fetch_listener_must_be_callable(fake: FakeIssuer) -> None:
    verifier = TokenVerifier(fake.issuer, ORDERS_AUDIENCE)
    with pytest.raises(TypeError, match="listener must be callable"):
        verifier.key_source.add_listener("print")  # type: ignore[arg-type]


def test_fail_fast_must_be_a_bool(fake: FakeIssuer) -> None:
    with pytest.raises(TypeError, match="fail_fast"):
        TokenVerifier(fake.issuer, ORDERS_AUDIENCE, fail_fast="yes")  # type: ignore[arg-type]


# -- key-source events for metrics ----------------------------------------------------------


async def test_key_fetch_listeners_hear_every_attempt(own_fake: FakeIssuer) -> None:
    heard: list[KeyFetch] = []
    verifier = TokenVerifier(own_fake.issuer, ORDERS_AUDIENCE, http_client=own_fake.async_client())
    source = verifier.key_source
    source.add_listener(heard.append)
    source.add_listener(lambda event: 1 / 0)  # a failing listener changes nothing
    async with verifier:
        own_fake.fault("status", endpoint="jwks", status=503)
        assert await source.refresh() is False
    source.remove_listener(heard.append)
    source.remove_listener(heard.append)  # not added any more: nothing happens
    assert [(e.ok, e.keys, e.failure, e.usable) for e in heard] == [
        (True, 1, None, True),
        (False, 1, "outage", True),
    ]
    assert heard[1].error is not None
    assert "503" in heard[1].error
    assert all(e.duration >= 0 for e in heard)
