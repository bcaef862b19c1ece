"""IssuerTemplate: Entra-style issuers, one per tenant, one JWKS shared by every tenant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from resource_guard import (
    AccessToken,
    ExpiredTokenError,
    InvalidTokenError,
    IssuerTemplate,
    TokenVerifier,
    TrustedIssuers,
    UnknownIssuerError,
    UnknownKeyError,
)
from resource_guard.testing import FakeClock, FakeIssuer, generate_key
from tests.helpers import ORDERS_AUDIENCE

ORIGIN = "https://login.entra.test"
TEMPLATE = ORIGIN + "/{tenant}/v2.0"
KEYS = ORIGIN + "/common/jwks.json"
TENANT_1 = "0b5a1d53-6c5e-4c1f-9a64-7c3f1f0c1a01"
TENANT_2 = "6f1e9c2a-1d4b-4e8a-b1c3-2a7d9e5f0b02"
OUTSIDER = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b03"


@pytest.fixture
def entra(clock: FakeClock) -> FakeIssuer:
    """The JWKS every tenant shares (``/common/jwks.json``); tokens name their tenant."""
    return FakeIssuer(ORIGIN + "/common", audience=ORDERS_AUDIENCE, algorithm="ES256", clock=clock)


def of_tenant(entra: FakeIssuer, tenant: str, **options: Any) -> str:
    return entra.mint(claims={"iss": TEMPLATE.format(tenant=tenant), "tid": tenant}, **options)


def template(entra: FakeIssuer, clock: FakeClock, **options: Any) -> IssuerTemplate:
    return IssuerTemplate(
        TEMPLATE,
        ORDERS_AUDIENCE,
        jwks_uri=KEYS,
        http_client=entra.async_client(),
        clock=clock,
        **options,
    )


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(ORIGIN + "/common/v2.0", "exactly once", id="no-placeholder"),
        pytest.param(ORIGIN + "/{tenant}/{tenant}", "exactly once", id="twice"),
        pytest.param(ORIGIN + "/{tenant}/{other}", "no other braces", id="other-braces"),
        pytest.param(ORIGIN + "/{tenant}}/v2.0", "no other braces", id="stray-brace"),
        pytest.param(ORIGIN + "/t-{tenant}/v2.0", "whole path segment", id="segment-prefix"),
        pytest.param(ORIGIN + "/{tenant}x/v2.0", "whole path segment", id="segment-suffix"),
        pytest.param("https://{tenant}.b2c.test/v2.0", "whole path segment", id="in-the-host"),
        pytest.param("https://{tenant}/v2.0", "whole path segment", id="the-host"),
        pytest.param(ORIGIN + "/{tenant}?x=1", "whole path segment", id="query-after"),
        pytest.param(ORIGIN + "/x?y=/{tenant}", "query or fragment", id="in-a-query"),
        pytest.param("http://login.entra.test/{tenant}/v2.0", "https", id="plain-http"),
    ],
)
def test_a_bad_template_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IssuerTemplate(text, ORDERS_AUDIENCE, jwks_uri=KEYS, tenants=[TENANT_1])


async def asynchronous_decider(tenant: str) -> bool:  # refused before it could run
    return True


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"template": 42}, TypeError, "template must be"),
        ({"jwks_uri": None}, TypeError, "jwks_uri must be"),
        ({"jwks_uri": "ftp://keys"}, ValueError, "jwks_uri"),
        ({"tenants": None}, ValueError, "say which tenants"),
        ({"tenants": TENANT_1}, TypeError, "a lone string"),
        ({"tenants": 42}, TypeError, "list of tenant ids"),
        ({"tenants": [TENANT_1, 7]}, TypeError, "must hold strings"),
        ({"tenants": []}, ValueError, "must not be empty"),
        ({"tenants": [TENANT_1], "any_tenant": True}, ValueError, "not both"),
        ({"tenants": asynchronous_decider}, TypeError, "not async"),
        ({"tenants": None, "any_tenant": "yes"}, TypeError, "any_tenant must be a bool"),
        ({"max_tenants": 0}, ValueError, "max_tenants"),
        ({"key_source": None}, ValueError, "builds the one key source"),
        ({"leeway": -1}, ValueError, "leeway"),
        ({"colour": "blue"}, TypeError, "colour"),
        ({"issuer": ORIGIN}, TypeError, "issuer"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], error: type, message: str) -> None:
    settings: dict[str, Any] = {
        "template": TEMPLATE,
        "audience": ORDERS_AUDIENCE,
        "jwks_uri": KEYS,
        "tenants": [TENANT_1],
    }
    settings.update(options)
    with pytest.raises(error, match=message):
        IssuerTemplate(**settings)


BAD_TENANT_IDS = {
    "slash": "a/b",
    "dot-dot": "..",
    "dots-inside": "a..b",
    "empty": "",
    "too-long": "a" * 129,
    "leading-dash": "-a",
    "leading-dot": ".a",
    "question-mark": "a?b",
    "hash": "a#b",
    "percent": "a%2fb",
    "space": "a b",
    "backslash": "a\\b",
    "non-ascii": "tenänt",
    "brace": "{tenant}",
}


@pytest.mark.parametrize("tenant", BAD_TENANT_IDS.values(), ids=BAD_TENANT_IDS.keys())
def test_a_malformed_tenant_id_is_refused_in_the_allowlist(tenant: str) -> None:
    with pytest.raises(ValueError, match="tenant id"):
        IssuerTemplate(TEMPLATE, ORDERS_AUDIENCE, jwks_uri=KEYS, tenants=[TENANT_1, tenant])


def test_the_allowlist_is_bounded() -> None:
    many = [f"t{n}" for n in range(10_001)]
    with pytest.raises(ValueError, match="at most 10000"):
        IssuerTemplate(TEMPLATE, ORDERS_AUDIENCE, jwks_uri=KEYS, tenants=many)


def test_the_longest_tenant_id_is_128_characters() -> None:
    tenant = "a" * 128
    made = IssuerTemplate(TEMPLATE, ORDERS_AUDIENCE, jwks_uri=KEYS, tenants=[tenant, tenant])
    assert made.tenants == (tenant,)  # repeats are dropped


def test_properties(entra: FakeIssuer, clock: FakeClock) -> None:
    listed = template(entra, clock, tenants=[TENANT_1, TENANT_2])
    assert listed.template == TEMPLATE
    assert listed.tenant_policy == "allowlist"
    assert listed.tenants == (TENANT_1, TENANT_2)
    assert listed.issuers == (TEMPLATE.format(tenant=TENANT_1), TEMPLATE.format(tenant=TENANT_2))
    assert listed.max_tenants == 2
    assert listed.audiences == (ORDERS_AUDIENCE,)
    assert listed.key_source.issuer == TEMPLATE
    assert listed.issuer_for("x") == ORIGIN + "/x/v2.0"
    assert repr(listed) == f"IssuerTemplate({TEMPLATE!r}, tenants=allowlist)"
    decided = template(entra, clock, tenants=lambda tenant: True, max_tenants=5)
    assert (decided.tenant_policy, decided.tenants, decided.issuers) == ("callable", (), ())
    assert decided.max_tenants == 5
    anyone = template(entra, clock, any_tenant=True)
    assert anyone.tenant_policy == "any"
    assert anyone.max_tenants == 100


@pytest.mark.parametrize(
    ("issuer", "tenant"),
    [
        (ORIGIN + "/abc/v2.0", "abc"),
        (ORIGIN + "/a.b-c_d/v2.0", "a.b-c_d"),
        (ORIGIN + "/v2.0", None),
        (ORIGIN + "//v2.0", None),
        (ORIGIN + "/a/b/v2.0", None),
        (ORIGIN + "/../v2.0", None),
        (ORIGIN + "/abc/v2.0/", None),
        (ORIGIN + "/abc/V2.0", None),
        (ORIGIN.upper() + "/abc/v2.0", None),
        ("https://login.entra.test.evil/abc/v2.0", None),
        ("https://evil.test/https://login.entra.test/abc/v2.0", None),
        (ORIGIN + "/abc/v2.0?x=/v2.0", None),
        (ORIGIN + "/abc#/v2.0", None),
        (ORIGIN + "/" + "a" * 129 + "/v2.0", None),
    ],
)
def test_tenant_of_reads_only_a_well_formed_tenant(issuer: str, tenant: str | None) -> None:
    made = IssuerTemplate(TEMPLATE, ORDERS_AUDIENCE, jwks_uri=KEYS, any_tenant=True)
    assert made.tenant_of(issuer) == tenant


@pytest.mark.parametrize(
    ("text", "issuer", "tenant"),
    [
        pytest.param(
            "https://sts.windows.net/{tenant}/",
            f"https://sts.windows.net/{TENANT_1}/",
            TENANT_1,
            id="entra-v1",
        ),
        pytest.param(
            "https://login.microsoftonline.com/{tenant}/v2.0",
            f"https://login.microsoftonline.com/{TENANT_1}/v2.0",
            TENANT_1,
            id="entra-v2",
        ),
        pytest.param("https://idp.test/{tenant}", "https://idp.test/acme", "acme", id="last"),
        pytest.param(
            "https://idp.test/{tenant}", "https://idp.test/acme/", None, id="last-with-slash"
        ),
    ],
)
def test_templates_of_known_shapes(text: str, issuer: str, tenant: str | None) -> None:
    made = IssuerTemplate(text, ORDERS_AUDIENCE, jwks_uri=KEYS, any_tenant=True)
    assert made.tenant_of(issuer) == tenant


def test_build_refuses_a_malformed_tenant(entra: FakeIssuer, clock: FakeClock) -> None:
    made = template(entra, clock, any_tenant=True)
    with pytest.raises(ValueError, match="not a valid tenant id"):
        made.build("a/b")
    built = made.build(TENANT_1)
    assert built.issuer == TEMPLATE.format(tenant=TENANT_1)
    assert built.key_source is made.key_source


# -- the allowlist -----------------------------------------------------------------------------


async def test_allowlisted_tenants_are_accepted_with_their_own_issuer(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1, TENANT_2])])
    assert trusted.issuers == (TEMPLATE.format(tenant=TENANT_1), TEMPLATE.format(tenant=TENANT_2))
    first = await trusted.verify(of_tenant(entra, TENANT_1, scopes="orders:read"))
    second = await trusted.verify(of_tenant(entra, TENANT_2))
    assert first.issuer == TEMPLATE.format(tenant=TENANT_1)
    assert first.claims["tid"] == TENANT_1
    assert first.scopes == {"orders:read"}
    assert second.issuer == TEMPLATE.format(tenant=TENANT_2)
    assert entra.counts["jwks"] == 1  # one key set serves every tenant
    verifier = trusted.verifier_for(first.issuer)
    assert verifier is not None
    assert verifier.issuer == first.issuer
    assert trusted.verifier_for(TEMPLATE.format(tenant=OUTSIDER)) is None
    assert trusted.trusts(TEMPLATE.format(tenant=TENANT_2))
    assert not trusted.trusts(TEMPLATE.format(tenant=OUTSIDER))


TENANT_REFUSALS: dict[str, str] = {
    "not-listed": TEMPLATE.format(tenant=OUTSIDER),
    "case-of-tenant": TEMPLATE.format(tenant=TENANT_1.upper()),
    "trailing-slash": TEMPLATE.format(tenant=TENANT_1) + "/",
    "slash-in-tenant": TEMPLATE.format(tenant=TENANT_1 + "/x"),
    "dot-dot-tenant": TEMPLATE.format(tenant=".."),
    "traversal": ORIGIN + f"/x/../{TENANT_1}/v2.0",
    "too-long": TEMPLATE.format(tenant="a" * 129),
    "empty-tenant": TEMPLATE.format(tenant=""),
    "look-alike-host": f"https://login.entra.test.evil/{TENANT_1}/v2.0",
    "look-alike-userinfo": f"https://login.entra.test@evil.test/{TENANT_1}/v2.0",
    "other-version": ORIGIN + f"/{TENANT_1}/v1.0",
    "the-template-itself": TEMPLATE,
    "query-smuggled": TEMPLATE.format(tenant=TENANT_1 + "?x=/v2.0"),
}


@pytest.mark.parametrize("issuer", TENANT_REFUSALS.values(), ids=TENANT_REFUSALS.keys())
async def test_a_tenant_not_trusted_is_refused_without_a_fetch(
    entra: FakeIssuer, clock: FakeClock, issuer: str
) -> None:
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1, TENANT_2])])
    with pytest.raises(UnknownIssuerError):
        await trusted.verify(entra.mint(claims={"iss": issuer}))
    assert sum(entra.counts.values()) == 0


async def test_the_refusal_says_the_tenant_is_not_trusted(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1])])
    with pytest.raises(UnknownIssuerError, match="names a tenant that is not trusted"):
        await trusted.verify(of_tenant(entra, OUTSIDER))
    with pytest.raises(UnknownIssuerError, match="names no trusted issuer"):
        await trusted.verify(entra.mint(claims={"iss": "https://evil.test/x/v2.0"}))


async def test_a_tenant_s_token_must_be_signed_with_the_shared_keys(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1])])
    attacker = generate_key("ES256")
    forged = entra.mint(claims={"iss": TEMPLATE.format(tenant=TENANT_1)}, key=attacker)
    with pytest.raises(UnknownKeyError):
        await trusted.verify(forged)


async def test_a_template_checks_what_a_verifier_checks(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1])])
    with pytest.raises(InvalidTokenError, match="'aud'"):
        await trusted.verify(of_tenant(entra, TENANT_1, audience="api://other"))
    token = of_tenant(entra, TENANT_1, expires_in=60)
    await trusted.verify(token)
    clock.advance(60 + 30 + 1)
    assert trusted.cached(token) is None
    with pytest.raises(ExpiredTokenError):
        await trusted.verify(token)


async def test_configured_issuers_and_templates_live_side_by_side(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    """An IdP migration: the old issuer and the new tenants, each with its own verifier; a
    configured issuer wins over a template that would also match it."""
    old = FakeIssuer(
        "https://old-idp.test", audience=ORDERS_AUDIENCE, algorithm="ES256", clock=clock
    )
    exact_tenant = TokenVerifier(
        TEMPLATE.format(tenant=OUTSIDER),
        "api://special",
        key_source=template(entra, clock, any_tenant=True).key_source,
        clock=clock,
    )
    trusted = TrustedIssuers(
        [
            TokenVerifier(old.issuer, ORDERS_AUDIENCE, http_client=old.async_client(), clock=clock),
            template(entra, clock, any_tenant=True),
            exact_tenant,
        ]
    )
    assert (await trusted.verify(old.mint())).issuer == old.issuer
    assert (await trusted.verify(of_tenant(entra, TENANT_2))).issuer.endswith(TENANT_2 + "/v2.0")
    special = await trusted.verify(of_tenant(entra, OUTSIDER, audience="api://special"))
    assert special.issuer == TEMPLATE.format(tenant=OUTSIDER)
    assert trusted.verifier_for(special.issuer) is exact_tenant
    assert trusted.audiences == (ORDERS_AUDIENCE, "api://special")


async def test_templates_are_tried_in_order(entra: FakeIssuer, clock: FakeClock) -> None:
    narrow = template(entra, clock, tenants=[TENANT_1])
    other = IssuerTemplate(
        ORIGIN + "/{tenant}",
        ORDERS_AUDIENCE,
        jwks_uri=KEYS,
        any_tenant=True,
        http_client=entra.async_client(),
        clock=clock,
    )
    trusted = TrustedIssuers([narrow, other])
    assert trusted.templates == (narrow, other)
    # "v2.0" is a tenant of the second template only; TENANT_2 fits neither.
    accepted = await trusted.verify(entra.mint(claims={"iss": ORIGIN + "/v2.0", "tid": "v2.0"}))
    assert accepted.issuer == ORIGIN + "/v2.0"
    with pytest.raises(UnknownIssuerError, match="tenant that is not trusted"):
        await trusted.verify(of_tenant(entra, TENANT_2))


# -- a callable decides ------------------------------------------------------------------------


async def test_a_callable_decides_on_every_token(entra: FakeIssuer, clock: FakeClock) -> None:
    allowed = {TENANT_1}
    asked: list[str] = []

    def decide(tenant: str) -> bool:
        asked.append(tenant)
        return tenant in allowed

    trusted = TrustedIssuers([template(entra, clock, tenants=decide)])
    token = of_tenant(entra, TENANT_1)
    assert (await trusted.verify(token)).issuer == TEMPLATE.format(tenant=TENANT_1)
    assert trusted.cached(token) is not None
    assert trusted.verifier_for(TEMPLATE.format(tenant=TENANT_1)) is not None
    with pytest.raises(UnknownIssuerError):
        await trusted.verify(of_tenant(entra, TENANT_2))
    allowed.clear()  # the customer left: even tokens verified before are refused
    assert trusted.cached(token) is None
    with pytest.raises(UnknownIssuerError):
        await trusted.verify(token)
    assert set(asked) == {TENANT_1, TENANT_2}


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda tenant: "yes", id="truthy-string"),
        pytest.param(lambda tenant: 1, id="one"),
        pytest.param(lambda tenant: None, id="none"),
    ],
)
async def test_only_true_trusts_a_tenant(
    entra: FakeIssuer, clock: FakeClock, answer: Callable[[str], Any]
) -> None:
    trusted = TrustedIssuers([template(entra, clock, tenants=answer)])
    with pytest.raises(UnknownIssuerError):
        await trusted.verify(of_tenant(entra, TENANT_1))


async def test_a_failing_callable_refuses_and_is_logged(
    entra: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    failing = True

    def decide(tenant: str) -> bool:
        if failing:
            raise ConnectionError("tenant database down")
        return True

    trusted = TrustedIssuers([template(entra, clock, tenants=decide)])
    token = of_tenant(entra, TENANT_1)
    with (
        caplog.at_level(logging.ERROR, logger="resource_guard.issuers"),
        pytest.raises(UnknownIssuerError),
    ):
        await trusted.verify(token)
    assert "ConnectionError" in caplog.text
    assert token not in caplog.text
    failing = False
    await trusted.verify(token)
    failing = True
    assert trusted.cached(token) is None  # never raises
    assert sum(entra.counts.values()) == 1  # one fetch, by the one token let through


# -- any tenant, bounded -----------------------------------------------------------------------


async def test_any_tenant_keeps_a_bounded_number_of_tenant_verifiers(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    made = template(entra, clock, any_tenant=True, max_tenants=2)
    trusted = TrustedIssuers([made])
    tenants = [f"tenant-{n}" for n in range(4)]
    tokens = [of_tenant(entra, tenant) for tenant in tenants]
    kept = []
    for token in tokens:
        accepted = await trusted.verify(token)
        kept.append(trusted.verifier_for(accepted.issuer))
    assert [trusted.cached(token) is not None for token in tokens] == [False, False, True, True]
    assert trusted.verifier_for(TEMPLATE.format(tenant="tenant-3")) is kept[3]
    fresh = trusted.verifier_for(TEMPLATE.format(tenant="tenant-0"))
    assert fresh is not None
    assert fresh is not kept[0]
    assert fresh.key_source is made.key_source
    assert (await trusted.verify(tokens[0])).subject == "user-123"
    assert entra.counts["jwks"] == 1


async def test_forged_tokens_of_new_tenants_push_no_tenant_out(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    """A tenant's verifier is kept only once one of its tokens verified: a flood of forged
    tokens naming made-up tenants leaves the tenants in use (and their caches) alone."""
    trusted = TrustedIssuers([template(entra, clock, any_tenant=True, max_tenants=1)])
    token = of_tenant(entra, TENANT_1)
    verified = await trusted.verify(token)
    attacker = generate_key("ES256")
    for n in range(20):
        forged = entra.mint(claims={"iss": TEMPLATE.format(tenant=f"made-up-{n}")}, key=attacker)
        with pytest.raises(UnknownKeyError):
            await trusted.verify(forged)
    assert trusted.cached(token) is verified
    assert entra.counts["jwks"] == 1  # unknown kids inside the cooldown fetch nothing


async def test_a_template_starts_and_closes_its_shared_keys(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    made = template(entra, clock, tenants=[TENANT_1])
    async with TrustedIssuers([made]) as trusted:
        assert entra.counts["jwks"] == 1
        await trusted.verify(of_tenant(entra, TENANT_1))
        assert entra.counts["jwks"] == 1
    assert made.key_source.status().usable


async def test_an_evicted_tenant_without_a_cache_is_fine(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    trusted = TrustedIssuers([template(entra, clock, any_tenant=True, max_tenants=1, cache_size=0)])
    for tenant in (TENANT_1, TENANT_2, TENANT_1):
        token = of_tenant(entra, tenant)
        assert (await trusted.verify(token)).claims["tid"] == tenant
        assert trusted.cached(token) is None


# -- TokenVerifier(key_source=...): what a template builds on -----------------------------------


def test_key_source_must_be_a_verifier_s(entra: FakeIssuer) -> None:
    owner = TokenVerifier(entra.issuer, ORDERS_AUDIENCE, jwks_uri=KEYS)
    with pytest.raises(TypeError, match="key_source must be"):
        TokenVerifier(entra.issuer, ORDERS_AUDIENCE, key_source=KEYS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        TokenVerifier(ORIGIN + "/x", ORDERS_AUDIENCE, key_source=owner.key_source, jwks_uri=KEYS)
    with pytest.raises(ValueError, match="not both"):
        TokenVerifier(
            ORIGIN + "/x",
            ORDERS_AUDIENCE,
            key_source=owner.key_source,
            http_client=entra.async_client(),
        )


async def test_verifiers_sharing_a_key_source_fetch_once(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    owner = TokenVerifier(
        TEMPLATE.format(tenant=TENANT_1),
        ORDERS_AUDIENCE,
        jwks_uri=KEYS,
        http_client=entra.async_client(),
        clock=clock,
    )
    sharer = TokenVerifier(
        TEMPLATE.format(tenant=TENANT_2), ORDERS_AUDIENCE, key_source=owner.key_source, clock=clock
    )
    assert sharer.key_source is owner.key_source
    await sharer.start()
    await owner.start()
    assert (await sharer.verify(of_tenant(entra, TENANT_2))).issuer.endswith(TENANT_2 + "/v2.0")
    assert (await owner.verify(of_tenant(entra, TENANT_1))).issuer.endswith(TENANT_1 + "/v2.0")
    assert entra.counts["jwks"] == 1
    await sharer.aclose()  # leaves the shared source to its owner...
    assert len(asyncio.all_tasks()) == 2  # ...whose refresher still runs
    await owner.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- the tenant claim (tid) --------------------------------------------------------------------

TID_REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "other-tenant": ({"tid": TENANT_2}, "'tid' claim does not have the required value"),
    "missing": ({}, "'tid' claim is required"),
    "upper-case": ({"tid": TENANT_1.upper()}, "'tid' claim does not have the required value"),
    "not-a-string": ({"tid": 7}, "'tid' claim does not have the required value"),
}


@pytest.mark.parametrize(
    ("claims", "message"), TID_REFUSALS.values(), ids=list(TID_REFUSALS.keys())
)
async def test_a_tenant_s_token_must_name_that_tenant_in_tid(
    entra: FakeIssuer, clock: FakeClock, claims: dict[str, Any], message: str
) -> None:
    """Microsoft's rule for multi-tenant apps: the tenant of ``iss`` is the ``tid``."""
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1, TENANT_2])])
    token = entra.mint(claims={"iss": TEMPLATE.format(tenant=TENANT_1), **claims})
    with pytest.raises(InvalidTokenError, match=message):
        await trusted.verify(token)
    assert trusted.cached(token) is None


