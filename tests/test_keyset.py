"""Pure key handling: which JWKs become verification keys, and which key a token gets."""

from __future__ import annotations

from typing import Any

import pytest

from resource_guard._keyset import KeySet, UnusableKeyError, load_key
from resource_guard.exceptions import UnknownKeyError
from resource_guard.testing._keys import SigningKey, generate_key

RSA = generate_key("RS256", "rsa-1")
RSA_NO_ALG = generate_key("RS256", "rsa-2")
EC = generate_key("ES256", "ec-1")
EC384 = generate_key("ES384", "ec-384")
ED = generate_key("EdDSA", "ed-1")


def jwk(key: SigningKey, **changes: Any) -> dict[str, Any]:
    value = key.public_jwk()
    value.update(changes)
    return {name: item for name, item in value.items() if item is not ...}


@pytest.mark.parametrize(
    ("key", "alg"),
    [(RSA, "RS256"), (EC, "ES256"), (EC384, "ES384"), (ED, "EdDSA"), (ED, "Ed25519")],
)
def test_loads_public_keys(key: SigningKey, alg: str) -> None:
    loaded = load_key(jwk(key, alg=...))
    assert loaded.kid == key.kid
    assert loaded.fits(alg)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        pytest.param("text", "not a JSON object", id="not-object"),
        pytest.param({"kid": "x"}, "kty", id="no-kty"),
        pytest.param(jwk(RSA, kid=5), "kid", id="kid-number"),
        pytest.param(jwk(RSA, use="enc"), "use", id="use-enc"),
        pytest.param(jwk(RSA, key_ops=["encrypt"]), "key_ops", id="key-ops-without-verify"),
        pytest.param(jwk(RSA, key_ops="verify"), "key_ops", id="key-ops-string"),
        pytest.param(jwk(RSA, alg="RSA-OAEP"), "alg", id="encryption-alg"),
        pytest.param(jwk(RSA, alg="ES256"), "alg", id="alg-for-other-kty"),
        pytest.param(jwk(RSA, alg="HS256"), "alg", id="hmac-alg"),
        pytest.param(RSA.private_jwk(), "private", id="rsa-private"),
        pytest.param(EC.private_jwk(), "private", id="ec-private"),
        pytest.param(ED.private_jwk(), "private", id="okp-private"),
        pytest.param({"kty": "oct", "k": "c2VjcmV0"}, "symmetric", id="oct"),
        pytest.param({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, "symmetric", id="oct-hs256"),
        pytest.param(jwk(generate_key("RS256", "weak", key_size=1024)), "2048", id="rsa-1024-bits"),
        pytest.param(jwk(RSA, n=...), "'n'", id="rsa-no-n"),
        pytest.param(jwk(RSA, e="!!"), "base64url", id="rsa-bad-e"),
        pytest.param(jwk(RSA, e="AA"), "RSA", id="rsa-zero-exponent"),
        pytest.param(jwk(EC, crv="P-192"), "curve", id="ec-unknown-curve"),
        pytest.param(jwk(EC, crv="P-384"), "length", id="ec-curve-mismatch"),
        pytest.param(jwk(EC, y=jwk(EC)["x"]), "curve", id="ec-point-off-curve"),
        pytest.param(jwk(ED, crv="X25519"), "curve", id="okp-x25519"),
        pytest.param(jwk(ED, x="AAAA"), "length", id="okp-short"),
        pytest.param({"kty": "XYZ", "kid": "u"}, "unsupported key type", id="unknown-kty"),
    ],
)
def test_refuses_unusable_keys(document: object, reason: str) -> None:
    with pytest.raises(UnusableKeyError, match=reason):
        load_key(document)


def test_one_bad_key_never_spoils_the_set(caplog: pytest.LogCaptureFixture) -> None:
    document = {"keys": [jwk(RSA), {"kty": "oct", "k": "c2VjcmV0", "kid": "bad"}, "x", jwk(EC)]}
    keys = KeySet.from_jwks(document)
    assert [key.kid for key in keys.keys] == ["rsa-1", "ec-1"]
    assert "kid='bad'" in caplog.text
    assert "c2VjcmV0" not in caplog.text


