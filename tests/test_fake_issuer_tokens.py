"""FakeIssuer: minting tokens: claims, headers, algorithms, keys, time."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from resource_guard.testing import CURRENT, FakeClock, FakeIssuer, read_unverified
from tests.fake_issuer_support import FAKE_ISSUER, verify

pytestmark = FAKE_ISSUER


def header_of(token: str) -> Any:
    """The JOSE header, decoded without any validation."""
    return read_unverified(token)[0]


# Minting ---------------------------------------------------------------------------------


def test_minted_token_has_the_default_claims_and_header() -> None:
    clock = FakeClock(1_700_000_000.0)
    fake = FakeIssuer(algorithm="EdDSA", clock=clock)
    token = fake.mint()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "kid": fake.current_key.kid, "typ": "at+jwt"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims.keys() == {"iss", "sub", "aud", "iat", "exp", "jti"}
    assert claims["iss"] == "https://issuer.example.test"
    assert claims["sub"] == "user-123"
    assert claims["aud"] == "api://default"
    assert (claims["iat"], claims["exp"]) == (1_700_000_000, 1_700_000_300)


def test_time_follows_the_injected_clock() -> None:
    clock = FakeClock(1_700_000_000.0)
    fake = FakeIssuer(algorithm="EdDSA", clock=clock)
    clock.now += 1000
    claims = jwt.decode(fake.mint(expires_in=60), options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1_700_001_000, 1_700_001_060)


def test_each_token_gets_a_fresh_jti(fake: FakeIssuer) -> None:
    first, second = (verify(fake, fake.mint())["jti"] for _ in range(2))
    assert first != second


def test_mint_options_shape_claims(fake: FakeIssuer) -> None:
    token = fake.mint(
        "svc",
        scopes="a b",
        audience=["api://one", "api://two"],
        client_id="cli",
        claims={"sub": "override", "extra": [1, 2]},
        omit=("jti",),
    )
    claims = verify(fake, token, audience="api://two")
    assert claims["sub"] == "override"
    assert claims["scope"] == "a b"
    assert claims["aud"] == ["api://one", "api://two"]
    assert claims["client_id"] == "cli"
    assert claims["extra"] == [1, 2]
    assert "jti" not in claims


def test_subject_none_omits_sub(fake: FakeIssuer) -> None:
    assert "sub" not in verify(fake, fake.mint(None))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"kid": None}, {"alg": "ES256", "typ": "at+jwt"}),
        ({"kid": "other"}, {"alg": "ES256", "typ": "at+jwt", "kid": "other"}),
        ({"kid": None, "typ": None}, {"alg": "ES256"}),
        ({"kid": None, "typ": "JWT"}, {"alg": "ES256", "typ": "JWT"}),
        (
            {"kid": None, "headers": {"jku": "https://evil.test/jwks", "crit": ["exp"]}},
            {"alg": "ES256", "typ": "at+jwt", "jku": "https://evil.test/jwks", "crit": ["exp"]},
        ),
    ],
    ids=["no-kid", "other-kid", "no-typ", "typ-jwt", "extra-headers"],
)
def test_header_options(
    fake: FakeIssuer, options: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert header_of(fake.mint(**options)) == expected


def test_minting_another_alg_publishes_a_key_for_it(fake: FakeIssuer) -> None:
    token = fake.mint(algorithm="PS384")
    assert jwt.get_unverified_header(token)["alg"] == "PS384"
    assert verify(fake, token)["sub"] == "user-123"
    assert fake.current_key.alg == "ES256"
    fake.mint(algorithm="PS384")
    assert [key.alg for key in fake.keys] == ["ES256", "PS384"]


def test_minting_the_current_alg_uses_the_current_key(fake: FakeIssuer) -> None:
    fake.add_key("ES256")
    header = jwt.get_unverified_header(fake.mint(algorithm="ES256"))
    assert header["kid"] == fake.current_key.kid


def test_current_sentinel_reads_well_in_signatures() -> None:
    assert repr(CURRENT) == "CURRENT"


def test_alg_none_makes_an_unsigned_token(fake: FakeIssuer) -> None:
    token = fake.mint(algorithm="none")
    assert token.endswith(".")
    assert jwt.get_unverified_header(token) == {"alg": "none", "typ": "at+jwt"}


def test_hmac_secret_signs_hs256(fake: FakeIssuer) -> None:
    secret = b"s" * 32
    token = fake.mint(algorithm="HS256", key=secret)
    assert jwt.decode(token, secret, algorithms=["HS256"], audience=fake.audience)["sub"]


def test_short_hmac_secret_signs_without_warning(fake: FakeIssuer) -> None:
    assert fake.mint(algorithm="HS256", key="short").count(".") == 2


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"key": "secret"}, ValueError),
        ({"key": "secret", "algorithm": "RS256"}, ValueError),
        ({"algorithm": "HS256"}, ValueError),
        ({"expires_in": 1.5}, TypeError),
        ({"scopes": ("a b",)}, ValueError),
        ({"scopes": 5}, TypeError),
        ({"audience": ""}, ValueError),
        ({"issued_at": float("nan")}, ValueError),
        ({"issued_at": "now"}, TypeError),
    ],
    ids=[
        "secret-without-alg",
        "secret-with-rsa-alg",
        "hmac-without-secret",
        "float-lifetime",
        "scope-with-space",
        "scopes-int",
        "empty-audience",
        "nan-time",
        "text-time",
    ],
)
def test_bad_mint_options_are_refused(
    fake: FakeIssuer, options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        fake.mint(**options)


def test_mint_expired_is_rejected_as_expired(fake: FakeIssuer) -> None:
    token = fake.mint_expired(scopes=("a",))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] <= time.time() - 3600
    assert claims["scope"] == "a"
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(fake, token, leeway=30)


def test_mint_not_yet_valid_is_rejected_as_immature(fake: FakeIssuer) -> None:
    token = fake.mint_not_yet_valid(ahead=600, claims={"extra": True})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["nbf"] == claims["iat"] >= time.time() + 599
    assert claims["exp"] > claims["nbf"]
    assert claims["extra"] is True
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(fake, token, leeway=30)
