"""Pure key handling: which JWKs become verification keys, and which key a token gets."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import resource_guard._keyset as keyset_module
from resource_guard._fetch import MAX_DOCUMENT_BYTES
from resource_guard._keyset import KeySet, UnusableKeyError, VerificationKey, load_key
from resource_guard.exceptions import UnknownKeyError
from resource_guard.testing import SigningKey, generate_key

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
        pytest.param(jwk(EC, crv="P-384"), "curve", id="ec-curve-mismatch"),
        pytest.param(jwk(EC, y=jwk(EC)["x"]), "curve", id="ec-point-off-curve"),
        pytest.param(jwk(ED, crv="X25519"), "curve", id="okp-x25519"),
        pytest.param(jwk(ED, x="AAAA"), "length", id="okp-short"),
        pytest.param({"kty": "XYZ", "kid": "u"}, "unsupported key type", id="unknown-kty"),
    ],
)
def test_refuses_unusable_keys(document: object, reason: str) -> None:
    with pytest.raises(UnusableKeyError, match=reason):
        load_key(document)


def key_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "resource_guard.keys"]


def test_one_bad_key_never_spoils_the_set(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    oct_key = {"kty": "oct", "k": "c2VjcmV0", "kid": "bad"}
    document = {"keys": [jwk(RSA), oct_key, "x", jwk(EC), 1]}
    keys = KeySet.from_jwks(document)
    assert [key.kid for key in keys.keys] == ["rsa-1", "ec-1"]
    [summary] = key_records(caplog)  # one line for the whole document
    assert summary.levelname == "WARNING"
    message = summary.getMessage()
    assert message.startswith("skipped 3 of 5 JWKS keys: ")
    assert "not a JSON object (2 keys)" in message
    assert "symmetric keys are never used to verify (1 key: kid='bad')" in message
    assert "c2VjcmV0" not in caplog.text


def test_a_skipped_key_is_warned_about_once_not_on_every_refresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keycloak publishes an encryption key by default: one warning, not one per refresh;
    each fetch still leaves one summary line (DEBUG while nothing changes)."""
    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    document = {"keys": [jwk(RSA), jwk(RSA_NO_ALG, use="enc", alg=...)]}
    keys = KeySet.from_jwks(document)
    for _ in range(3):
        keys = KeySet.from_jwks(document, previous=keys)
    records = key_records(caplog)
    assert [record.levelname for record in records] == ["WARNING", "DEBUG", "DEBUG", "DEBUG"]
    assert "kid='rsa-2'" in records[0].getMessage()


def test_a_change_in_the_skipped_keys_is_warned_about_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    first = KeySet.from_jwks({"keys": [jwk(RSA), "x"]})
    second = KeySet.from_jwks({"keys": [jwk(RSA), "x", jwk(EC, use="enc")]}, previous=first)
    KeySet.from_jwks({"keys": [jwk(RSA), "x", jwk(EC, use="enc")]}, previous=second)
    records = key_records(caplog)
    assert [record.levelname for record in records] == ["WARNING", "WARNING", "DEBUG"]
    assert "kid='ec-1'" in records[1].getMessage()


def test_a_clean_jwks_logs_no_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    KeySet.from_jwks({"keys": [jwk(RSA), jwk(EC)]})
    assert key_records(caplog) == []


