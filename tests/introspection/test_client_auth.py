"""How the resource server authenticates to the introspection endpoint: each method
against the fake issuer (which checks it), and the credentials checked at construction."""

from __future__ import annotations

import base64
import logging
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from resource_guard import IntrospectionUnavailableError
from resource_guard._client_auth import ASSERTION_TYPE, ClientAuthentication, basic_authorization
from resource_guard.testing import FakeClock, FakeIssuer, generate_key

from .conftest import CLIENT_ID, MakeVerifier


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_secret_methods_are_accepted_by_the_issuer(
    issuer: FakeIssuer, make_verifier: MakeVerifier, method: str
) -> None:
    verifier = make_verifier(client_auth=method)
    assert (await verifier.verify(issuer.issue_opaque())).subject == "user-123"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_a_wrong_secret_is_refused_by_the_issuer(
    issuer: FakeIssuer, make_verifier: MakeVerifier, method: str
) -> None:
    verifier = make_verifier(client_auth=method, client_secret="nope")
    with pytest.raises(IntrospectionUnavailableError, match="HTTP 401"):
        await verifier.verify(issuer.issue_opaque())


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
async def test_private_key_jwt_is_accepted_by_the_issuer(
    issuer: FakeIssuer, make_verifier: MakeVerifier, algorithm: str
) -> None:
    key = generate_key(algorithm)
    issuer.register_client_key("rs-with-key", key)
    verifier = make_verifier(
        client_id="rs-with-key",
        private_key=key.private_pem(),
        private_key_id=key.kid,
        private_key_algorithm=algorithm if algorithm == "PS256" else None,
    )
    assert verifier.client_auth == "private_key_jwt"
    for _ in range(2):  # a fresh assertion (jti) every call
        await verifier.verify(issuer.issue_opaque(expires_in=600))
        verifier.cache.clear()
    assert issuer.introspection_count == 2


async def test_private_key_jwt_with_an_unregistered_key_is_refused(
    issuer: FakeIssuer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.register_client_key("rs-with-key", generate_key("ES256"))
    other = generate_key("ES256")
    verifier = make_verifier(client_id="rs-with-key", private_key=other.private_key)
    with pytest.raises(IntrospectionUnavailableError, match="HTTP 401"):
        await verifier.verify(issuer.issue_opaque())
    assert "private_key_jwt" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_the_assertion_follows_rfc_7523() -> None:
    key = generate_key("ES256")
    auth = ClientAuthentication.create("rs", private_key=key.private_key, key_id="k1")
    headers, form = auth.apply("https://idp.test/introspect", 1_800_000_000)
    assert headers == {}
    assert form["client_id"] == "rs"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    header = jwt.get_unverified_header(form["client_assertion"])
    assert header == {"alg": "ES256", "typ": "JWT", "kid": "k1"}
    claims = jwt.decode(
        form["client_assertion"],
        key.private_key.public_key(),
        algorithms=["ES256"],
        audience="https://idp.test/introspect",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "rs"
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["jti"]) >= 20
    other = auth.apply("https://idp.test/introspect", 1_800_000_000)[1]
    assert (
        jwt.decode(other["client_assertion"], options={"verify_signature": False})["jti"]
        != (claims["jti"])
    )
    fixed = ClientAuthentication.create(
        "rs",
        private_key=key.private_key,
        assertion_audience="https://idp.test",
        assertion_lifetime=30,
    )
    claims = jwt.decode(
        fixed.assertion("https://idp.test/introspect", 0), options={"verify_signature": False}
    )
    assert (claims["aud"], claims["exp"]) == ("https://idp.test", 30)
    assert "kid" not in jwt.get_unverified_header(fixed.assertion("https://x.test", 0))


def test_basic_credentials_are_form_encoded_first() -> None:
    value = basic_authorization("my client", "p@ss:word/+")
    decoded = base64.b64decode(value.removeprefix("Basic ")).decode()
    assert decoded == "my+client:p%40ss%3Aword%2F%2B"
    auth = ClientAuthentication.create("c", client_secret="s", method="client_secret_post")
    assert auth.apply("https://x.test", 0) == ({}, {"client_id": "c", "client_secret": "s"})
    assert "supersecret" not in repr(ClientAuthentication.create("c", client_secret="supersecret"))
    key = generate_key("ES256")
    assert "PRIVATE" not in repr(ClientAuthentication.create("c", private_key=key.private_key))


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (lambda: ec.generate_private_key(ec.SECP521R1()), "ES512"),
        (ed25519.Ed25519PrivateKey.generate, "EdDSA"),
    ],
    ids=["rsa", "p256", "p384", "p521", "ed25519"],
)
def test_the_algorithm_follows_the_key(key: Any, algorithm: str) -> None:
    private = key()
    assert ClientAuthentication.create("c", private_key=private).algorithm == algorithm


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({}, TypeError, "client_secret"),
        ({"client_secret": ""}, ValueError, "empty"),
        ({"client_secret": "s", "method": "magic"}, ValueError, "not supported"),
        ({"client_secret": "s", "method": 3}, TypeError, "client_auth"),
        ({"method": "private_key_jwt"}, ValueError, "private_key"),
        ({"private_key": "not a pem"}, ValueError, "PEM"),
        ({"private_key": 42}, TypeError, "private_key"),
        ({"private_key": "EC", "client_secret": "s"}, ValueError, "not both"),
        ({"private_key": "EC", "algorithm": "RS256"}, ValueError, "does not fit"),
        ({"private_key": "EC", "algorithm": "HS256"}, ValueError, "not supported"),
        ({"private_key": "EC", "algorithm": "Ed25519"}, ValueError, "not supported"),
        ({"private_key": "EC", "algorithm": 5}, TypeError, "private_key_algorithm"),
        ({"private_key": "EC", "key_id": 5}, TypeError, "private_key_id"),
        ({"private_key": "EC", "assertion_audience": ""}, ValueError, "assertion_audience"),
        ({"private_key": "EC", "assertion_lifetime": 0}, ValueError, "assertion_lifetime"),
        ({"private_key": "WEAK"}, ValueError, "2048"),
        ({"client_secret": "s", "key_id": "k"}, ValueError, "not a private key"),
        ({"client_secret": "s", "client_id": 3}, TypeError, "client_id"),
        ({"client_secret": "s", "client_id": ""}, ValueError, "client_id"),
    ],
)
def test_bad_credentials_fail_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    if options.get("private_key") == "EC":
        options["private_key"] = ec.generate_private_key(ec.SECP256R1())
    elif options.get("private_key") == "WEAK":
        options["private_key"] = generate_key("RS256", key_size=1024).private_pem()
    client_id = options.pop("client_id", "c")
    with pytest.raises(error, match=match):
        ClientAuthentication.create(client_id, **options)


def test_a_pem_string_is_accepted() -> None:
    pem = generate_key("ES256").private_pem().decode()
    assert ClientAuthentication.create("c", private_key=pem).method == "private_key_jwt"


async def test_secrets_never_reach_the_log(
    issuer: FakeIssuer,
    make_verifier: MakeVerifier,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        verifier = make_verifier(client_secret="s3cr3t-value")
        with pytest.raises(IntrospectionUnavailableError):
            await verifier.verify(issuer.issue_opaque())
    assert CLIENT_ID in caplog.text
    assert "s3cr3t-value" not in caplog.text
