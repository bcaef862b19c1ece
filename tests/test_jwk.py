"""Public JWKs of our keys and RFC 7638 thumbprints (the ``jkt`` of DPoP)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from resource_guard._jwk import jwk_thumbprint, public_jwk

RFC7638_KEY = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
        "c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YG"
        "jQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt"
        "-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDK"
        "gw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
"""The example of RFC 7638 §3.1, whose thumbprint §3.1 gives."""


def test_the_rfc_7638_example() -> None:
    assert jwk_thumbprint(RFC7638_KEY) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_members_outside_the_required_set_change_nothing() -> None:
    trimmed = {name: RFC7638_KEY[name] for name in ("e", "kty", "n")}
    assert jwk_thumbprint({**trimmed, "use": "sig"}) == jwk_thumbprint(RFC7638_KEY)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["P-256", "P-384", "Ed25519", "RSA"],
)
def test_a_private_key_and_its_public_half_give_the_same_public_members(key: Any) -> None:
    jwk = public_jwk(key)
    assert jwk == public_jwk(key.public_key())
    assert "d" not in jwk
    assert len(jwk_thumbprint(jwk)) == 43


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "EC, OKP or RSA only"),
        ({"n": "AQAB"}, "EC, OKP or RSA only"),
        ({"kty": 1}, "EC, OKP or RSA only"),
        ({"kty": "EC", "crv": "P-256", "x": "AA"}, "needs 'y'"),
        ({"kty": "OKP", "crv": "Ed25519", "x": 5}, "needs 'x'"),
    ],
    ids=["symmetric", "no-kty", "kty-not-a-string", "member-missing", "member-not-a-string"],
)
def test_no_thumbprint_without_the_required_members(jwk: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jwk_thumbprint(jwk)
