"""FakeIssuer's opaque tokens: the introspection and revocation endpoints (client
authentication, JSON and RFC 9701 answers, counters, faults), the token endpoint issuing
opaque tokens to ClientCredentialsAuth, and the pytest fixtures."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import BearerAuthMiddleware, IntrospectionVerifier, get_access_token
from resource_guard._client_auth import ASSERTION_TYPE, ClientAuthentication
from resource_guard.client import ClientCredentialsAuth
from resource_guard.dpop import DPoPKey
from resource_guard.testing import FakeClock, FakeIssuer, _introspection, generate_key
from resource_guard.testing._introspection import OpaqueTokens
from tests.helpers import ORDERS_AUDIENCE
from tests.loopback import LoopbackServer

from .conftest import CLIENT_ID, CLIENT_SECRET

BASIC = (CLIENT_ID, CLIENT_SECRET)


def post(issuer: FakeIssuer, url: str, **options: Any) -> httpx.Response:
    with httpx.Client() as client:
        return client.post(url, **options)


def test_discovery_names_both_endpoints(issuer: FakeIssuer) -> None:
    document = httpx.get(issuer.discovery_url).json()
    assert document["introspection_endpoint"] == issuer.issuer + "/introspect"
    assert document["revocation_endpoint"] == issuer.issuer + "/revoke"
    methods = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    assert document["introspection_endpoint_auth_methods_supported"] == methods
    assert document["revocation_endpoint_auth_methods_supported"] == methods
    assert document["introspection_signing_alg_values_supported"] == ["ES256"]


def test_an_opaque_token_is_introspected_with_its_claims(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    token = issuer.issue_opaque("alice", scopes=["a", "b"], client_id="app", expires_in=60)
    assert "." not in token
    reply = post(issuer, issuer.introspection_endpoint, data={"token": token}, auth=BASIC)
    assert reply.status_code == 200
    assert reply.headers["cache-control"] == "no-store"
    answer = reply.json()
    assert answer["active"] is True
    assert (answer["sub"], answer["client_id"], answer["scope"]) == ("alice", "app", "a b")
    assert (answer["iss"], answer["aud"], answer["token_type"]) == (
        issuer.issuer,
        ORDERS_AUDIENCE,
        "Bearer",
    )
    assert answer["exp"] == int(clock()) + 60
    assert issuer.introspection_count == 1


def test_unknown_expired_revoked_and_early_tokens_are_inactive(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    assert issuer.introspect("nope") == {"active": False}
    revoked = issuer.issue_opaque()
    issuer.revoke(revoked)
    assert issuer.introspect(revoked) == {"active": False}
    early = issuer.issue_opaque(claims={"nbf": clock() + 60})
    assert issuer.introspect(early) == {"active": False}
    expiring = issuer.issue_opaque(expires_in=10)
    assert issuer.introspect(expiring)["active"] is True
    clock.advance(10)
    assert issuer.introspect(expiring) == {"active": False}


def test_the_issuer_s_own_jwts_are_introspected_too(issuer: FakeIssuer) -> None:
    token = issuer.mint("jwt-user", scopes=["x"])
    answer = issuer.introspect(token)
    assert (answer["active"], answer["sub"], answer["scope"]) == (True, "jwt-user", "x")
    forged = issuer.mint(key=issuer.generate_key())
    assert issuer.introspect(forged) == {"active": False}
    assert issuer.introspect(issuer.mint(algorithm="EdDSA"))["active"] is True
    hmac = issuer.mint(key="secret-secret-secret-secret-long", algorithm="HS256")
    assert issuer.introspect(hmac) == {"active": False}
    issuer.revoke(token)
    assert issuer.introspect(token) == {"active": False}


def test_a_signed_payload_that_is_not_json_is_no_jwt_of_ours(issuer: FakeIssuer) -> None:
    key = issuer.current_key
    odd = jwt.api_jws.encode(b"[1]", key.private_key, algorithm=key.alg)
    assert issuer.introspect(odd) == {"active": False}


@pytest.mark.parametrize(
    ("options", "status", "error"),
    [
        ({"data": {"token": "t"}}, 401, "invalid_client"),
        ({"data": {"token": "t"}, "auth": (CLIENT_ID, "wrong")}, 401, "invalid_client"),
        ({"data": {"token": ""}, "auth": BASIC}, 400, "invalid_request"),
        ({"content": b"token=t", "auth": BASIC}, 400, "invalid_request"),
        (
            {"data": {"token": "t", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}},
            200,
            None,
        ),
    ],
    ids=["no-auth", "wrong-secret", "no-token", "not-a-form", "post"],
)
def test_the_introspection_endpoint_authenticates_the_caller(
    issuer: FakeIssuer, options: dict[str, Any], status: int, error: str | None
) -> None:
    reply = post(issuer, issuer.introspection_endpoint, **options)
    assert reply.status_code == status
    if error is not None:
        assert reply.json()["error"] == error


def test_only_post_is_served(issuer: FakeIssuer) -> None:
    for url in (issuer.introspection_endpoint, issuer.revocation_endpoint):
        assert httpx.get(url).status_code == 405


def test_a_jwt_answer_is_signed_for_the_caller(issuer: FakeIssuer, clock: FakeClock) -> None:
    token = issuer.issue_opaque()
    reply = post(
        issuer,
        issuer.introspection_endpoint,
        data={"token": token},
        auth=BASIC,
        headers={"Accept": "application/token-introspection+jwt"},
    )
    assert reply.headers["content-type"] == "application/token-introspection+jwt"
    key = issuer.current_key
    assert jwt.get_unverified_header(reply.text) == {
        "alg": "ES256",
        "typ": "token-introspection+jwt",
        "kid": key.kid,
    }
    claims = jwt.decode(
        reply.text,
        key.private_key.public_key(),
        algorithms=["ES256"],
        audience=CLIENT_ID,
        options={"verify_iat": False},  # the fake clock stands in the future
    )
    assert claims["iss"] == issuer.issuer
    assert claims["iat"] == int(clock())
    assert claims["token_introspection"]["active"] is True


def test_the_hooks_rewrite_answers(issuer: FakeIssuer) -> None:
    issuer.introspection_hook = lambda answer: {**answer, "active": "true"}
    reply = post(issuer, issuer.introspection_endpoint, data={"token": "x"}, auth=BASIC)
    assert reply.json() == {"active": "true"}


def test_revocation_follows_rfc_7009(issuer: FakeIssuer) -> None:
    mine = issuer.issue_opaque(client_id=CLIENT_ID)
    reply = post(issuer, issuer.revocation_endpoint, data={"token": mine}, auth=BASIC)
    assert (reply.status_code, reply.content) == (200, b"")
    assert issuer.introspect(mine) == {"active": False}
    unknown = post(issuer, issuer.revocation_endpoint, data={"token": "nope"}, auth=BASIC)
    assert unknown.status_code == 200  # RFC 7009 §2.2: an invalid token is no error
    theirs = issuer.issue_opaque(client_id="another-client")
    refused = post(issuer, issuer.revocation_endpoint, data={"token": theirs}, auth=BASIC)
    assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")
    assert issuer.introspect(theirs)["active"] is True
    anyone = post(issuer, issuer.revocation_endpoint, data={"token": "t"})
    assert anyone.status_code == 401
    assert issuer.revocation_count == 4


def test_revocation_through_the_endpoint_reaches_the_verifier_within_the_bound(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    """End to end: revoke over HTTP, and the next introspection after the bound refuses."""
    verifier = IntrospectionVerifier(
        issuer.issuer,
        ORDERS_AUDIENCE,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
        cache_ttl=10,
    )
    token = issuer.issue_opaque(client_id=CLIENT_ID, expires_in=3600)

    async def check() -> list[bool]:
        seen = []
        try:
            for step in range(3):
                if step == 1:
                    post(issuer, issuer.revocation_endpoint, data={"token": token}, auth=BASIC)
                try:
                    await verifier.verify(token)
                    seen.append(True)
                except Exception:
                    seen.append(False)
                clock.advance(6)
        finally:
            await verifier.aclose()
        return seen

    assert asyncio.run(check()) == [True, True, False]


# -- private_key_jwt at the fake -------------------------------------------------------------


@pytest.fixture
def key_client(issuer: FakeIssuer) -> ClientAuthentication:
    key = generate_key("ES256")
    issuer.register_client_key("key-client", key)
    return ClientAuthentication.create("key-client", private_key=key.private_key)


def assertion_form(
    issuer: FakeIssuer, auth: ClientAuthentication, **changes: Any
) -> dict[str, str]:
    claims = {
        "iss": auth.client_id,
        "sub": auth.client_id,
        "aud": issuer.introspection_endpoint,
        "jti": secrets.token_urlsafe(8),
        "exp": int(issuer.clock()) + 60,
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    assert auth.private_key is not None
    assertion = jwt.encode(claims, auth.private_key, algorithm="ES256")
    return {"token": "t", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, 200),
        ({"aud": None}, 401),
        ({"aud": "https://elsewhere.test"}, 401),
        ({"aud": ["https://elsewhere.test", "ISSUER"]}, 200),
        ({"iss": "someone"}, 401),
        ({"sub": "someone"}, 401),
        ({"exp": 1}, 401),
        ({"exp": None}, 401),
        ({"jti": None}, 401),
    ],
    ids=["good", "no-aud", "aud-other", "aud-list", "iss", "sub", "expired", "no-exp", "no-jti"],
)
def test_the_fake_checks_client_assertions(
    issuer: FakeIssuer, key_client: ClientAuthentication, changes: dict[str, Any], status: int
) -> None:
    if changes.get("aud") == ["https://elsewhere.test", "ISSUER"]:
        changes["aud"] = ["https://elsewhere.test", issuer.issuer]
    form = assertion_form(issuer, key_client, **changes)
    assert post(issuer, issuer.introspection_endpoint, data=form).status_code == status


def test_a_replayed_assertion_is_refused(
    issuer: FakeIssuer, key_client: ClientAuthentication
) -> None:
    form = assertion_form(issuer, key_client)
    assert post(issuer, issuer.introspection_endpoint, data=form).status_code == 200
    assert post(issuer, issuer.introspection_endpoint, data=form).status_code == 401


@pytest.mark.parametrize(
    "form",
    [
        {"token": "t", "client_assertion": "x.y.z"},
        {"token": "t", "client_assertion_type": "other", "client_assertion": "x"},
    ],
    ids=["no-type", "other-type"],
)
def test_a_malformed_assertion_request_is_refused(issuer: FakeIssuer, form: dict[str, str]) -> None:
    reply = post(issuer, issuer.introspection_endpoint, data=form)
    assert (reply.status_code, reply.json()["error"]) == (400, "invalid_request")


def test_an_assertion_with_basic_credentials_is_refused(
    issuer: FakeIssuer, key_client: ClientAuthentication
) -> None:
    form = assertion_form(issuer, key_client)
    reply = post(issuer, issuer.introspection_endpoint, data=form, auth=BASIC)
    assert reply.status_code == 400


@pytest.mark.parametrize(
    "assertion", ["not-a-jwt", "a.b.c.d.e", "eyJhbGciOiJFUzI1NiJ9.e30.AAAA"], ids=str
)
def test_unreadable_or_unknown_assertions_are_refused(
    issuer: FakeIssuer, key_client: ClientAuthentication, assertion: str
) -> None:
    form = {"token": "t", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    assert post(issuer, issuer.introspection_endpoint, data=form).status_code == 401


def test_an_assertion_by_a_key_of_another_kind_is_refused(issuer: FakeIssuer) -> None:
    rsa_key = generate_key("RS256")
    issuer.register_client_key("rsa-client", rsa_key.private_key.public_key())
    auth = ClientAuthentication.create("rsa-client", private_key=generate_key("ES256").private_key)
    _, form = auth.apply(issuer.introspection_endpoint, issuer.clock())
    reply = post(issuer, issuer.introspection_endpoint, data={"token": "t", **form})
    assert reply.status_code == 401
    ed = ClientAuthentication.create("rsa-client", private_key=generate_key("ES384").private_key)
    issuer.register_client_key("rsa-client", generate_key("ES256"))  # P-256, not P-384
    _, form = ed.apply(issuer.introspection_endpoint, issuer.clock())
    assert (
        post(issuer, issuer.introspection_endpoint, data={"token": "t", **form}).status_code == 401
    )


def test_the_replay_memory_is_bounded(
    issuer: FakeIssuer, key_client: ClientAuthentication, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_introspection, "_MAX_JTIS", 2)
    for _ in range(3):
        form = assertion_form(issuer, key_client)
        assert post(issuer, issuer.introspection_endpoint, data=form).status_code == 200


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda fake: fake.register_client_key("c", "not a key"), TypeError),
        (lambda fake: fake.register_client_key("", generate_key("ES256")), ValueError),
        (lambda fake: fake.issue_opaque(claims=[("a", 1)]), TypeError),
        (lambda fake: fake.issue_opaque(token_type=""), ValueError),
        (lambda fake: fake.revoke(""), ValueError),
    ],
    ids=["key-type", "client-id", "claims", "token-type", "revoke"],
)
def test_bad_arguments_are_refused(issuer: FakeIssuer, call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call(issuer)


def test_issue_opaque_shapes_its_claims(issuer: FakeIssuer) -> None:
    token = issuer.issue_opaque(None, audience=["a", "b"], claims={"x": 1}, omit=["jti"])
    answer = issuer.introspect(token)
    assert "sub" not in answer
    assert "jti" not in answer
    assert (answer["aud"], answer["x"]) == (["a", "b"], 1)
    assert isinstance(issuer, OpaqueTokens)


@pytest.mark.parametrize("kind", ["status", "garbage", "slow"])
def test_faults_hit_the_introspection_endpoint(issuer: FakeIssuer, kind: str) -> None:
    issuer.fault(kind, endpoint="introspection", delay=0.05, times=1)
    started = time.monotonic()
    first = post(issuer, issuer.introspection_endpoint, data={"token": "t"}, auth=BASIC)
    if kind == "slow":
        assert time.monotonic() - started >= 0.05
    else:
        assert first.status_code == 503 or first.content.startswith(b"<html>")
    second = post(issuer, issuer.introspection_endpoint, data={"token": "t"}, auth=BASIC)
    assert second.json() == {"active": False}


def test_the_active_string_fault(issuer: FakeIssuer) -> None:
    issuer.fault("active_string", endpoint="introspection")
    reply = post(issuer, issuer.introspection_endpoint, data={"token": "t"}, auth=BASIC)
    assert reply.json() == {"active": "true"}


# -- ClientCredentialsAuth gets opaque tokens ------------------------------------------------


def test_client_credentials_auth_works_unchanged_with_opaque_tokens(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    """Over loopback: the client gets an opaque token from the token endpoint and calls an
    app whose middleware introspects it (one introspection for several calls)."""
    issuer.opaque_tokens = True
    issuer.register_client("billing", "billing-secret", scopes=["orders:read"])
    verifier = IntrospectionVerifier(
        issuer.issuer,
        ORDERS_AUDIENCE,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        clock=clock,
    )

    async def orders(request: Request) -> JSONResponse:
        token = get_access_token(request)
        assert token is not None
        return JSONResponse({"client": token.client_id, "scopes": sorted(token.scopes)})

    app = BearerAuthMiddleware(Starlette(routes=[Route("/orders", orders)]), verifier=verifier)
    auth = ClientCredentialsAuth(
        token_url=issuer.token_endpoint, client_id="billing", client_secret="billing-secret"
    )
    with LoopbackServer(app) as base, httpx.Client(auth=auth, base_url=base) as client:
        for _ in range(3):
            reply = client.get("/orders")
            assert reply.json() == {"client": "billing", "scopes": ["orders:read"]}
    assert issuer.counts["token"] == 1
    assert issuer.introspection_count == 1


def test_the_token_endpoint_binds_opaque_tokens_to_a_dpop_key(
    issuer: FakeIssuer, clock: FakeClock
) -> None:
    issuer.opaque_tokens = True
    key = DPoPKey.generate()
    proof = key.proof("POST", issuer.token_endpoint, now=clock())
    reply = post(
        issuer,
        issuer.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=BASIC,
        headers={"DPoP": proof},
    )
    assert reply.json()["token_type"] == "DPoP"
    answer = issuer.introspect(reply.json()["access_token"])
    assert answer["cnf"] == {"jkt": key.thumbprint}


# -- the pytest fixtures ---------------------------------------------------------------------


async def test_the_introspection_verifier_fixture(
    fake_issuer: FakeIssuer, introspection_verifier: IntrospectionVerifier, fake_clock: FakeClock
) -> None:
    token = fake_issuer.issue_opaque(scopes=["x"])
    assert (await introspection_verifier.verify(token)).scopes == {"x"}
    assert introspection_verifier.client_id == "resource-server"
    assert fake_issuer.introspection_count == 1


async def test_the_factory_takes_a_served_issuer_and_options(
    fake_issuer_server: FakeIssuer, introspection_verifier_factory: Any
) -> None:
    fake_issuer_server.register_client("mine", "my-secret")
    verifier = introspection_verifier_factory(
        fake_issuer_server, client_id="mine", client_secret="my-secret", cache_ttl=5
    )
    try:
        await verifier.verify(fake_issuer_server.issue_opaque())
    finally:
        await verifier.aclose()
    with pytest.raises(TypeError, match="FakeIssuer"):
        introspection_verifier_factory("https://idp.test")
