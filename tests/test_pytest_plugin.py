"""The pytest plugin: fixtures as documented in docs/pytest-plugin.md.

Behaviour of the fixtures is tested here directly (the plugin is loaded through its
``pytest11`` entry point); what a user's test run looks like (passing and failing) is
tested with ``pytester`` in-process.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from typing import Any

import fastapi  # noqa: F401 - imported once here: FastAPI breaks when pytester re-imports it
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from resource_guard import (
    ExpiredTokenError,
    KeysUnavailableError,
    TokenVerifier,
    UnknownKeyError,
)
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.starlette import require_scopes
from resource_guard.testing import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    FakeClock,
    FakeIssuer,
    assert_status,
    explain_response,
)
from resource_guard.testing import pytest_plugin as plugin
from resource_guard.testing.pytest_plugin import (
    AppClientFactory,
    IssuerFactory,
    VerifierFactory,
)

pytest_plugins = ["pytester"]

INI = """\
[pytest]
filterwarnings = error
asyncio_default_fixture_loop_scope = function
"""


def verify(verifier: TokenVerifier, token: str) -> Any:
    return asyncio.run(verifier.verify(token))


@require_scopes("orders:read")
async def list_orders(request: Request) -> JSONResponse:
    return JSONResponse([])


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def orders_app(verifier: TokenVerifier | None = None) -> Starlette:
    """A tiny protected app, built from the environment like most apps are."""
    return Starlette(
        routes=[Route("/orders", list_orders), Route("/health", health)],
        middleware=[
            Middleware(
                BearerAuthMiddleware,
                verifier=verifier or TokenVerifier.from_env(),
                public_paths=("/health",),
            )
        ],
    )


# -- registration ---------------------------------------------------------------------------


def test_the_plugin_is_registered_through_its_pytest11_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    ours = [ep for ep in entry_points if ep.name == "resource_guard"]
    assert [ep.value for ep in ours] == ["resource_guard.testing.pytest_plugin"]
    assert ours[0].load() is plugin


def test_the_marker_is_registered(pytestconfig: pytest.Config) -> None:
    markers = pytestconfig.getini("markers")
    assert any(line.startswith("fake_issuer(") for line in markers)


# -- fake_clock -----------------------------------------------------------------------------


def test_fake_clock_stands_still_at_the_real_time_until_moved(fake_clock: FakeClock) -> None:
    import time

    start = fake_clock()
    assert abs(start - time.time()) < 60
    assert fake_clock() == start
    assert fake_clock.advance(90) == start + 90
    assert fake_clock.now == start + 90
    fake_clock.now = 1_800_000_000
    assert fake_clock() == 1_800_000_000.0
    assert fake_clock.datetime.year == 2027
    assert repr(fake_clock) == "FakeClock(1800000000.0)"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("60", TypeError),
        (True, TypeError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
    ],
    ids=["str", "bool", "nan", "inf"],
)
def test_fake_clock_refuses_what_is_not_seconds(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        FakeClock(start=value)
    clock = FakeClock(0)
    with pytest.raises(error):
        clock.advance(value)
    with pytest.raises(error):
        clock.now = value
    assert clock() == 0.0


def test_issuer_and_verifier_share_the_clock(
    fake_issuer: FakeIssuer, token_verifier: TokenVerifier, fake_clock: FakeClock
) -> None:
    token = fake_issuer.mint(expires_in=60)
    claims = verify(token_verifier, token).claims
    assert claims["iat"] == int(fake_clock())
    fake_clock.advance(60 + 30)  # exp + leeway: still fine
    verify(token_verifier, token)
    fake_clock.advance(1)
    with pytest.raises(ExpiredTokenError):
        verify(token_verifier, token)


# -- fake_issuer, the marker, the factory -----------------------------------------------------


def test_fake_issuer_defaults(fake_issuer: FakeIssuer, fake_clock: FakeClock) -> None:
    assert fake_issuer.issuer == DEFAULT_ISSUER
    assert fake_issuer.audience == DEFAULT_AUDIENCE
    assert fake_issuer.algorithm == "RS256"
    assert fake_issuer.clock is fake_clock
    assert fake_issuer.port is None
    assert len(fake_issuer.keys) == 1  # the pooled key only, no extra generated one


def test_the_first_issuer_of_every_test_reuses_one_session_key(
    fake_issuer: FakeIssuer, fake_issuer_factory: IssuerFactory
) -> None:
    again = fake_issuer_factory(DEFAULT_ISSUER)
    assert again.current_key.kid != fake_issuer.current_key.kid
    assert fake_issuer_factory(algorithm="RS256").current_key.kid not in {
        fake_issuer.current_key.kid,
        again.current_key.kid,
    }


@pytest.mark.fake_issuer(audience="api://orders", algorithm="ES256")
def test_the_marker_sets_the_defaults_of_every_issuer(
    fake_issuer: FakeIssuer, fake_issuer_factory: IssuerFactory
) -> None:
    assert (fake_issuer.audience, fake_issuer.algorithm) == ("api://orders", "ES256")
    other = fake_issuer_factory(audience="api://other")
    assert (other.audience, other.algorithm) == ("api://other", "ES256")


@pytest.mark.fake_issuer("https://idp.example.com/oauth2/default")
def test_the_marker_takes_the_issuer_positionally(fake_issuer: FakeIssuer) -> None:
    assert fake_issuer.issuer == "https://idp.example.com/oauth2/default"
    assert fake_issuer.jwks_uri == "https://idp.example.com/oauth2/default/jwks.json"


def test_the_factory_numbers_unnamed_issuers_and_shares_the_clock(
    fake_issuer_factory: IssuerFactory, fake_clock: FakeClock
) -> None:
    first, second = fake_issuer_factory(), fake_issuer_factory(algorithm="EdDSA")
    named = fake_issuer_factory("https://partner.example.test", audience=("a", "b"))
    assert first.issuer == "https://issuer-1.example.test"
    assert second.issuer == "https://issuer-2.example.test"
    assert second.algorithm == "EdDSA"
    assert named.audience == ("a", "b")
    assert {fake.clock for fake in (first, second, named)} == {fake_clock}


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"algorithm": "HS256"}, ValueError),
        ({"algorithm": 256}, TypeError),
        ({"serve": "yes"}, TypeError),
    ],
    ids=["hmac-algorithm", "algorithm-not-str", "serve-not-bool"],
)
def test_the_factory_checks_its_options(
    fake_issuer_factory: IssuerFactory, options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        fake_issuer_factory(**options)


def test_served_issuers_stop_when_the_test_ends(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import httpx

        seen = {}

        def test_serve(fake_issuer_factory):
            fake = fake_issuer_factory(serve=True)
            seen["fake"] = fake
            assert fake.issuer == f"http://127.0.0.1:{fake.port}"
            assert httpx.get(fake.jwks_uri).json() == fake.jwks()

        def test_stopped_after():
            assert seen["fake"].port is None
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=2)


def test_fake_issuer_server_is_a_loopback_issuer_of_its_own(
    fake_issuer_server: FakeIssuer, fake_issuer: FakeIssuer
) -> None:
    assert fake_issuer_server is not fake_issuer
    assert fake_issuer_server.issuer == f"http://127.0.0.1:{fake_issuer_server.port}"
    assert httpx.get(fake_issuer_server.discovery_url).json()["issuer"] == (
        fake_issuer_server.issuer
    )
    assert fake_issuer_server.current_key.kid != fake_issuer.current_key.kid


@pytest.mark.parametrize(
    "marker",
    [
        'pytest.mark.fake_issuer(colour="blue")',
        'pytest.mark.fake_issuer("https://a.test", issuer="https://b.test")',
        'pytest.mark.fake_issuer("https://a.test", "api://x")',
    ],
    ids=["unknown-option", "issuer-twice", "two-positionals"],
)
def test_a_wrong_marker_is_a_usage_error(pytester: pytest.Pytester, marker: str) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        f"""
        import pytest

        @{marker}
        def test_it(fake_issuer):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*UsageError*@pytest.mark.fake_issuer*"])


