"""Memory an attacker (or plain traffic) could grow stays bounded.

The verified-token cache holds at most ``cache_size`` entries under a stream of distinct
valid tokens and never holds a refused one; the parser's header cache stays bounded under
distinct headers. benchmarks/memory_tokens.py measures the same with a million tokens.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from resource_guard import InvalidTokenError, TokenVerifier
from resource_guard.testing import FakeClock, FakeIssuer, SigningKey, generate_key
from tests.helpers import START

from ._harness import AUDIENCE, b64url, json_bytes, signed

ISSUER = "https://issuer.example.test"
CACHE_SIZE = 64


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("EdDSA", "bounds")


@pytest.fixture
async def verifier(key: SigningKey) -> AsyncIterator[TokenVerifier]:
    fake = FakeIssuer(ISSUER, audience=AUDIENCE)
    fake.add_key(key, make_current=True)
    async with (
        fake.async_client() as client,
        TokenVerifier(
            ISSUER, AUDIENCE, http_client=client, cache_size=CACHE_SIZE, clock=FakeClock(START)
        ) as started,
    ):
        yield started


def distinct_tokens(key: SigningKey, kid: str | None = None) -> Iterator[str]:
    """An endless stream of distinct valid tokens (a new ``jti`` each)."""
    header = b64url(json_bytes({"alg": "EdDSA", "kid": kid or key.kid, "typ": "at+jwt"}))
    for n in itertools.count():
        claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": 1_800_003_600, "jti": f"t-{n}"}
        yield signed(header, b64url(json_bytes(claims)), key, "EdDSA")


def cache_entries(verifier: TokenVerifier) -> int:
    cache = verifier.token_cache
    assert cache is not None
    assert cache.maxsize == CACHE_SIZE
    return len(cache)


async def test_the_verified_token_cache_never_exceeds_cache_size(
    verifier: TokenVerifier, key: SigningKey
) -> None:
    sizes = []
    for token in itertools.islice(distinct_tokens(key), 20 * CACHE_SIZE):
        await verifier.verify(token)
        sizes.append(cache_entries(verifier))
    assert max(sizes) == CACHE_SIZE
    assert sizes[CACHE_SIZE - 1 :] == [CACHE_SIZE] * (len(sizes) - CACHE_SIZE + 1)


async def test_refused_tokens_never_take_a_cache_entry(
    verifier: TokenVerifier, key: SigningKey
) -> None:
    forger = generate_key("EdDSA", key.kid)
    wrong_audience = (
        signed(
            b64url(json_bytes({"alg": "EdDSA", "kid": key.kid})),
            b64url(json_bytes({"iss": ISSUER, "aud": "api://other", "exp": 1_800_003_600})),
            key,
            "EdDSA",
        ),
    )
    refused = itertools.chain(
        itertools.islice(distinct_tokens(forger), 200),  # bad signatures
        itertools.islice(distinct_tokens(key, kid="unknown"), 200),  # unknown kid
        wrong_audience,
    )
    for token in refused:
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)
    assert cache_entries(verifier) == 0


async def test_distinct_headers_do_not_grow_the_header_cache(
    verifier: TokenVerifier, key: SigningKey
) -> None:
    for n in range(2_000):
        with pytest.raises(InvalidTokenError):
            await verifier.verify(next(distinct_tokens(key, kid=f"kid-{n}")))
    assert len(verifier._parser._headers) <= 256