def test_a_junk_filled_jwks_is_judged_up_to_the_cap_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: 250 KiB of `1,` entries (under the size cap) around one real key cost ~1 s
    of blocked event loop and one WARNING per entry. Now: at most MAX_JWKS_KEYS entries are
    judged, and the whole document leaves one log line."""
    cap = keyset_module.MAX_JWKS_KEYS
    junk = 128_000
    document = {"keys": [jwk(EC), *[1] * junk]}
    assert len(json.dumps(document, separators=(",", ":"))) < MAX_DOCUMENT_BYTES
    judged: list[object] = []

    def counting_load_key(entry: object) -> VerificationKey:
        judged.append(entry)
        return load_key(entry)

    monkeypatch.setattr(keyset_module, "load_key", counting_load_key)
    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    keys = KeySet.from_jwks(document)
    assert [key.kid for key in keys.keys] == ["ec-1"]
    assert len(judged) == cap
    [summary] = key_records(caplog)
    assert summary.levelname == "WARNING"
    message = summary.getMessage()
    assert f"skipped {cap - 1} of {junk + 1} JWKS keys" in message
    assert f"{junk + 1 - cap} entries past the first {cap} were not examined" in message
    assert len(message) < 1000


def test_entries_past_the_cap_are_not_used(caplog: pytest.LogCaptureFixture) -> None:
    cap = keyset_module.MAX_JWKS_KEYS
    filler = [jwk(generate_key("ES256", f"filler-{index}")) for index in range(cap)]
    keys = KeySet.from_jwks({"keys": [*filler, jwk(RSA)]})
    assert len(keys) == cap
    with pytest.raises(UnknownKeyError):
        keys.select("rsa-1", "RS256")
    assert f"1 entries past the first {cap} were not examined" in caplog.text


def test_the_documented_cap_is_at_least_what_real_idps_publish() -> None:
    assert 20 <= keyset_module.MAX_JWKS_KEYS <= 1000


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


# -- interop: integers spelled shorter or longer than usual (same key) -------------------

EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
EC_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
SHORT_KEY_TRIES = 2000
"""Bound on keys generated to find one whose x or y has a leading zero octet. For P-256 and
P-384 one key in 128 has one: 2000 tries all fail about once in 6 million runs. For P-521
three keys in four have one (its top octet holds a single bit)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def minimal(value: int) -> str:
    """An unsigned integer in as few octets as it needs (what authlib writes)."""
    return b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def short_coordinate_key(alg: str, kid: str) -> tuple[SigningKey, dict[str, Any]]:
    """A real EC key whose x or y is shorter than the curve size, and its JWK spelled with
    minimal coordinates (leading zero octets dropped, as authlib does)."""
    size = EC_SIZES[alg]
    for _ in range(SHORT_KEY_TRIES):
        private = ec.generate_private_key(EC_CURVES[alg])
        point = private.public_key().public_numbers()
        if min(point.x.bit_length(), point.y.bit_length()) <= 8 * (size - 1):
            key = SigningKey(kid, alg, private)
            short = {**key.public_jwk(), "x": minimal(point.x), "y": minimal(point.y)}
            assert min(len(short["x"]), len(short["y"])) < len(key.public_jwk()["x"])
            return key, short
    pytest.fail(f"no {alg} key with a short coordinate in {SHORT_KEY_TRIES} tries")


@pytest.mark.parametrize("alg", list(EC_SIZES))
def test_ec_coordinates_shorter_than_the_curve_are_the_same_key(alg: str) -> None:
    key, short = short_coordinate_key(alg, "short")
    loaded = load_key(short)
    assert loaded.fits(alg)
    assert loaded.key == key.private_key.public_key()
    padded = KeySet.from_jwks({"keys": [key.public_jwk()]})
    again = KeySet.from_jwks({"keys": [short]}, previous=padded)
    assert again.keys[0] is padded.keys[0]  # one key, however it is spelled
    assert padded.revoke_missing_from(again) == []


@pytest.mark.parametrize("member", ["x", "y"])
@pytest.mark.parametrize("alg", list(EC_SIZES))
def test_an_ec_coordinate_longer_than_the_curve_is_refused(alg: str, member: str) -> None:
    key = generate_key(alg, "long")
    value = key.public_jwk()
    padded = base64.urlsafe_b64decode(value[member] + "==")
    assert len(padded) == EC_SIZES[alg]
    with pytest.raises(UnusableKeyError, match="longer than the curve size"):
        load_key({**value, member: b64url(b"\0" + padded)})


@pytest.mark.parametrize("member", ["n", "e"])
def test_rsa_members_with_a_leading_zero_octet_are_the_same_key(member: str) -> None:
    value = RSA.public_jwk()
    raw = base64.urlsafe_b64decode(value[member] + "==")
    assert raw[0] != 0
    loaded = load_key({**value, member: b64url(b"\0" + raw)})
    assert loaded.key == load_key(value).key
    before = KeySet.from_jwks({"keys": [value]})
    after = KeySet.from_jwks({"keys": [{**value, member: b64url(b"\0" + raw)}]}, previous=before)
    assert after.keys[0] is before.keys[0]


def test_the_summary_names_a_few_kids_and_reasons_then_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A JWKS of many odd keys still logs one bounded line: three kids per reason, five
    reasons, then how many more."""
    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    symmetric = [{"kty": "oct", "k": "c2VjcmV0", "kid": f"oct-{n}"} for n in range(5)]
    others = [
        jwk(RSA, use="enc"),
        jwk(RSA, key_ops=["encrypt"]),
        jwk(RSA, alg="ES256"),
        jwk(EC, crv="P-192"),
        {"kty": "XYZ"},
        {"kid": "no-kty"},
    ]
    KeySet.from_jwks({"keys": [*symmetric, *others, jwk(ED)]})
    [summary] = key_records(caplog)
    message = summary.getMessage()
    assert "(5 keys: kid='oct-0', kid='oct-1', kid='oct-2', ...)" in message
    assert message.endswith("2 more reasons")
    assert "oct-3" not in message


def test_a_kid_less_key_is_chosen_for_a_kid_less_token() -> None:
    key = load_key(jwk(EC, kid=...))
    keys = KeySet([key])
    assert keys.select(None, "ES256") is key
    with pytest.raises(UnknownKeyError):
        keys.select("ec-1", "ES256")