# -- verifiers ----------------------------------------------------------------------------------


def test_token_verifier_trusts_fake_issuer_in_process(
    fake_issuer: FakeIssuer, token_verifier: TokenVerifier
) -> None:
    assert token_verifier.issuer == fake_issuer.issuer
    assert token_verifier.audiences == (DEFAULT_AUDIENCE,)
    token = verify(token_verifier, fake_issuer.mint("alice", scopes=["orders:read"]))
    assert (token.subject, token.scopes) == ("alice", {"orders:read"})
    assert fake_issuer.jwks_fetches == 1


def test_token_verifier_factory_options_win(
    fake_issuer: FakeIssuer, token_verifier_factory: VerifierFactory, fake_clock: FakeClock
) -> None:
    verifier = token_verifier_factory(leeway=0, audience="api://other")
    assert verifier.audiences == ("api://other",)
    token = fake_issuer.mint(audience="api://other", expires_in=10)
    fake_clock.advance(11)
    with pytest.raises(ExpiredTokenError):
        verify(verifier, token)


def test_token_verifier_factory_fetches_a_served_issuer_over_http(
    fake_issuer_server: FakeIssuer, token_verifier_factory: VerifierFactory
) -> None:
    verifier = token_verifier_factory(fake_issuer_server)
    assert verify(verifier, fake_issuer_server.mint()).issuer == fake_issuer_server.issuer
    assert fake_issuer_server.jwks_fetches == 1


