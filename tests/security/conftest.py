"""Hypothesis profiles for the security suite, chosen with ``HYPOTHESIS_PROFILE``.

``default`` (what ``make test`` runs) is bounded, fast and deterministic; ``campaign`` (what
``make fuzz`` runs: ``HYPOTHESIS_PROFILE=campaign pytest tests/security -k fuzz``) tries many
more, randomised examples.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import HealthCheck, settings

from resource_guard import TokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer, generate_key
from tests.helpers import START

from ._harness import AUDIENCE, Guarded, Keys, Kit, b64url

settings.register_profile(
    "default",
    max_examples=100,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "campaign",
    max_examples=5_000,
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# -- the legitimate issuer, the attacker's issuer and the app under attack --------------


@pytest.fixture(scope="session")
def security_clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=generate_key("RS256"),
        rsa2=generate_key("RS256"),
        ec=generate_key("ES256"),
        ed=generate_key("EdDSA"),
        rogue_rsa=generate_key("RS256"),
        rogue_ec=generate_key("ES256"),
        rogue_ed=generate_key("EdDSA"),
        oct_secret=b"a-shared-secret-the-attacker-knows",
    )


@pytest.fixture(scope="session")
def legit_issuer(keys: Keys, security_clock: FakeClock) -> Iterator[FakeIssuer]:
    """The trusted issuer, served on 127.0.0.1 and fetched over real HTTP."""
    fake = FakeIssuer(audience=AUDIENCE, clock=security_clock)
    for key in (keys.rsa, keys.rsa2, keys.ec, keys.ed):
        fake.add_key(key, make_current=key is keys.rsa)
    fake.publish_raw_jwk({"kty": "oct", "kid": "shared", "k": b64url(keys.oct_secret)})
    with fake.serve():
        yield fake


@pytest.fixture(scope="session")
def attacker_issuer(security_clock: FakeClock) -> Iterator[FakeIssuer]:
    """An issuer the attacker controls, also on 127.0.0.1: it must never hear from us."""
    with FakeIssuer(audience=AUDIENCE, clock=security_clock).serve() as fake:
        yield fake


@pytest.fixture
def kit(
    legit_issuer: FakeIssuer, keys: Keys, security_clock: FakeClock, attacker_issuer: FakeIssuer
) -> Iterator[Kit]:
    security_clock.now = START
    attacker_before = sum(attacker_issuer.counts.values())
    yield Kit(legit_issuer, keys, security_clock, attacker_issuer)
    assert sum(attacker_issuer.counts.values()) == attacker_before, "the attacker was contacted"


@pytest.fixture(scope="session")
def tls_context() -> ssl.SSLContext:
    """Loading the CA bundle takes ~50 ms: do it once, not for every verifier's client."""
    return ssl.create_default_context()


@pytest.fixture
async def idp_client(tls_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the verifier, configured like the one it would create itself."""
    async with httpx.AsyncClient(
        verify=tls_context,
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    ) as client:
        yield client


@pytest.fixture
async def guarded(kit: Kit, idp_client: httpx.AsyncClient) -> AsyncIterator[Guarded]:
    """The protected app, its verifier started (keys fetched) before the first request."""
    verifier = TokenVerifier(
        kit.iss, AUDIENCE, jwks_uri=kit.fake.jwks_uri, clock=kit.clock, http_client=idp_client
    )
    await verifier.start()
    assert verifier.key_source.last_error is None
    app = Guarded(verifier, kit.fake)
    yield app
    await app.aclose()
    await verifier.aclose()
