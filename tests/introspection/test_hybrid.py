"""HybridVerifier: JWTs of a local issuer verified locally (no introspection call), every
other token introspected (no JWKS fetch); proved with the fake issuer's request counters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest

from resource_guard import (
    AccessToken,
    HybridVerifier,
    InactiveTokenError,
    IntrospectionVerifier,
    InvalidSignatureError,
    MalformedTokenError,
    TokenVerifier,
    TrustedIssuers,
)
from resource_guard._hybrid import unverified_issuer
from resource_guard.dpop import DPoPPolicy
from resource_guard.introspection import IntrospectedToken
from resource_guard.testing import FakeClock, FakeIssuer
from tests.helpers import ORDERS_AUDIENCE, compact

from .conftest import MakeVerifier


@pytest.fixture
async def hybrid_parts(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> AsyncIterator[tuple[TokenVerifier, IntrospectionVerifier]]:
    jwt_side = TokenVerifier(issuer.issuer, ORDERS_AUDIENCE, clock=clock)
    yield jwt_side, make_verifier()
    await jwt_side.aclose()


async def test_each_kind_goes_its_own_way(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side)
    await hybrid.start()
    assert issuer.jwks_fetches == 1
    opaque = issuer.issue_opaque("opaque-user")
    for _ in range(3):
        assert (await hybrid.verify(opaque)).subject == "opaque-user"
    assert (issuer.introspection_count, issuer.jwks_fetches) == (1, 1)
    for _ in range(3):
        jwt = issuer.mint("jwt-user")
        assert (await hybrid.verify(jwt)).subject == "jwt-user"
    assert (issuer.introspection_count, issuer.jwks_fetches) == (1, 1)
    await hybrid.aclose()


async def test_opaque_tokens_never_fetch_keys(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    """Not even while the JWT side has no keys yet (it was never started)."""
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side)
    await hybrid.verify(issuer.issue_opaque())
    with pytest.raises(InactiveTokenError):
        await hybrid.verify("a.b")
    assert issuer.jwks_fetches == 0
    assert issuer.introspection_count == 2


async def test_a_jws_of_another_issuer_is_introspected(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    """Some servers issue JWT-shaped reference tokens under another name: the
    introspection endpoint decides, and the JWKS is never fetched for them."""
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side)
    foreign = compact({"alg": "ES256"}, {"iss": "https://other.test", "sub": "x"})
    with pytest.raises(InactiveTokenError):
        await hybrid.verify(foreign)
    assert (issuer.jwks_fetches, issuer.introspection_count) == (0, 1)


async def test_a_forged_local_jwt_is_refused_locally(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side)
    forged = issuer.mint(key=issuer.generate_key(kid=issuer.current_key.kid))
    with pytest.raises(InvalidSignatureError):
        await hybrid.verify(forged)
    assert issuer.introspection_count == 0


async def test_jwts_can_be_introspected_too(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    """introspect_jwts: a JWT must pass both, so a revoked JWT stops working."""
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side, introspect_jwts=True)
    token = issuer.mint("jwt-user")
    access = await hybrid.verify(token)
    assert access.key_id == issuer.current_key.kid
    assert (issuer.jwks_fetches, issuer.introspection_count) == (1, 1)
    assert hybrid.cached(token) is access
    revoked = issuer.mint("revoked-user")
    issuer.revoke(revoked)
    with pytest.raises(InactiveTokenError):
        await hybrid.verify(revoked)
    assert hybrid.cached(revoked) is None  # the JWT side cached it; introspection did not


async def test_cached_answers_either_side_without_waiting(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side)
    jwt, opaque = issuer.mint(), issuer.issue_opaque()
    assert hybrid.cached(jwt) is None
    assert hybrid.cached(opaque) is None
    first_jwt, first_opaque = await hybrid.verify(jwt), await hybrid.verify(opaque)
    assert hybrid.cached(jwt) is first_jwt
    assert hybrid.cached(jwt.encode()) is first_jwt
    assert hybrid.cached(opaque) is first_opaque
    assert hybrid.cached(opaque.encode()) is first_opaque
    with mock.patch.object(hybrid, "verify"):
        assert hybrid.cached(jwt) is None


async def test_sides_without_cached_are_asked_through_verify(issuer: FakeIssuer) -> None:
    """Another opaque verifier's AccessToken comes back marked as the opaque side's (the
    mark picks the side's DPoP policy), every field kept."""
    access = AccessToken(
        claims={"sub": "s"},
        scopes=frozenset({"a"}),
        expires_at=datetime.now(UTC),
        subject="s",
        client_id="c",
        issuer="https://plain.test",
        key_id="k",
    )

    class Plain:
        issuer = "https://plain.test"

        async def verify(self, token: str) -> Any:
            return access

        def dpop_policy(self, token: AccessToken | None = None) -> DPoPPolicy:
            return policy

        async def start(self) -> None: ...
        async def aclose(self) -> None: ...

    policy = DPoPPolicy("off")
    hybrid = HybridVerifier(jwt=Plain(), opaque=Plain())  # type: ignore[arg-type]
    assert hybrid.cached("a.b.c") is None
    assert hybrid.cached("opaque") is None
    found = await hybrid.verify("opaque")
    assert isinstance(found, IntrospectedToken)
    assert all(getattr(found, f.name) == getattr(access, f.name) for f in fields(AccessToken))
    assert hybrid.dpop_policy(found) is policy


async def test_another_opaque_side_s_cached_tokens_are_marked_too() -> None:
    access = AccessToken(claims={}, scopes=frozenset(), expires_at=datetime.now(UTC))
    jwt_side = mock.Mock(spec=["verify", "cached", "start", "aclose"])
    jwt_side.cached.return_value = None
    opaque_side = mock.Mock(spec=["verify", "cached", "start", "aclose"])
    opaque_side.cached.return_value = access
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side, jwt_issuers=["https://a.test"])
    found = hybrid.cached("opaque")
    assert isinstance(found, IntrospectedToken)
    assert found.expires_at == access.expires_at


