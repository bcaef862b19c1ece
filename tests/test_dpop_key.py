"""DPoPKey: key generation, PEM round trips and the proofs it signs (RFC 9449 §4.2).

Proofs are checked with PyJWT, a JOSE implementation independent of ours.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa, x25519

from resource_guard._jwk import jwk_thumbprint
from resource_guard.dpop import DPoPKey
from tests.helpers import START

BAD: Any = 256
"""A value of the wrong type, for the checks that refuse one."""
ALGORITHMS = ("ES256", "ES384", "EdDSA", "RS256", "PS256")


def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def check(proof: str, key: DPoPKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``proof`` after PyJWT verified its signature with the header's jwk."""
    header = jwt.get_unverified_header(proof)
    public = jwt.PyJWK(header["jwk"], header["alg"]).key
    claims = jwt.decode(proof, public, algorithms=[key.algorithm], options={"verify_iat": False})
    return header, claims


@pytest.fixture(scope="module")
def keys() -> dict[str, DPoPKey]:
    """One key per algorithm (RSA generation is slow: once per module)."""
    return {algorithm: DPoPKey.generate(algorithm) for algorithm in ALGORITHMS}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_proof_is_a_signed_dpop_jwt_carrying_the_public_key(
    keys: dict[str, DPoPKey], algorithm: str
) -> None:
    key = keys[algorithm]
    header, claims = check(key.proof("POST", "https://api.test/orders", now=START), key)
    assert header == {"typ": "dpop+jwt", "alg": algorithm, "jwk": key.public_jwk}
    assert set(claims) == {"jti", "htm", "htu", "iat"}
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://api.test/orders"
    assert claims["iat"] == int(START)
    assert key.algorithm == algorithm


def test_es256_signatures_are_raw_r_and_s_not_der(keys: dict[str, DPoPKey]) -> None:
    signature = b64decode(keys["ES256"].proof("GET", "https://api.test/").rsplit(".", 1)[1])
    assert len(signature) == 64


def test_the_default_key_is_es256_on_p256() -> None:
    key = DPoPKey.generate()
    assert key.algorithm == "ES256"
    assert key.public_jwk["crv"] == "P-256"


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("https://api.test/orders?page=2#top", "https://api.test/orders"),
        ("https://api.test/orders#frag", "https://api.test/orders"),
        ("http://127.0.0.1:8000/a/b/", "http://127.0.0.1:8000/a/b/"),
        ("https://api.test", "https://api.test/"),
        ("https://me:secret@api.test:8443/orders", "https://api.test:8443/orders"),
    ],
    ids=["query-and-fragment", "fragment", "port-and-slash", "no-path", "userinfo-dropped"],
)
def test_htu_is_the_url_without_query_and_fragment(
    keys: dict[str, DPoPKey], url: str, htu: str
) -> None:
    _, claims = check(keys["ES256"].proof("GET", url), keys["ES256"])
    assert claims["htu"] == htu


def test_ath_is_the_base64url_sha256_of_the_access_token(keys: dict[str, DPoPKey]) -> None:
    token = "eyJhbGciOiJFUzI1NiJ9.e30.sig"
    _, claims = check(
        keys["EdDSA"].proof("GET", "https://api.test/", access_token=token), keys["EdDSA"]
    )
    digest = hashlib.sha256(token.encode()).digest()
    assert b64decode(claims["ath"]) == digest
    assert "=" not in claims["ath"]


def test_the_nonce_is_carried_when_given(keys: dict[str, DPoPKey]) -> None:
    _, claims = check(keys["ES256"].proof("GET", "https://api.test/", nonce="n-1"), keys["ES256"])
    assert claims["nonce"] == "n-1"


