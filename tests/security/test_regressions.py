"""Bugs the security suite found, each pinned by the smallest example that showed it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from resource_guard import (
    InvalidTokenError,
    InvalidTokenTypeError,
    TokenVerifier,
    UnsupportedAlgorithmError,
)
from resource_guard._keyset import KeySet, UnusableKeyError, load_key
from resource_guard.testing import SigningKey, generate_key

from ._harness import AUDIENCE, Guarded, assert_served, b64url

ISSUER = "https://issuer.example.test"
GOOD = generate_key("ES256", "good")


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD.public_jwk(), "kid": "odd", **changes}


# Found by test_fuzz_jwks_documents: a JSON array or object where a string belongs made
# `crv`/`alg` unhashable, so the dict lookup raised TypeError instead of UnusableKeyError.
ODD_MEMBERS = [
    pytest.param(_with(crv=[]), id="ec-crv-list"),
    pytest.param(_with(crv={"name": "P-256"}), id="ec-crv-object"),
    pytest.param({"kty": "OKP", "crv": [], "x": "AAAA"}, id="okp-crv-list"),
    pytest.param(_with(alg=["ES256"]), id="alg-list"),
    pytest.param(_with(alg={"name": "ES256"}), id="alg-object"),
]


@pytest.mark.parametrize("jwk", ODD_MEMBERS)
def test_a_jwk_member_of_the_wrong_json_type_makes_the_key_unusable(jwk: dict[str, Any]) -> None:
    with pytest.raises(UnusableKeyError):
        load_key(jwk)


@pytest.mark.parametrize("jwk", ODD_MEMBERS)
def test_one_odd_jwk_does_not_spoil_the_key_set(jwk: dict[str, Any]) -> None:
    keys = KeySet.from_jwks({"keys": [jwk, GOOD.public_jwk()]})
    assert [key.kid for key in keys.keys] == ["good"]


@pytest.mark.parametrize("jwk", ODD_MEMBERS)
async def test_one_odd_jwk_does_not_stop_the_good_key_from_verifying(
    jwk: dict[str, Any],
) -> None:
    document = {"keys": [jwk, GOOD.public_jwk()]}
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=document))
    )
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks_uri=ISSUER + "/jwks", http_client=client)
    app = Guarded(verifier)
    try:
        assert_served(await app.send(_token(GOOD)))
    finally:
        await app.aclose()
        await verifier.aclose()
        await client.aclose()


def _token(key: SigningKey) -> str:
    from resource_guard.testing import FakeIssuer

    return FakeIssuer(ISSUER, audience=AUDIENCE).mint(key=key, algorithm=key.alg)


# Found by the Wycheproof JWK vectors (tcId 7): a key from the flawed Infineon generator
# (ROCA, CVE-2017-15361) was accepted. Any power of 65537 has the same fingerprint.
def test_a_modulus_with_the_roca_fingerprint_is_refused() -> None:
    n = 65537**129  # 2065 bits, of the form 65537**a: what ROCA moduli look like mod small primes
    jwk = {"kty": "RSA", "n": b64url(n.to_bytes((n.bit_length() + 7) // 8, "big")), "e": "AQAB"}
    with pytest.raises(UnusableKeyError, match="ROCA"):
        load_key(jwk)


# Found by the attack suite (the typ-* rows): the 401 reply quoted the token's own `typ`
# (and, before a concurrent fix, its `alg`) in error_description.
@pytest.mark.parametrize("error", [InvalidTokenTypeError, UnsupportedAlgorithmError])
def test_the_reply_to_a_refused_typ_or_alg_does_not_quote_it(error: type[Exception]) -> None:
    refused = error("the header value 'CANARY<script>' is refused")
    assert isinstance(refused, InvalidTokenError)
    assert "CANARY" not in refused.description