async def test_tenant_claim_none_checks_no_claim(entra: FakeIssuer, clock: FakeClock) -> None:
    """An IdP whose tokens carry no tenant claim: ``tenant_claim=None``."""
    trusted = TrustedIssuers([template(entra, clock, tenants=[TENANT_1], tenant_claim=None)])
    verified = await trusted.verify(entra.mint(claims={"iss": TEMPLATE.format(tenant=TENANT_1)}))
    assert verified.issuer == TEMPLATE.format(tenant=TENANT_1)
    assert "tid" not in verified.claims


async def test_another_tenant_claim_can_be_named(entra: FakeIssuer, clock: FakeClock) -> None:
    made = template(entra, clock, any_tenant=True, tenant_claim="tenant")
    assert made.tenant_claim == "tenant"
    trusted = TrustedIssuers([made])
    issuer = TEMPLATE.format(tenant=TENANT_2)
    assert (await trusted.verify(entra.mint(claims={"iss": issuer, "tenant": TENANT_2}))).issuer
    with pytest.raises(InvalidTokenError, match="'tenant' claim is required"):
        await trusted.verify(entra.mint(claims={"iss": issuer, "tid": TENANT_2}))


async def test_claim_values_keep_applying_beside_the_tenant_claim(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    made = template(entra, clock, tenants=[TENANT_1], claim_values={"ver": "2.0"})
    trusted = TrustedIssuers([made])
    issuer = TEMPLATE.format(tenant=TENANT_1)
    good = entra.mint(claims={"iss": issuer, "tid": TENANT_1, "ver": "2.0"})
    assert (await trusted.verify(good)).issuer == issuer
    with pytest.raises(InvalidTokenError, match="'ver'"):
        await trusted.verify(of_tenant(entra, TENANT_1))


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"tenant_claim": 7}, TypeError, "tenant_claim must be"),
        ({"tenant_claim": ""}, ValueError, "tenant_claim must be"),
        ({"tenant_claim": "tid", "claim_values": {"tid": TENANT_1}}, ValueError, "tenant_claim"),
    ],
)
def test_bad_tenant_claims_are_refused(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        IssuerTemplate(TEMPLATE, ORDERS_AUDIENCE, jwks_uri=KEYS, tenants=[TENANT_1], **options)


# -- the DPoP policy of a tenant's token -------------------------------------------------------


async def test_a_tenant_token_keeps_its_template_s_policy_without_asking_the_callable(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    """The policy of an accepted token never depends on the callable's later answers: a
    tenant dropped between verify() and the DPoP check must not fall back to a laxer one."""
    trusted_now = {TENANT_1}
    asked: list[str] = []

    def decide(tenant: str) -> bool:
        asked.append(tenant)
        return tenant in trusted_now

    made = template(entra, clock, tenants=decide, dpop="required")
    lax = TokenVerifier(
        "https://lax.test", ORDERS_AUDIENCE, http_client=entra.async_client(), dpop="off"
    )
    trusted = TrustedIssuers([lax, made])
    token = await trusted.verify(of_tenant(entra, TENANT_1))
    trusted_now.clear()
    asked.clear()
    assert trusted.dpop_policy(token) is made.dpop_policy()
    assert made.dpop_policy().mode == "required"
    assert asked == []  # one dict look-up per template: no callable, no verifier built


async def test_an_evicted_tenant_s_token_keeps_its_template_s_policy(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    made = template(entra, clock, any_tenant=True, max_tenants=1, dpop="required")
    lax = TokenVerifier(
        "https://lax.test", ORDERS_AUDIENCE, http_client=entra.async_client(), dpop="off"
    )
    trusted = TrustedIssuers([lax, made])
    first = await trusted.verify(of_tenant(entra, TENANT_1))
    await trusted.verify(of_tenant(entra, TENANT_2))  # TENANT_1's verifier leaves
    assert trusted.dpop_policy(first) is made.dpop_policy()


def test_templates_alone_challenge_with_the_first_template_s_policy(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    made = template(entra, clock, tenants=[TENANT_1], dpop="required")
    assert TrustedIssuers([made]).dpop_policy() is made.dpop_policy()


async def test_the_policy_follows_the_template_that_accepted_the_token(
    entra: FakeIssuer, clock: FakeClock
) -> None:
    """``https://login.entra.test/a/b`` fits both templates (tenant ``b``, tenant ``a``):
    before any token, the first that fits answers; once the second accepted one, it."""
    first = IssuerTemplate(
        ORIGIN + "/a/{tenant}", ORDERS_AUDIENCE, jwks_uri=KEYS, tenants=lambda _: False
    )
    second = IssuerTemplate(
        ORIGIN + "/{tenant}/b",
        ORDERS_AUDIENCE,
        jwks_uri=KEYS,
        any_tenant=True,
        http_client=entra.async_client(),
        clock=clock,
        dpop="off",
    )
    trusted = TrustedIssuers([first, second])
    issuer = ORIGIN + "/a/b"
    stranger = AccessToken({}, frozenset(), datetime.now(UTC), issuer=issuer)
    assert trusted.dpop_policy(stranger) is first.dpop_policy()
    accepted = await trusted.verify(entra.mint(claims={"iss": issuer, "tid": "a"}))
    assert trusted.dpop_policy(accepted) is second.dpop_policy()
    nobody = AccessToken({}, frozenset(), datetime.now(UTC))  # names no issuer
    assert trusted.dpop_policy(nobody) is first.dpop_policy()
