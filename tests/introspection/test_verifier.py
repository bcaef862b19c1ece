"""IntrospectionVerifier over loopback: what an answer must say for a token to be accepted,
the AccessToken it gives, and the options it checks at construction."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from resource_guard import (
    AccessToken,
    ExpiredTokenError,
    ImmatureTokenError,
    InactiveTokenError,
    IntrospectionUnavailableError,
    IntrospectionVerifier,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    MalformedTokenError,
    Verifier,
)
from resource_guard.testing import FakeClock, FakeIssuer
from tests.helpers import ORDERS_AUDIENCE

from .conftest import CLIENT_ID, CLIENT_SECRET, MakeVerifier


async def test_an_active_token_gives_an_access_token(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    token = issuer.issue_opaque("alice", scopes=["orders:read", "orders:write"], client_id="app")
    access = await verifier.verify(token)
    assert isinstance(access, AccessToken)
    assert access.subject == "alice"
    assert access.client_id == "app"
    assert access.scopes == {"orders:read", "orders:write"}
    assert access.issuer == issuer.issuer
    assert access.key_id is None
    assert access.claims["active"] is True
    assert access.expires_at == datetime.fromtimestamp(access.claims["exp"], UTC)
    assert verifier.introspection_endpoint == issuer.introspection_endpoint
    assert issuer.introspection_count == 1
    as_protocol: Verifier = verifier  # mypy holds it to the contract
    assert as_protocol.cached(token) is access


@pytest.mark.parametrize(
    "active",
    [True, "true", 1, 1.0, False, None, "missing", [True], {"value": True}],
    ids=["true", "string", "one", "float", "false", "null", "missing", "list", "object"],
)
async def test_only_the_json_value_true_is_active(
    issuer: FakeIssuer, verifier: IntrospectionVerifier, active: Any
) -> None:
    def answer(document: dict[str, Any]) -> dict[str, Any]:
        document = {**document, "active": active}
        if active == "missing":
            del document["active"]
        return document

    issuer.introspection_hook = answer
    token = issuer.issue_opaque()
    if active is True:
        assert (await verifier.verify(token)).subject == "user-123"
    else:
        with pytest.raises(InactiveTokenError) as caught:
            await verifier.verify(token)
        assert caught.value.description == "the token is not active"


async def test_an_unknown_or_expired_token_is_inactive(
    issuer: FakeIssuer, verifier: IntrospectionVerifier, clock: FakeClock
) -> None:
    with pytest.raises(InactiveTokenError):
        await verifier.verify("not-a-token-the-issuer-knows")
    token = issuer.issue_opaque(expires_in=60)
    clock.advance(61)
    with pytest.raises(InactiveTokenError):
        await verifier.verify(token)


@pytest.mark.parametrize(
    ("members", "error", "leeway"),
    [
        ({"exp": -100}, ExpiredTokenError, 30),
        ({"exp": -10}, None, 30),
        ({"exp": -10}, ExpiredTokenError, 0),
        ({"nbf": 100}, ImmatureTokenError, 30),
        ({"nbf": 10}, None, 30),
        ({"iat": 100}, ImmatureTokenError, 30),
        ({"iat": 10}, None, 30),
        ({"exp": "soon"}, InvalidClaimError, 30),
    ],
    ids=[
        "exp-past",
        "exp-within-leeway",
        "exp-no-leeway",
        "nbf-future",
        "nbf-within-leeway",
        "iat-future",
        "iat-within-leeway",
        "exp-not-a-number",
    ],
)
async def test_times_are_checked_with_leeway(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    clock: FakeClock,
    members: dict[str, Any],
    error: type[Exception] | None,
    leeway: float,
) -> None:
    """The fake answers for what it issued; the hook shifts the times relative to now."""
    now = clock()
    shifted = {
        name: now + value if isinstance(value, int) else value for name, value in members.items()
    }
    issuer.introspection_hook = lambda document: {**document, **shifted}
    verifier = make_verifier(leeway=leeway)
    token = issuer.issue_opaque()
    if error is None:
        await verifier.verify(token)
    else:
        with pytest.raises(error):
            await verifier.verify(token)


async def test_iss_when_present_must_be_the_issuer(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    token = issuer.issue_opaque(claims={"iss": "https://evil.test"})
    with pytest.raises(InvalidIssuerError):
        await verifier.verify(token)
    without = issuer.issue_opaque(omit=["iss"])
    assert (await verifier.verify(without)).issuer == issuer.issuer


@pytest.mark.parametrize(
    ("aud", "require", "accepted"),
    [
        (ORDERS_AUDIENCE, True, True),
        (["other", ORDERS_AUDIENCE], True, True),
        ("api://other", True, False),
        ([], True, False),
        (7, True, False),
        (None, True, False),
        (None, False, True),
        ([], False, True),
        ("api://other", False, False),
    ],
    ids=[
        "match",
        "list",
        "mismatch",
        "empty",
        "number",
        "absent",
        "absent-allowed",
        "empty-allowed",
        "wrong",
    ],
)
async def test_the_audience_must_name_this_resource_server(
    issuer: FakeIssuer, make_verifier: MakeVerifier, aud: Any, require: bool, accepted: bool
) -> None:
    if aud is None:
        token = issuer.issue_opaque(omit=["aud"])
    else:
        token = issuer.issue_opaque(claims={"aud": aud})
    verifier = make_verifier(require_audience=require)
    if accepted:
        await verifier.verify(token)
    else:
        with pytest.raises(InvalidAudienceError):
            await verifier.verify(token)


async def test_another_audience_claim_can_be_configured(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(audience="orders-api", audience_claim="client_id")
    assert (await verifier.verify(issuer.issue_opaque(client_id="orders-api"))).client_id
    with pytest.raises(InvalidAudienceError):
        await verifier.verify(issuer.issue_opaque(client_id="someone-else"))


@pytest.mark.parametrize(
    ("member", "value", "accepted"),
    [
        ("token_type", "Bearer", True),
        ("token_type", "access_token", True),
        ("token_type", "refresh_token", False),
        ("token_type", "Refresh_Token", False),
        ("token_type", "urn:ietf:params:oauth:token-type:refresh_token", False),
        ("token_type", 3, False),
        ("token_use", "refresh_token", False),
        ("token_use", "access_token", True),
        ("typ", "Refresh", False),
        ("typ", "Offline", False),  # Keycloak's offline token: a refresh token
        ("typ", "ID", False),  # Keycloak's ID token: not an access token either
        ("token_type", "id_token", False),
        ("token_type", "urn:ietf:params:oauth:token-type:id_token", False),
        ("typ", "Bearer", True),
    ],
)
async def test_a_refresh_token_is_refused(
    issuer: FakeIssuer, verifier: IntrospectionVerifier, member: str, value: Any, accepted: bool
) -> None:
    token = issuer.issue_opaque(claims={member: value})
    if accepted:
        await verifier.verify(token)
    else:
        with pytest.raises(InvalidClaimError, match=member):
            await verifier.verify(token)


async def test_the_fake_issues_refresh_tokens_that_are_refused(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    with pytest.raises(InvalidClaimError, match="refresh token"):
        await verifier.verify(issuer.issue_opaque(token_type="refresh_token"))


async def test_scopes_come_from_the_configured_claims(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    token = issuer.issue_opaque(
        scopes=["orders:read"], claims={"scp": ["a"], "roles": ["admin"], "perm": {"x": ["p"]}}
    )
    assert (await make_verifier().verify(token)).scopes == {"orders:read", "a"}
    verifier = make_verifier(scope_claims=("scope", "roles", "perm.x"))
    assert (await verifier.verify(token)).scopes == {"orders:read", "admin", "p"}
    mapped = make_verifier(scope_claims=(), scope_mapper=lambda claims: ["mapped"])
    assert (await mapped.verify(token)).scopes == {"mapped"}
    with pytest.raises(InvalidClaimError, match="scope"):
        await make_verifier().verify(issuer.issue_opaque(claims={"scope": 5}))


async def test_without_exp_the_answer_holds_for_the_cache_bound(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    token = issuer.issue_opaque(omit=["exp"])
    access = await make_verifier(cache_ttl=45).verify(token)
    assert "exp" not in access.claims
    assert access.expires_at == datetime.fromtimestamp(clock() + 45, UTC)
    requiring = make_verifier(required_claims=["exp", "sub"])
    with pytest.raises(InvalidClaimError, match="'exp' claim is required"):
        await requiring.verify(token)
    assert (await requiring.verify(issuer.issue_opaque())).subject == "user-123"


async def test_string_claims_must_be_strings(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    with pytest.raises(InvalidClaimError, match="sub"):
        await verifier.verify(issuer.issue_opaque(claims={"sub": 42}))


@pytest.mark.parametrize(
    "token",
    ["", "two words", "tab\there", "ünïcode", "x" * 20_000, "line\nbreak"],
    ids=["empty", "space", "tab", "non-ascii", "too-long", "newline"],
)
async def test_what_is_no_bearer_token_is_refused_without_a_call(
    issuer: FakeIssuer, verifier: IntrospectionVerifier, token: str
) -> None:
    with pytest.raises(MalformedTokenError):
        await verifier.verify(token)
    assert issuer.introspection_count == 0


async def test_a_token_that_is_not_a_string_is_refused(verifier: IntrospectionVerifier) -> None:
    with pytest.raises(MalformedTokenError, match="not a string"):
        await verifier.verify(b"bytes")  # type: ignore[arg-type]


async def test_a_configured_endpoint_needs_no_discovery(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(introspection_endpoint=issuer.introspection_endpoint)
    await verifier.verify(issuer.issue_opaque())
    assert issuer.counts["discovery"] == 0
    assert issuer.introspection_count == 1


async def test_discovery_without_an_introspection_endpoint_is_unavailable(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.metadata_overrides["introspection_endpoint"] = None
    with pytest.raises(IntrospectionUnavailableError, match="introspection_endpoint"):
        await verifier.verify(issuer.issue_opaque())
    assert issuer.introspection_count == 0


async def test_start_discovers_the_endpoint_and_logs_a_failure(
    issuer: FakeIssuer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make_verifier()
    async with verifier:
        assert verifier.introspection_endpoint == issuer.introspection_endpoint
    assert issuer.counts["discovery"] == 1
    issuer.fault("status", endpoint="discovery", status=404)
    issuer.fault("status", endpoint="oauth_metadata", status=404)
    broken = make_verifier()
    await broken.start()
    assert broken.introspection_endpoint is None
    assert "not ready" in caplog.text


async def test_start_gives_up_at_the_deadline(
    issuer: FakeIssuer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.fault("slow", endpoint="discovery", delay=2)
    verifier = make_verifier(timeout=0.2)
    await verifier.start()
    assert "no answer within 0.2 s" in caplog.text


def test_properties(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(client_auth="client_secret_post", audience=["a", "b"])
    assert verifier.issuer == issuer.issuer
    assert verifier.audiences == ("a", "b")
    assert verifier.client_id == CLIENT_ID
    assert verifier.client_auth == "client_secret_post"
    assert verifier.introspection_endpoint is None
    assert verifier.pending == 0
    assert verifier.key_source is None
    assert len(verifier.cache) == 0
    assert CLIENT_SECRET not in repr(vars(verifier))


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"issuer": "ftp://x"}, ValueError, "issuer"),
        ({"issuer": "https://idp.test/?x=1"}, ValueError, "query or fragment"),
        ({"introspection_endpoint": "http://idp.test/i"}, ValueError, "https"),
        ({"jwks_uri": "nope"}, ValueError, "jwks_uri"),
        ({"allow_insecure_http": "yes"}, TypeError, "allow_insecure_http"),
        ({"response_format": "xml"}, ValueError, "response_format"),
        ({"require_audience": 1}, TypeError, "require_audience"),
        ({"audience_claim": " "}, ValueError, "audience_claim"),
        ({"audience": []}, ValueError, "audience"),
        ({"scope_mapper": "x"}, TypeError, "scope_mapper"),
        ({"http_client": object()}, TypeError, "http_client"),
        ({"clock": 5}, TypeError, "clock"),
        ({"algorithms": ["HS256"]}, ValueError, "unsupported"),
        ({"leeway": 301}, ValueError, "leeway"),
        ({"cache_ttl": -1}, ValueError, "cache_ttl"),
        ({"negative_cache_ttl": 301}, ValueError, "negative_cache_ttl"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"cooldown": 61}, ValueError, "cooldown"),
        ({"max_pending": 0}, ValueError, "max_pending"),
        ({"max_token_bytes": 10}, ValueError, "max_token_bytes"),
        ({"max_response_bytes": 10}, ValueError, "max_response_bytes"),
        ({"cache_size": -1}, ValueError, "cache_size"),
        ({"negative_cache_size": True}, TypeError, "negative_cache_size"),
        ({"required_claims": [""]}, ValueError, "required_claims"),
        ({"client_id": 5}, TypeError, "client_id"),
    ],
)
def test_bad_options_fail_at_construction(
    make_verifier: MakeVerifier, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make_verifier(**options)


def test_plain_http_is_allowed_when_asked() -> None:
    verifier = IntrospectionVerifier(
        "http://idp.test",
        "api",
        client_id="c",
        client_secret="s",
        introspection_endpoint="http://idp.test/introspect",
        allow_insecure_http=True,
    )
    assert verifier.introspection_endpoint == "http://idp.test/introspect"


async def test_fail_fast_start_proves_the_credentials(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    """One introspection of a random token: refused credentials show at start-up."""
    verifier = make_verifier(fail_fast=True)
    await verifier.start()
    assert issuer.introspection_count == 1
    assert len(verifier.cache) == 0  # the probe's answer is not remembered
    assert (await verifier.verify(issuer.issue_opaque("u"))).subject == "u"
    wrong = make_verifier(fail_fast=True, client_secret="wrong-secret")
    with pytest.raises(IntrospectionUnavailableError, match="HTTP 401") as caught:
        await wrong.start()
    assert caught.value.permanent
    assert "will not fix itself" in caught.value.message
    assert "wrong-secret" not in str(caught.value)
    await make_verifier(client_secret="wrong-secret").start()  # without fail_fast: logged


@pytest.mark.parametrize(
    ("faults", "overrides", "match"),
    [
        ((("discovery", 404), ("oauth_metadata", 404)), {}, "404"),
        ((), {"introspection_endpoint": None}, "introspection_endpoint"),
        ((("introspection", 403),), {}, "HTTP 403"),
    ],
)
async def test_fail_fast_start_raises_on_a_misconfiguration(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    faults: tuple[tuple[str, int], ...],
    overrides: dict[str, Any],
    match: str,
) -> None:
    for endpoint, status in faults:
        issuer.fault("status", endpoint=endpoint, status=status)
    issuer.metadata_overrides.update(overrides)
    with pytest.raises(IntrospectionUnavailableError, match=match) as caught:
        await make_verifier(fail_fast=True).start()
    assert caught.value.permanent


@pytest.mark.parametrize(
    "faults",
    [
        (("discovery", 503), ("oauth_metadata", 404)),  # one location may come back
        (("introspection", 503),),
        (("introspection", 429),),
    ],
)
async def test_fail_fast_start_only_logs_an_outage(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    caplog: pytest.LogCaptureFixture,
    faults: tuple[tuple[str, int], ...],
) -> None:
    for endpoint, status in faults:
        issuer.fault("status", endpoint=endpoint, status=status)
    await make_verifier(fail_fast=True).start()
    assert "not ready yet" in caplog.text


@pytest.mark.parametrize("active", [True, "false", None])
async def test_fail_fast_start_refuses_an_endpoint_calling_a_random_token_active(
    issuer: FakeIssuer, make_verifier: MakeVerifier, active: object
) -> None:
    """A stub answering active for anything (or not saying false) must not go live."""
    issuer.introspection_hook = lambda answer: {"active": active, "sub": "anyone"}
    with pytest.raises(IntrospectionUnavailableError, match="random token") as caught:
        await make_verifier(fail_fast=True).start()
    assert caught.value.permanent


def test_fail_fast_must_be_a_bool(make_verifier: MakeVerifier) -> None:
    with pytest.raises(TypeError, match="fail_fast"):
        make_verifier(fail_fast="yes")


async def test_from_env_reads_the_introspection_variables(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    environment = {
        "RESOURCE_GUARD_ISSUER": issuer.issuer,
        "RESOURCE_GUARD_AUDIENCE": f"{ORDERS_AUDIENCE}, api://other",
        "RESOURCE_GUARD_INTROSPECTION_CLIENT_ID": CLIENT_ID,
        "RESOURCE_GUARD_INTROSPECTION_CLIENT_SECRET": CLIENT_SECRET,
        "RESOURCE_GUARD_INTROSPECTION_CLIENT_AUTH": "client_secret_post",
        "RESOURCE_GUARD_INTROSPECTION_ENDPOINT": issuer.introspection_endpoint,
        "RESOURCE_GUARD_INTROSPECTION_CACHE_TTL": "30",
        "RESOURCE_GUARD_CLIENT_ID": "the-service-calling-others",  # not ours
        "RESOURCE_GUARD_LEEWAY": " ",  # blank: unset
    }
    verifier = IntrospectionVerifier.from_env(environment, clock=clock)
    assert verifier.audiences == (ORDERS_AUDIENCE, "api://other")
    assert (verifier.client_id, verifier.client_auth) == (CLIENT_ID, "client_secret_post")
    assert verifier.introspection_endpoint == issuer.introspection_endpoint
    token = issuer.issue_opaque("env-user", expires_in=3600)
    assert (await verifier.verify(token)).subject == "env-user"
    clock.advance(31)  # the cache bound came from the environment
    await verifier.verify(token)
    assert issuer.introspection_count == 2
    await verifier.aclose()
    with pytest.raises(ValueError, match="RESOURCE_GUARD_INTROSPECTION_CACHE_TTL"):
        IntrospectionVerifier.from_env(
            {**environment, "RESOURCE_GUARD_INTROSPECTION_CACHE_TTL": "soon"}
        )


def test_from_env_names_the_missing_variables() -> None:
    with pytest.raises(ValueError, match="RESOURCE_GUARD_ISSUER") as caught:
        IntrospectionVerifier.from_env({"RESOURCE_GUARD_AUDIENCE": "api://orders"})
    assert "RESOURCE_GUARD_INTROSPECTION_CLIENT_ID" in str(caught.value)
    assert "RESOURCE_GUARD_AUDIENCE" not in str(caught.value)
    built = IntrospectionVerifier.from_env(
        {}, issuer="https://idp.test", audience="api", client_id="c", client_secret="s"
    )
    assert built.client_id == "c"


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESOURCE_GUARD_ISSUER", "https://idp.test")
    monkeypatch.setenv("RESOURCE_GUARD_AUDIENCE", "api")
    monkeypatch.setenv("RESOURCE_GUARD_INTROSPECTION_CLIENT_ID", "c")
    monkeypatch.setenv("RESOURCE_GUARD_INTROSPECTION_CLIENT_SECRET", "s")
    assert IntrospectionVerifier.from_env().issuer == "https://idp.test"


async def test_fail_fast_start_only_logs_an_issuer_that_does_not_answer(
    make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    await make_verifier(issuer=f"http://127.0.0.1:{port}", fail_fast=True).start()
    assert "not ready yet" in caplog.text
