"""FakeIssuer: signing keys: generation, export, publishing, rotation, removal."""

from __future__ import annotations

import base64
import hashlib
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from resource_guard.testing import SUPPORTED_ALGORITHMS, FakeIssuer, SigningKey, generate_key
from tests.fake_issuer_support import FAKE_ISSUER, verify

pytestmark = FAKE_ISSUER

# Keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", SUPPORTED_ALGORITHMS)
def test_minted_tokens_verify_with_the_published_key(alg: str) -> None:
    fake = FakeIssuer(algorithm=alg)
    token = fake.mint(scopes=("orders:read",))
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert verify(fake, token)["scope"] == "orders:read"


@pytest.mark.parametrize(
    ("alg", "kty", "crv"),
    [
        ("PS256", "RSA", None),
        ("ES256", "EC", "P-256"),
        ("ES384", "EC", "P-384"),
        ("ES512", "EC", "P-521"),
        ("EdDSA", "OKP", "Ed25519"),
    ],
)
def test_public_jwk_has_the_right_key_type(alg: str, kty: str, crv: str | None) -> None:
    jwk = generate_key(alg, "k1").public_jwk()
    assert (jwk["kty"], jwk.get("crv"), jwk["kid"], jwk["alg"]) == (kty, crv, "k1", alg)


def test_default_kid_is_the_rfc7638_thumbprint() -> None:
    key = generate_key("ES256")
    members = key.public_jwk()
    canonical = json.dumps({k: members[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    assert key.kid == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_private_exports_round_trip() -> None:
    key = generate_key("ES256")
    loaded = serialization.load_pem_private_key(key.private_pem(), password=None)
    assert (
        loaded.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == key.public_pem()
    )
    assert "d" in key.private_jwk()
    assert "private_key" not in repr(key)


@pytest.mark.parametrize("alg", ["RS256", "ES384", "EdDSA"])
def test_private_jwk_loads_as_the_same_key(alg: str) -> None:
    key = generate_key(alg)
    private = jwt.PyJWK(key.private_jwk()).key
    token = jwt.encode({"sub": "x"}, private, algorithm=alg)
    public = jwt.PyJWK(key.public_jwk()).key
    assert jwt.decode(token, public, algorithms=[alg]) == {"sub": "x"}


@pytest.mark.parametrize(
    ("alg", "kid", "key_size", "error"),
    [
        ("HS256", None, None, ValueError),
        ("RS256", "", None, ValueError),
        ("ES256", None, 2048, ValueError),
        ("RS256", None, 512, ValueError),
        ("RS256", None, True, TypeError),
    ],
    ids=["hmac", "empty-kid", "key-size-on-ec", "rsa-512", "key-size-bool"],
)
def test_generate_key_refuses_bad_options(
    alg: str, kid: str | None, key_size: int | None, error: type
) -> None:
    with pytest.raises(error):
        generate_key(alg, kid, key_size=key_size)


def test_generated_key_is_not_published(fake: FakeIssuer) -> None:
    forged = fake.generate_key("ES256")
    assert forged.kid not in {key["kid"] for key in fake.jwks()["keys"]}
    token = fake.mint(key=forged)
    with pytest.raises(KeyError):
        verify(fake, token)


def test_weak_rsa_key_signs_without_warning(fake: FakeIssuer) -> None:
    weak = fake.add_key("RS256", key_size=1024)
    token = fake.mint(key=weak)
    assert jwt.get_unverified_header(token)["kid"] == weak.kid


def test_rotate_keys_keeps_old_key_published(fake: FakeIssuer) -> None:
    old_token = fake.mint()
    old = fake.current_key
    new = fake.rotate_keys()
    assert fake.current_key is new
    assert new.alg == old.alg
    assert [key.kid for key in fake.keys] == [old.kid, new.kid]
    assert jwt.get_unverified_header(fake.mint())["kid"] == new.kid
    assert verify(fake, old_token)["sub"] == "user-123"


def test_rotate_keys_can_change_algorithm(fake: FakeIssuer) -> None:
    assert fake.rotate_keys("EdDSA").alg == "EdDSA"
    assert jwt.get_unverified_header(fake.mint())["alg"] == "EdDSA"


def test_add_key_can_publish_a_prepared_key(fake: FakeIssuer) -> None:
    prepared = generate_key("ES384", "prepared")
    assert fake.add_key(prepared, make_current=True) is prepared
    assert fake.current_key is prepared


def test_remove_key_unpublishes_it(fake: FakeIssuer) -> None:
    old = fake.current_key
    token = fake.mint()
    new = fake.rotate_keys()
    fake.remove_key(old.kid)
    assert [key["kid"] for key in fake.jwks()["keys"]] == [new.kid]
    with pytest.raises(KeyError):
        verify(fake, token)


def test_removing_the_current_key_falls_back_to_the_newest_one(fake: FakeIssuer) -> None:
    older = fake.current_key
    newer = fake.add_key("EdDSA")
    fake.remove_key(older.kid)
    assert fake.current_key is newer


def test_minting_with_no_published_key_says_what_to_do(fake: FakeIssuer) -> None:
    fake.remove_key(fake.current_key.kid)
    assert fake.jwks() == {"keys": []}
    with pytest.raises(RuntimeError, match="add_key"):
        fake.mint()


def test_remove_unknown_kid_raises_key_error(fake: FakeIssuer) -> None:
    with pytest.raises(KeyError):
        fake.remove_key("no-such-kid")


def test_raw_jwks_are_published_verbatim_and_removable(fake: FakeIssuer) -> None:
    raw = {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}
    fake.publish_raw_jwk(raw)
    fake.publish_raw_jwk("not a JWK")
    raw["kid"] = "mutated-after-publishing"
    keys = fake.jwks()["keys"]
    assert keys[1:] == [{"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}, "not a JWK"]
    fake.remove_key("sym")
    assert fake.jwks()["keys"][1:] == ["not a JWK"]
    assert [key.kid for key in fake.keys] == [fake.current_key.kid]


def test_raw_jwk_must_be_json(fake: FakeIssuer) -> None:
    with pytest.raises(TypeError):
        fake.publish_raw_jwk({"kty": object()})


def test_signing_key_is_a_frozen_dataclass() -> None:
    key = generate_key("EdDSA", "k")
    assert isinstance(key, SigningKey)
    with pytest.raises(AttributeError):
        key.kid = "other"  # type: ignore[misc]