def test_token_verifier_factory_wants_a_fake_issuer(
    token_verifier_factory: VerifierFactory,
) -> None:
    with pytest.raises(TypeError, match="FakeIssuer"):
        token_verifier_factory("https://issuer.example.test")  # type: ignore[arg-type]


def test_several_issuers_each_with_its_verifier(
    fake_issuer: FakeIssuer,
    token_verifier: TokenVerifier,
    fake_issuer_factory: IssuerFactory,
    token_verifier_factory: VerifierFactory,
) -> None:
    partner = fake_issuer_factory(algorithm="ES256")
    partner_verifier = token_verifier_factory(partner)
    verify(partner_verifier, partner.mint())
    with pytest.raises(UnknownKeyError):
        verify(token_verifier, partner.mint())
    with pytest.raises(UnknownKeyError):
        verify(partner_verifier, fake_issuer.mint())


def test_key_rotation_mid_test(
    fake_issuer: FakeIssuer, token_verifier: TokenVerifier, fake_clock: FakeClock
) -> None:
    async def scenario() -> None:
        async with token_verifier:
            old_key = fake_issuer.current_key
            old_token = fake_issuer.mint(expires_in=3600)
            await token_verifier.verify(old_token)
            new_key = fake_issuer.rotate_keys()
            with pytest.raises(UnknownKeyError):  # inside the cooldown: no refetch
                await token_verifier.verify(fake_issuer.mint())
            fake_clock.advance(30)
            assert (await token_verifier.verify(fake_issuer.mint())).key_id == new_key.kid
            await token_verifier.verify(old_token)  # the old key is still published
            fake_issuer.remove_key(old_key.kid)
            fake_clock.advance(300)  # the keys' age: the next request refreshes them
            await token_verifier.verify(fake_issuer.mint())
            await token_verifier.key_source.refresh()  # joins that background refresh
            with pytest.raises(UnknownKeyError):
                await token_verifier.verify(old_token)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("kind", "options"),
    [("status", {"status": 503}), ("garbage", {}), ("no_keys", {}), ("slow", {"delay": 5})],
    ids=["down", "garbage", "no-keys", "slow"],
)
def test_faults_make_verification_unavailable(
    fake_issuer: FakeIssuer,
    token_verifier_factory: VerifierFactory,
    kind: str,
    options: dict[str, Any],
) -> None:
    fake_issuer.fault(kind, **options)
    verifier = token_verifier_factory(timeout=0.2)
    with pytest.raises(KeysUnavailableError):
        verify(verifier, fake_issuer.mint())


# -- apps built from the environment ---------------------------------------------------------


def test_fake_issuer_env_points_from_env_at_the_fake(
    fake_issuer_env: FakeIssuer, fake_issuer: FakeIssuer, fake_clock: FakeClock
) -> None:
    import os

    assert fake_issuer_env is fake_issuer
    assert os.environ["RESOURCE_GUARD_ISSUER"] == fake_issuer.issuer
    assert os.environ["RESOURCE_GUARD_AUDIENCE"] == DEFAULT_AUDIENCE
    assert os.environ["RESOURCE_GUARD_JWKS_URI"] == fake_issuer.jwks_uri
    verifier = TokenVerifier.from_env(leeway=0)
    token = fake_issuer.mint(expires_in=5)
    verify(verifier, token)
    fake_clock.advance(6)  # the verifier runs on fake_clock
    with pytest.raises(ExpiredTokenError):
        verify(verifier, token)


def test_fake_issuer_env_protects_a_whole_app(
    fake_issuer_env: FakeIssuer, app_client: AppClientFactory
) -> None:
    client = app_client(orders_app())
    headers = fake_issuer_env.auth_headers(scopes=["orders:read"])
    assert_status(client.get("/orders", headers=headers), 200)
    assert_status(client.get("/orders", headers=fake_issuer_env.auth_headers()), 403)
    assert_status(client.get("/orders"), 401)
    assert_status(client.get("/health"), 200)
    assert fake_issuer_env.jwks_fetches == 1  # fetched once, at start-up
    expired = client.get(
        "/orders", headers={"Authorization": f"Bearer {fake_issuer_env.mint_expired()}"}
    )
    assert explain_response(expired) == "401 invalid_token: the token expired"
    assert explain_response(client.get("/orders")) == (
        "401 unauthorized: a bearer token is required"
    )


