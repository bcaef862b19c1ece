"""TrustedIssuers over loopback HTTP: request counters prove what causes a fetch, and the
middleware protects an app for tokens of two issuers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import (
    BearerAuthMiddleware,
    IssuerTemplate,
    TokenVerifier,
    TrustedIssuers,
    UnknownIssuerError,
    UnknownKeyError,
)
from resource_guard.middleware import get_access_token
from resource_guard.testing import FakeClock, FakeIssuer, generate_key
from tests.asgi_client import call, lifespan
from tests.helpers import ORDERS_AUDIENCE, bearer

COOLDOWN = 30
TENANTS = [f"tenant-{n}" for n in range(10)]


@pytest.fixture
def idps(clock: FakeClock) -> Iterator[list[FakeIssuer]]:
    """Three issuers served on loopback, and an Entra-like one whose tenants share a JWKS."""
    made = [
        FakeIssuer(f"https://idp-{name}.test/{name}", algorithm="ES256", clock=clock)
        for name in ("a", "b", "c", "entra")
    ]
    with made[0].serve(), made[1].serve(), made[2].serve(), made[3].serve():
        yield made


def trusted_of(idps: list[FakeIssuer], clock: FakeClock) -> TrustedIssuers:
    *fixed, entra = idps
    verifiers: list[TokenVerifier | IssuerTemplate] = [
        TokenVerifier(idp.issuer, idp.audience, clock=clock, cooldown=COOLDOWN) for idp in fixed
    ]
    verifiers.append(
        IssuerTemplate(
            entra.issuer.removesuffix("/entra") + "/{tenant}/v2.0",
            entra.audience,
            jwks_uri=entra.jwks_uri,
            tenants=TENANTS,
            clock=clock,
            cooldown=COOLDOWN,
        )
    )
    return TrustedIssuers(verifiers)


def tenant_issuer(entra: FakeIssuer, tenant: str) -> str:
    return entra.issuer.removesuffix("/entra") + f"/{tenant}/v2.0"


def fetches(idps: list[FakeIssuer]) -> list[dict[str, int]]:
    return [dict(idp.counts) for idp in idps]


async def test_tokens_of_every_issuer_are_accepted(
    idps: list[FakeIssuer], clock: FakeClock
) -> None:
    *fixed, entra = idps
    async with trusted_of(idps, clock) as trusted:
        for idp in fixed:
            assert (await trusted.verify(idp.mint())).issuer == idp.issuer
        for tenant in TENANTS[:3]:
            token = entra.mint(claims={"iss": tenant_issuer(entra, tenant), "tid": tenant})
            assert (await trusted.verify(token)).issuer == tenant_issuer(entra, tenant)
        # Discovery for each configured issuer, none for the tenants: their JWKS is given.
        assert fetches(idps) == [{"discovery": 1, "jwks": 1}] * 3 + [{"jwks": 1}]


async def test_tokens_of_untrusted_issuers_cause_no_request(
    idps: list[FakeIssuer], clock: FakeClock
) -> None:
    """Unknown issuers, look-alikes of the configured ones and tenants not on the list, each
    signed with a real key of the issuer it imitates: not one request, started or not."""
    *fixed, entra = idps
    trusted = trusted_of(idps, clock)
    untrusted = [
        *(f"https://idp-{n}.test/x" for n in range(20)),
        *(idp.issuer + "/" for idp in fixed),
        *(idp.issuer.upper() for idp in fixed),
        *(tenant_issuer(entra, f"outsider-{n}") for n in range(20)),
        tenant_issuer(entra, "tenant-1/../tenant-2"),
    ]
    for issuer in untrusted:
        with pytest.raises(UnknownIssuerError):
            await trusted.verify(fixed[0].mint(claims={"iss": issuer}))
    assert fetches(idps) == [{}] * 4
    await trusted.start()
    before = fetches(idps)
    for issuer in untrusted:
        with pytest.raises(UnknownIssuerError):
            await trusted.verify(entra.mint(claims={"iss": issuer}))
    assert fetches(idps) == before
    await trusted.aclose()


async def test_a_flood_of_unknown_kids_costs_each_issuer_one_fetch_per_cooldown(
    idps: list[FakeIssuer], clock: FakeClock
) -> None:
    """Random kids naming every configured issuer and ten tenants: each issuer's JWKS (and
    the one all tenants share) is fetched at most once more per cooldown."""
    *fixed, entra = idps
    attacker = generate_key("ES256")

    def forged(issuer: str) -> str:
        return entra.mint(claims={"iss": issuer}, key=attacker, kid=secrets.token_urlsafe(8))

    issuers = [idp.issuer for idp in fixed] + [tenant_issuer(entra, t) for t in TENANTS]
    async with trusted_of(idps, clock) as trusted:
        started = [idp.counts["jwks"] for idp in idps]
        assert started == [1, 1, 1, 1]
        # The start-up fetch opened a cooldown; each later one allows one refetch.
        for round_ in range(3):
            for _ in range(5):
                for issuer in issuers:
                    with pytest.raises(UnknownKeyError):
                        await trusted.verify(forged(issuer))
            assert [idp.counts["jwks"] for idp in idps] == [1 + round_] * 4
            clock.advance(COOLDOWN + 1)


async def test_a_tenant_verified_once_shares_the_key_source(
    idps: list[FakeIssuer], clock: FakeClock
) -> None:
    *_, entra = idps
    async with trusted_of(idps, clock) as trusted:
        template = trusted.templates[0]
        for tenant in TENANTS:
            await trusted.verify(
                entra.mint(claims={"iss": tenant_issuer(entra, tenant), "tid": tenant})
            )
            verifier = trusted.verifier_for(tenant_issuer(entra, tenant))
            assert verifier is not None
            assert verifier.key_source is template.key_source
        assert entra.counts == {"jwks": 1}


# -- the middleware ----------------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    token = get_access_token(request)
    assert token is not None
    return JSONResponse({"issuer": token.issuer, "subject": token.subject})


@requires("orders:read")
async def orders(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def test_the_middleware_takes_trusted_issuers(clock: FakeClock) -> None:
    """Tokens of two issuers get through, each with its issuer; a token naming another
    issuer is a 401 ``invalid_token`` and no request to any issuer."""
    first = FakeIssuer(
        "https://first.test", audience=ORDERS_AUDIENCE, algorithm="ES256", clock=clock
    )
    second = FakeIssuer(
        "https://second.test/realm", audience=ORDERS_AUDIENCE, algorithm="EdDSA", clock=clock
    )
    with first.serve(), second.serve():
        trusted = TrustedIssuers(
            [
                TokenVerifier(first.issuer, ORDERS_AUDIENCE, clock=clock),
                TokenVerifier(second.issuer, ORDERS_AUDIENCE, clock=clock),
            ]
        )
        app = BearerAuthMiddleware(
            Starlette(routes=[Route("/whoami", whoami), Route("/orders", orders)]),
            verifier=trusted,
        )
        async with lifespan(app):
            counts = [dict(first.counts), dict(second.counts)]
            assert counts == [{"discovery": 1, "jwks": 1}] * 2
            for idp, subject in ((first, "alice"), (second, "bob")):
                headers = bearer(idp.mint(subject, scopes="orders:read"))
                for _ in range(2):  # verified, then answered from the cache
                    reply = await call(app, path="/whoami", headers=headers)
                    assert reply.status == 200
                    assert reply.json() == {"issuer": idp.issuer, "subject": subject}
                assert (await call(app, path="/orders", headers=headers)).status == 200
            no_scope = bearer(second.mint("carol"))
            assert (await call(app, path="/orders", headers=no_scope)).status == 403
            stranger = bearer(first.mint(claims={"iss": "https://third.test"}))
            refused = await call(app, path="/whoami", headers=stranger)
            assert refused.status == 401
            assert refused.json() == {
                "error": "invalid_token",
                "error_description": "the token's issuer is not trusted",
            }
            assert [dict(first.counts), dict(second.counts)] == counts
