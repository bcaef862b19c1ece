"""The DPoP policy of each verifier kind: ``TokenVerifier(dpop=...)`` and TrustedIssuers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from resource_guard import AccessToken, IssuerTemplate, TokenVerifier, TrustedIssuers
from resource_guard.dpop import DPoPPolicy, MemoryReplayStore
from resource_guard.testing import FakeIssuer
from tests.helpers import ORDERS_AUDIENCE


def _verifier(fake: FakeIssuer, **options: Any) -> TokenVerifier:
    return TokenVerifier(fake.issuer, ORDERS_AUDIENCE, http_client=fake.async_client(), **options)


def test_the_default_policy_allows_dpop(fake: FakeIssuer) -> None:
    policy = _verifier(fake).dpop_policy()
    assert policy.mode == "allowed"
    assert isinstance(policy.replay_store, MemoryReplayStore)


@pytest.mark.parametrize("mode", ["off", "allowed", "required"])
def test_a_mode_string_makes_a_policy(fake: FakeIssuer, mode: str) -> None:
    assert _verifier(fake, dpop=mode).dpop_policy().mode == mode


async def test_a_policy_is_used_as_given_and_closed_with_the_verifier(fake: FakeIssuer) -> None:
    closed: list[bool] = []

    class Store(MemoryReplayStore):
        async def aclose(self) -> None:
            closed.append(True)

    policy = DPoPPolicy("required", replay_store=Store())
    verifier = _verifier(fake, dpop=policy)
    token = await verifier.verify(fake.mint())
    assert verifier.dpop_policy(token) is policy
    await verifier.aclose()
    assert closed == [True]


@pytest.mark.parametrize(("value", "error"), [("on", ValueError), (1, TypeError)])
def test_a_bad_dpop_option_fails_at_construction(
    fake: FakeIssuer, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="dpop"):
        _verifier(fake, dpop=value)


def test_the_environment_names_the_mode(fake: FakeIssuer) -> None:
    env = {
        "RESOURCE_GUARD_ISSUER": fake.issuer,
        "RESOURCE_GUARD_AUDIENCE": ORDERS_AUDIENCE,
        "RESOURCE_GUARD_DPOP": "required",
    }
    assert TokenVerifier.from_env(env).dpop_policy().mode == "required"


async def test_trusted_issuers_use_the_policy_of_the_token_s_issuer(fake: FakeIssuer) -> None:
    other = FakeIssuer(issuer="https://other.example.com", audience=ORDERS_AUDIENCE)
    first = _verifier(fake, dpop="required")
    second = _verifier(other, dpop="off")
    issuers = TrustedIssuers([first, second])
    token = await issuers.verify(other.mint())
    assert issuers.dpop_policy(token) is second.dpop_policy()
    assert issuers.dpop_policy() is first.dpop_policy()
    stranger = AccessToken({}, frozenset(), datetime.now(UTC), issuer="https://gone.example")
    assert issuers.dpop_policy(stranger) is first.dpop_policy()


def test_trusted_templates_alone_challenge_with_a_default_policy() -> None:
    template = IssuerTemplate(
        "https://login.example.com/{tenant}/v2.0",
        ORDERS_AUDIENCE,
        jwks_uri="https://login.example.com/keys",
        tenants=["t1"],
    )
    assert TrustedIssuers([template]).dpop_policy().mode == "allowed"


def test_every_tenant_of_a_template_shares_one_policy() -> None:
    template = IssuerTemplate(
        "https://login.example.com/{tenant}/v2.0",
        ORDERS_AUDIENCE,
        jwks_uri="https://login.example.com/keys",
        tenants=["t1", "t2"],
        dpop="required",
    )
    first, second = template.build("t1"), template.build("t2")
    assert first.dpop_policy() is second.dpop_policy()
    assert first.dpop_policy().mode == "required"