def test_fake_issuer_env_over_asgi_transport_without_lifespan(fake_issuer_env: FakeIssuer) -> None:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=orders_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(
                "/orders", headers=fake_issuer_env.auth_headers(scopes="orders:read")
            )

    assert_status(asyncio.run(call()), 200)


def test_an_outage_past_max_stale_answers_503(
    fake_issuer_env: FakeIssuer, fake_clock: FakeClock, app_client: AppClientFactory
) -> None:
    fake = fake_issuer_env
    client = app_client(orders_app())
    fake.fault("status", status=503)
    fake_clock.advance(3600)
    assert_status(client.get("/orders", headers=fake.auth_headers(scopes="orders:read")), 200)
    fake_clock.advance(86400)
    reply = client.get("/orders", headers=fake.auth_headers(scopes="orders:read"))
    assert_status(reply, 503)
    assert int(reply.headers["retry-after"]) >= 1


def test_from_env_is_restored_after_the_test(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import os
        from resource_guard import TokenVerifier

        original = TokenVerifier.from_env

        def test_patched(fake_issuer_env):
            assert TokenVerifier.from_env != original

        def test_restored():
            assert TokenVerifier.from_env == original
            assert TokenVerifier.from_env.__func__.__qualname__ == "TokenVerifier.from_env"
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=2)


# -- the issuer helpers -------------------------------------------------------------------------


def test_auth_headers_carry_a_minted_token(fake_issuer: FakeIssuer) -> None:
    headers = fake_issuer.auth_headers("bob", scopes=["a", "b"], claims={"tenant": "acme"})
    scheme, token = headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["scope"], claims["tenant"]) == ("bob", "a b", "acme")


def test_environ_joins_several_audiences(fake_issuer_factory: IssuerFactory) -> None:
    fake = fake_issuer_factory(audience=("api://a", "api://b"))
    assert fake.environ() == {
        "RESOURCE_GUARD_ISSUER": "https://issuer-1.example.test",
        "RESOURCE_GUARD_AUDIENCE": "api://a,api://b",
        "RESOURCE_GUARD_JWKS_URI": "https://issuer-1.example.test/jwks.json",
    }


# -- assert_status and explain_response ---------------------------------------------------------


def challenge_response(
    status: int, challenge: str | None, body: Any = None, **headers: str
) -> httpx.Response:
    if challenge is not None:
        headers["www-authenticate"] = challenge
    content = json.dumps(body).encode() if body is not None else b""
    request = httpx.Request("GET", "http://api.test/orders", headers={"authorization": "Bearer x"})
    return httpx.Response(status, headers=headers, content=content, request=request)