def test_a_skipped_key_is_warned_about_once_not_on_every_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keycloak publishes an encryption key by default: one warning, not one per refresh."""
    document = {"keys": [jwk(RSA), jwk(RSA_NO_ALG, use="enc", alg=...)]}
    keys = KeySet.from_jwks(document)
    for _ in range(3):
        keys = KeySet.from_jwks(document, previous=keys)
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "kid='rsa-2'" in warnings[0].getMessage()


@pytest.mark.parametrize("document", [{}, {"keys": {}}, [], None, {"keys": "x"}])
def test_a_document_without_a_keys_list_is_refused(document: object) -> None:
    with pytest.raises(ValueError, match="'keys' list"):
        KeySet.from_jwks(document)


def test_selects_by_kid_and_algorithm() -> None:
    keys = KeySet([load_key(jwk(RSA)), load_key(jwk(EC))])
    assert keys.select("rsa-1", "RS256").kid == "rsa-1"
    assert keys.select("ec-1", "ES256").kid == "ec-1"


@pytest.mark.parametrize(
    ("kid", "alg"),
    [
        pytest.param("missing", "RS256", id="unknown-kid"),
        pytest.param("rsa-1", "ES256", id="kid-of-other-key-type"),
        pytest.param("rsa-1", "RS384", id="jwk-alg-differs-from-header"),
        pytest.param("ec-1", "ES384", id="curve-does-not-fit"),
        pytest.param("rsa-1", "HS256", id="hmac-never-fits"),
        pytest.param("rsa-1", "none", id="none-never-fits"),
    ],
)
def test_refuses_keys_that_do_not_fit(kid: str, alg: str) -> None:
    keys = KeySet([load_key(jwk(RSA)), load_key(jwk(EC))])
    with pytest.raises(UnknownKeyError):
        keys.select(kid, alg)


def test_jwk_without_alg_fits_every_algorithm_of_its_type() -> None:
    key = load_key(jwk(RSA_NO_ALG, alg=...))
    assert all(key.fits(alg) for alg in ("RS256", "RS512", "PS256", "PS512"))
    assert not key.fits("ES256")


def test_token_without_kid_needs_exactly_one_fitting_key() -> None:
    one_rsa = KeySet([load_key(jwk(RSA)), load_key(jwk(EC))])
    assert one_rsa.select(None, "RS256").kid == "rsa-1"
    two_rsa = KeySet([load_key(jwk(RSA)), load_key(jwk(RSA_NO_ALG, alg=...))])
    with pytest.raises(UnknownKeyError, match="2 keys fit"):
        two_rsa.select(None, "RS256")
    with pytest.raises(UnknownKeyError, match="no published key fits"):
        one_rsa.select(None, "EdDSA")


def test_unknown_kid_message_is_bounded_and_escaped() -> None:
    keys = KeySet([load_key(jwk(RSA))])
    with pytest.raises(UnknownKeyError) as caught:
        keys.select("x\n" * 100, "RS256")
    assert "\n" not in caught.value.message
    assert len(caught.value.message) < 120


def test_refresh_reuses_unchanged_keys_and_revokes_dropped_ones() -> None:
    first = KeySet.from_jwks({"keys": [jwk(RSA), jwk(EC)]})
    second = KeySet.from_jwks({"keys": [jwk(RSA), jwk(ED)]}, previous=first)
    assert second.keys[0] is first.keys[0]
    dropped = first.revoke_missing_from(second)
    assert [key.kid for key in dropped] == ["ec-1"]
    assert first.keys[1].revoked
    assert not second.keys[0].revoked


def test_same_kid_with_new_material_is_a_new_key() -> None:
    first = KeySet.from_jwks({"keys": [jwk(RSA)]})
    rotated = generate_key("RS256", "rsa-1")
    second = KeySet.from_jwks({"keys": [jwk(rotated)]}, previous=first)
    assert second.keys[0] is not first.keys[0]
    assert first.revoke_missing_from(second) == [first.keys[0]]