def test_every_proof_has_a_fresh_jti_of_at_least_128_bits(keys: dict[str, DPoPKey]) -> None:
    key = keys["ES256"]
    jtis = [check(key.proof("GET", "https://api.test/"), key)[1]["jti"] for _ in range(20)]
    assert len(set(jtis)) == 20
    assert all(len(b64decode(jti)) >= 16 for jti in jtis)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_public_jwk_has_no_private_member_and_gives_the_thumbprint(
    keys: dict[str, DPoPKey], algorithm: str
) -> None:
    key = keys[algorithm]
    jwk = key.public_jwk
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
    assert key.thumbprint == jwk_thumbprint(jwk)
    jwk["kty"] = "changed"  # a copy: the key is not affected
    assert key.public_jwk["kty"] != "changed"


def test_repr_shows_no_private_key(keys: dict[str, DPoPKey]) -> None:
    key = keys["ES256"]
    text = repr(key)
    assert text == f"DPoPKey(algorithm='ES256', thumbprint={key.thumbprint!r})"
    assert "PRIVATE" not in text


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_pem_round_trip_keeps_the_key(keys: dict[str, DPoPKey], algorithm: str) -> None:
    key = keys[algorithm]
    pem = key.private_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = DPoPKey.from_pem(pem, algorithm=algorithm)
    assert again.thumbprint == key.thumbprint
    assert again.algorithm == algorithm
    check(again.proof("GET", "https://api.test/"), again)


def test_an_encrypted_pem_needs_its_password(keys: dict[str, DPoPKey]) -> None:
    key = keys["ES256"]
    pem = key.private_pem(password="correct horse")
    assert b"ENCRYPTED" in pem
    assert DPoPKey.from_pem(pem.decode(), "correct horse").thumbprint == key.thumbprint
    assert DPoPKey.from_pem(pem, b"correct horse").thumbprint == key.thumbprint
    with pytest.raises(ValueError, match="not a usable PEM private key"):
        DPoPKey.from_pem(pem, "wrong")
    with pytest.raises(ValueError, match="not a usable PEM private key"):
        DPoPKey.from_pem(pem)


def test_rsa_keys_sign_rs256_unless_told_ps256(keys: dict[str, DPoPKey]) -> None:
    pem = keys["PS256"].private_pem()
    assert DPoPKey.from_pem(pem).algorithm == "RS256"
    assert DPoPKey.from_pem(pem, algorithm="PS256").algorithm == "PS256"


def test_save_writes_a_private_file_and_load_reads_it(
    keys: dict[str, DPoPKey], tmp_path: Path
) -> None:
    path = tmp_path / "dpop.pem"
    keys["EdDSA"].save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DPoPKey.load(path).thumbprint == keys["EdDSA"].thumbprint
    with pytest.raises(FileExistsError):
        keys["ES256"].save(path)
    assert DPoPKey.load(os.fspath(path)).algorithm == "EdDSA"


def test_save_with_a_password_encrypts(keys: dict[str, DPoPKey], tmp_path: Path) -> None:
    path = tmp_path / "dpop.pem"
    keys["ES384"].save(path, password="pw")
    assert DPoPKey.load(path, "pw").thumbprint == keys["ES384"].thumbprint


def _pem(private_key: Any) -> bytes:
    data: bytes = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a key", "not a usable PEM private key"),
        (b"-" * (64 * 1024 + 1), "too large"),
        (_pem(x25519.X25519PrivateKey.generate()), "X25519PrivateKey cannot sign"),
        (_pem(dsa.generate_private_key(2048)), "DSAPrivateKey cannot sign"),
        (_pem(ec.generate_private_key(ec.SECP521R1())), "secp521r1 is not supported"),
        (_pem(ec.generate_private_key(ec.SECP256K1())), "secp256k1 is not supported"),
        (_pem(rsa.generate_private_key(65537, 1024)), "at least 2048 bits"),
    ],
    ids=["garbage", "huge", "x25519", "dsa", "p521", "secp256k1", "rsa-1024"],
)
def test_unusable_pem_data_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DPoPKey.from_pem(data)


