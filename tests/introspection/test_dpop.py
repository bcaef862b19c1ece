"""DPoP (RFC 9449 §6.2) with introspection: an answer with ``cnf.jkt`` binds the opaque token
to a key, and the middleware then wants a proof by that key, as for a bound JWT; the
hybrid hands the middleware the policy of the side that verified the token. And the MCP
adapter, which takes any verifier, takes an introspection verifier."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import (
    AccessToken,
    BearerAuthMiddleware,
    HybridVerifier,
    IntrospectionVerifier,
    TokenVerifier,
)
from resource_guard.dpop import DPoPKey, DPoPMode, DPoPPolicy
from resource_guard.introspection import IntrospectedToken
from resource_guard.mcp import MCPTokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer
from tests.asgi_client import call
from tests.helpers import ORDERS_AUDIENCE

from .conftest import MakeVerifier


def app_with(verifier: IntrospectionVerifier | HybridVerifier) -> BearerAuthMiddleware:
    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return BearerAuthMiddleware(
        Starlette(routes=[Route("/orders", orders)]), verifier=verifier, manage_verifier=False
    )


async def test_a_bound_opaque_token_needs_a_proof_by_its_key(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    key = DPoPKey.generate()
    token = issuer.issue_opaque(claims={"cnf": {"jkt": key.thumbprint}}, token_type="DPoP")
    app = app_with(verifier)
    as_bearer = await call(app, headers=[(b"authorization", f"Bearer {token}".encode())])
    assert as_bearer.status == 401
    proof = key.proof("GET", "http://api.test/orders", access_token=token)
    with_proof = await call(
        app,
        headers=[(b"authorization", f"DPoP {token}".encode()), (b"dpop", proof.encode())],
    )
    assert with_proof.status == 200
    other = DPoPKey.generate().proof("GET", "http://api.test/orders", access_token=token)
    wrong_key = await call(
        app,
        headers=[(b"authorization", f"DPoP {token}".encode()), (b"dpop", other.encode())],
    )
    assert wrong_key.status == 401


async def test_the_policy_is_configurable(make_verifier: MakeVerifier) -> None:
    assert make_verifier().dpop_policy().mode == "allowed"
    required = make_verifier(dpop="required")
    assert required.dpop_policy(None).mode == "required"
    policy = DPoPPolicy("off")
    assert make_verifier(dpop=policy).dpop_policy() is policy
    with pytest.raises(ValueError, match="dpop"):
        make_verifier(dpop="sometimes")


def token(key_id: str | None) -> AccessToken:
    return AccessToken(claims={}, scopes=frozenset(), expires_at=datetime.now(UTC), key_id=key_id)


def introspected() -> IntrospectedToken:
    return IntrospectedToken(claims={}, scopes=frozenset(), expires_at=datetime.now(UTC))


async def test_the_hybrid_answers_each_side_s_policy(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    jwt_side = TokenVerifier(issuer.issuer, ORDERS_AUDIENCE, clock=clock, dpop="required")
    opaque_side = make_verifier(dpop="off")
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side)
    assert hybrid.dpop_policy() is jwt_side.dpop_policy()
    assert hybrid.dpop_policy(token("kid-1")) is jwt_side.dpop_policy()
    assert hybrid.dpop_policy(token(None)) is jwt_side.dpop_policy()  # a JWT without kid
    assert hybrid.dpop_policy(introspected()) is opaque_side.dpop_policy()
    assert hybrid.issuers == (issuer.issuer,)
    assert hybrid.audiences == (ORDERS_AUDIENCE,)
    await hybrid.aclose()


@pytest.mark.parametrize("jwt_mode", ["required", "off"])
async def test_a_jwt_without_kid_gets_the_jwt_side_s_policy(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock, jwt_mode: DPoPMode
) -> None:
    """The side is the one that verified the token, not a guess from ``key_id``: a JWT
    signed by a key without ``kid`` must not get the introspection side's policy (with
    "required" on the JWT side and "off" on the other, that guess let a bare bearer JWT
    through), nor the reverse."""
    opaque_mode = "off" if jwt_mode == "required" else "required"
    jwt_side = TokenVerifier(issuer.issuer, ORDERS_AUDIENCE, clock=clock, dpop=jwt_mode)
    hybrid = HybridVerifier(jwt=jwt_side, opaque=make_verifier(dpop=opaque_mode))
    key = issuer.generate_key("RS256")  # the only RS256 key published
    issuer.publish_raw_jwk({k: v for k, v in key.public_jwk().items() if k != "kid"})
    jwt = issuer.mint(key=key, kid=None)  # neither the header nor the JWK has a kid
    access = await hybrid.verify(jwt)
    assert access.key_id is None
    assert hybrid.dpop_policy(access).mode == jwt_mode
    opaque = await hybrid.verify(issuer.issue_opaque())
    assert hybrid.dpop_policy(opaque).mode == opaque_mode
    app = app_with(hybrid)
    reply = await call(app, headers=[(b"authorization", f"Bearer {jwt}".encode())])
    assert reply.status == (401 if jwt_mode == "required" else 200)
    again = await call(app, headers=[(b"authorization", f"Bearer {jwt}".encode())])
    assert again.status == reply.status  # the cached path too
    await jwt_side.aclose()


async def test_a_side_without_a_policy_gets_the_default() -> None:
    side = mock.Mock(spec=["verify", "cached", "start", "aclose", "issuers", "audiences"])
    side.issuers = ["https://a.test", 5]
    side.audiences = ("x", "x", "y")
    hybrid = HybridVerifier(jwt=side, opaque=side, jwt_issuers=["https://a.test"])
    policy = hybrid.dpop_policy()
    assert isinstance(policy, DPoPPolicy)
    assert policy.mode == "allowed"
    assert hybrid.dpop_policy(token(None)) is policy
    assert hybrid.dpop_policy(introspected()) is policy
    assert hybrid.issuers == ("https://a.test",)
    assert hybrid.audiences == ("x", "y")


async def test_the_mcp_adapter_takes_an_introspection_verifier(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    adapter = MCPTokenVerifier(verifier)
    opaque = issuer.issue_opaque(scopes=["orders:read"], client_id="app")
    found = await adapter.verify_token(opaque)
    assert found is not None
    assert (found.client_id, found.scopes, found.resource) == (
        "app",
        ["orders:read"],
        ORDERS_AUDIENCE,
    )
    assert await adapter.verify_token("unknown") is None