def request_with_token(claims: dict[str, Any]) -> httpx.Request:
    import base64

    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return httpx.Request(
        "GET", "http://api.test/", headers={"authorization": f"Bearer e30.{payload}.c2ln"}
    )


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(
                403,
                headers={
                    "www-authenticate": 'Bearer realm="api", error="insufficient_scope", '
                    'error_description="the token lacks a required scope", scope="a b"'
                },
                request=request_with_token({"scope": "c", "scp": ["d"]}),
            ),
            '403 insufficient_scope: the token lacks a required scope; the route needs scope "a b";'
            ' the token has scope "c d" (read unverified)',
        ),
        (
            httpx.Response(
                401,
                headers={
                    "www-authenticate": 'Bearer realm="api", error="invalid_token", '
                    'error_description="the token \\"expired\\""'
                },
                request=request_with_token({}),
            ),
            '401 invalid_token: the token "expired"',
        ),
        (
            httpx.Response(401, headers={"www-authenticate": 'Bearer realm="api"'}),
            "401 no credentials: send 'Authorization: Bearer <token>'",
        ),
        (
            httpx.Response(
                503,
                json={"error": "temporarily_unavailable", "error_description": "try later"},
                headers={"retry-after": "30"},
            ),
            "503 temporarily_unavailable: try later; Retry-After: 30",
        ),
        (
            httpx.Response(
                403,
                json={"detail": {"error": "insufficient_scope"}},
                request=httpx.Request("GET", "http://t/"),
            ),
            "403 insufficient_scope",
        ),
        (httpx.Response(404, text="x" * 300), f"404; body {'x' * 200 + '...'!r}"),
        (httpx.Response(500, json=[1]), "500; body '[1]'"),
        (httpx.Response(204), "204"),
        (
            httpx.Response(
                403,
                request=httpx.Request("GET", "http://t/", headers={"authorization": "Basic eA=="}),
            ),
            "403",
        ),
        (
            httpx.Response(
                403,
                request=httpx.Request(
                    "GET", "http://t/", headers={"authorization": "Bearer a.!!.c"}
                ),
            ),
            "403",
        ),
        (
            httpx.Response(403, request=request_with_token([1])),  # type: ignore[arg-type]
            "403",
        ),
        (
            httpx.Response(401, headers={"www-authenticate": 'Basic realm="x"'}),
            "401",
        ),
        (httpx.Response(403, json={"error": "insufficient_scope"}), "403 insufficient_scope"),
        (
            httpx.Response(403, request=request_with_token({})),
            '403; the token has scope "(none)" (read unverified)',
        ),
    ],
    ids=[
        "insufficient-scope",
        "invalid-token-escaped",
        "no-credentials",
        "unavailable",
        "fastapi-detail-no-request",
        "long-body",
        "json-not-object",
        "empty",
        "basic-request",
        "undecodable-token",
        "claims-not-object",
        "basic-challenge",
        "no-request",
        "token-without-scopes",
    ],
)
def test_explain_response(response: httpx.Response, expected: str) -> None:
    assert explain_response(response) == expected


def test_assert_status_passes_silently_on_the_expected_status() -> None:
    assert_status(httpx.Response(200), 200)


def test_assert_status_explains_a_refusal() -> None:
    response = httpx.Response(401, headers={"www-authenticate": 'Bearer realm="api"'})
    with pytest.raises(AssertionError, match=r"^expected status 200, got 401 no credentials"):
        assert_status(response, 200)


@pytest.mark.parametrize("expected", ["200", True, 200.0], ids=["str", "bool", "float"])
def test_assert_status_wants_an_int(expected: Any) -> None:
    with pytest.raises(TypeError):
        assert_status(httpx.Response(200), expected)


# -- what a user's test run looks like -------------------------------------------------------

USER_APP = """
from fastapi import FastAPI

from resource_guard import TokenVerifier
from resource_guard.fastapi import require_scopes
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import assert_status


def create_app():
    app = FastAPI()
    app.add_middleware(BearerAuthMiddleware, verifier=TokenVerifier.from_env())

    @app.post("/orders", status_code=201, dependencies=[require_scopes("orders:write")])
    async def create_order():
        return {"id": 1}

    return app
"""


def run_user_tests(pytester: pytest.Pytester, tests: str) -> pytest.RunResult:
    pytester.makeini(INI)
    pytester.makepyfile(test_orders=USER_APP + tests)
    return pytester.runpytest_inprocess()


def test_a_users_test_with_documented_fixtures_passes(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
def test_creating_orders(fake_issuer_env, app_client):
    client = app_client(create_app())
    headers = fake_issuer_env.auth_headers(scopes=["orders:write"])
    assert_status(client.post("/orders", headers=headers), 201)
""",
    )
    result.assert_outcomes(passed=1)


def test_a_wrong_scope_test_fails_saying_which_scope_is_missing(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        """
def test_creating_orders(fake_issuer_env, app_client):
    client = app_client(create_app())
    headers = fake_issuer_env.auth_headers(scopes=["orders:read"])
    assert_status(client.post("/orders", headers=headers), 201)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            '>*assert_status(client.post("/orders", headers=headers), 201)',
            "E*AssertionError: expected status 201, got 403 insufficient_scope: the token lacks a "
            'required scope; the route needs scope "orders:write"; the token has scope '
            '"orders:read" (read unverified)',
        ]
    )
    assert "_assertions.py" not in result.stdout.str()  # the traceback stops at the user's line


def test_the_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    result = pytester.runpytest_inprocess("--fixtures")
    for name in (
        "fake_clock",
        "fake_issuer",
        "fake_issuer_env",
        "fake_issuer_factory",
        "fake_issuer_server",
        "app_client",
        "token_verifier",
        "token_verifier_factory",
    ):
        result.stdout.fnmatch_lines([f"{name} -- *pytest_plugin.py*"])


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("def test_it(fake_issuer): pass")
    result = pytester.runpytest_inprocess("-p", "no:resource_guard")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_issuer' not found*"])