@pytest.mark.parametrize(
    ("algorithm", "wanted"),
    [("ES256", "ES384"), ("ES256", "RS256"), ("EdDSA", "ES256"), ("RS256", "ES256")],
)
def test_an_algorithm_the_key_cannot_sign_is_refused(
    keys: dict[str, DPoPKey], algorithm: str, wanted: str
) -> None:
    with pytest.raises(ValueError, match="this key cannot sign"):
        DPoPKey.from_pem(keys[algorithm].private_pem(), algorithm=wanted)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: DPoPKey.generate("HS256"), ValueError, "unsupported DPoP algorithm"),
        (lambda: DPoPKey.generate("none"), ValueError, "unsupported DPoP algorithm"),
        (lambda: DPoPKey.generate(BAD), TypeError, "algorithm must be a str"),
        (lambda: DPoPKey(BAD), TypeError, "private_key must be"),
        (
            lambda: DPoPKey(cast(Any, ec.generate_private_key(ec.SECP256R1()).public_key())),
            TypeError,
            "private_key must be",
        ),
        (
            lambda: DPoPKey(ec.generate_private_key(ec.SECP256R1()), algorithm=BAD),
            TypeError,
            "algorithm must be a str",
        ),
        (lambda: DPoPKey.from_pem(BAD), TypeError, "PEM bytes or str"),
        (lambda: DPoPKey.from_pem(b"x", password=BAD), TypeError, "password must be"),
    ],
    ids=["hmac", "none", "int-alg", "str-key", "public-key", "int-alg-init", "int-pem", "int-pw"],
)
def test_wrong_arguments_fail_with_a_clear_error(
    call: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    ("method", "url", "options", "error", "message"),
    [
        ("GET POST", "https://api.test/", {}, ValueError, "method must be an HTTP method"),
        ("", "https://api.test/", {}, ValueError, "method must be an HTTP method"),
        (None, "https://api.test/", {}, ValueError, "method must be an HTTP method"),
        ("GET", "/orders", {}, ValueError, "absolute http"),
        ("GET", "ftp://host/x", {}, ValueError, "absolute http"),
        ("GET", "http://[::1/x", {}, ValueError, "absolute http"),
        ("GET", "https://me@/x", {}, ValueError, "absolute http"),
        ("GET", b"https://api.test/", {}, TypeError, "url must be a str"),
        ("GET", "https://api.test/", {"access_token": "tök"}, ValueError, "ASCII"),
        ("GET", "https://api.test/", {"access_token": 5}, ValueError, "ASCII"),
        ("GET", "https://api.test/", {"nonce": ""}, ValueError, "nonce"),
        ("GET", "https://api.test/", {"nonce": 5}, ValueError, "nonce"),
    ],
    ids=[
        "space-method",
        "empty-method",
        "none-method",
        "relative-url",
        "ftp-url",
        "broken-url",
        "userinfo-without-host",
        "bytes-url",
        "non-ascii-token",
        "int-token",
        "empty-nonce",
        "int-nonce",
    ],
)
def test_a_proof_for_a_malformed_request_is_refused(
    keys: dict[str, DPoPKey],
    method: Any,
    url: Any,
    options: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        keys["ES256"].proof(method, url, **options)


def test_importing_the_dpop_package_does_not_import_redis() -> None:
    """``resource_guard.dpop.redis`` is the one module that needs the redis extra."""
    code = "import sys, resource_guard.dpop; print('redis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_a_proof_header_is_compact_json(keys: dict[str, DPoPKey]) -> None:
    header = b64decode(keys["ES256"].proof("GET", "https://api.test/").split(".")[0])
    assert b" " not in header
    assert json.loads(header)["typ"] == "dpop+jwt"


def test_the_algorithms_a_key_can_be_made_for() -> None:
    assert set(DPoPKey.ALGORITHMS) == set(ALGORITHMS)