async def test_trusted_issuers_decide_what_is_local(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    jwt_side = TrustedIssuers([TokenVerifier(issuer.issuer, ORDERS_AUDIENCE, clock=clock)])
    hybrid = HybridVerifier(jwt=jwt_side, opaque=make_verifier())
    try:
        assert hybrid.routes_to_jwt(issuer.mint())
        assert not hybrid.routes_to_jwt(issuer.issue_opaque())
        assert (await hybrid.verify(issuer.mint("t"))).subject == "t"
        assert issuer.introspection_count == 0
    finally:
        await jwt_side.aclose()


@pytest.mark.parametrize(
    ("jwt_issuers", "routed"),
    [
        (["https://a.test"], True),
        (("https://b.test",), False),
        (lambda iss: iss.endswith(".test"), True),
    ],
)
def test_jwt_issuers_can_be_given(jwt_issuers: Any, routed: bool) -> None:
    side = mock.Mock(spec=["verify", "cached", "start", "aclose"])
    hybrid = HybridVerifier(jwt=side, opaque=side, jwt_issuers=jwt_issuers)
    token = compact({"alg": "ES256"}, {"iss": "https://a.test"})
    assert hybrid.routes_to_jwt(token) is routed
    assert (hybrid.issuers, hybrid.audiences) == ((), ())  # the sides name none


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"jwt": object()}, TypeError, "jwt must be a verifier"),
        ({"opaque": object()}, TypeError, "opaque must be a verifier"),
        ({"introspect_jwts": "yes"}, TypeError, "introspect_jwts"),
        ({"jwt_issuers": "https://a.test"}, TypeError, "collection"),
        ({"jwt_issuers": 5}, TypeError, "collection"),
        ({"jwt_issuers": []}, ValueError, "at least one"),
        ({"jwt_issuers": [""]}, ValueError, "at least one"),
        ({"jwt_issuers": None}, TypeError, "pass jwt_issuers"),
    ],
)
def test_bad_options_fail_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    side = mock.Mock(spec=["verify", "cached", "start", "aclose"])
    arguments: dict[str, Any] = {"jwt": side, "opaque": side, "jwt_issuers": ["x"], **options}
    with pytest.raises(error, match=match):
        HybridVerifier(**arguments)


@pytest.mark.parametrize(
    ("token", "iss"),
    [
        (compact({"alg": "ES256"}, {"iss": "https://a.test"}), "https://a.test"),
        (compact({"alg": "ES256"}, {"iss": 5}), None),
        (compact({"alg": "ES256"}, ["not", "object"]), None),
        ("a.!!!.c", None),
        ("opaque", None),
        (".a.b", None),
        ("a..b", None),
        ("a.b.c.d", None),
    ],
    ids=["iss", "iss-number", "payload-list", "bad-base64", "opaque", "empty-1", "empty-2", "four"],
)
def test_the_unverified_issuer_is_read_strictly(token: str, iss: str | None) -> None:
    assert unverified_issuer(token) == iss


async def test_aclose_closes_both_even_when_one_fails() -> None:
    jwt_side = mock.Mock(spec=["verify", "cached", "start", "aclose"])
    jwt_side.aclose = mock.AsyncMock(side_effect=RuntimeError("boom"))
    opaque_side = mock.Mock(spec=["verify", "cached", "start", "aclose"])
    opaque_side.aclose = mock.AsyncMock()
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side, jwt_issuers=["x"])
    with pytest.raises(RuntimeError):
        await hybrid.aclose()
    opaque_side.aclose.assert_awaited_once()


async def test_an_oversized_token_is_refused_before_its_iss_is_read(
    issuer: FakeIssuer, hybrid_parts: tuple[TokenVerifier, IntrospectionVerifier]
) -> None:
    """As TrustedIssuers does: no decoding of a huge payload just to route it, and neither
    side sees it."""
    jwt_side, opaque_side = hybrid_parts
    hybrid = HybridVerifier(jwt=jwt_side, opaque=opaque_side, max_token_bytes=1024)
    big = issuer.mint(claims={"pad": "x" * 2000})
    with (
        mock.patch("resource_guard._hybrid.unverified_issuer") as read,
        pytest.raises(MalformedTokenError, match="larger"),
    ):
        await hybrid.verify(big)
    read.assert_not_called()
    assert (issuer.jwks_fetches, issuer.introspection_count) == (0, 0)
    assert hybrid.cached(big) is None
    assert not hybrid.routes_to_jwt(big)
    assert (await hybrid.verify(issuer.mint("small"))).subject == "small"
    with pytest.raises(ValueError, match="max_token_bytes"):
        HybridVerifier(jwt=jwt_side, opaque=opaque_side, max_token_bytes=10)
