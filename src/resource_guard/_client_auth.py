"""How a resource server authenticates itself to its authorization server's endpoints.

Three methods (RFC 7591 names): ``client_secret_basic`` and ``client_secret_post``
(RFC 6749 §2.3.1), and ``private_key_jwt``: a short-lived client assertion (RFC 7523 §2.2,
OIDC Core §9) signed with the client's private key (PyJWT signs it). The secret and the
key stay inside the requests built here: never in a repr, a message or a log line.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import _options as opt
from ._algorithms import ALGORITHMS
from ._jwk import public_jwk

__all__ = [
    "ASSERTION_TYPE",
    "CLIENT_AUTH_METHODS",
    "ClientAuthentication",
    "SigningPrivateKey",
    "basic_authorization",
]

CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
"""The client authentication methods an :class:`ClientAuthentication` can use."""
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""The ``client_assertion_type`` of a JWT client assertion (RFC 7523 §2.2)."""

SigningPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""A private key that can sign a client assertion."""

_DEFAULT_ALGORITHM = {"RSA": "RS256", "P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def basic_authorization(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value of ``client_secret_basic``: both parts form-encoded
    first (RFC 6749 §2.3.1), then HTTP Basic."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("ascii")).decode("ascii")


def _load_key(value: object) -> SigningPrivateKey:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        try:
            value = serialization.load_pem_private_key(value, password=None)
        except (ValueError, TypeError):
            raise ValueError(
                "private_key is not an unencrypted PEM private key (PKCS#8 or traditional)"
            ) from None
    if not isinstance(value, SigningPrivateKey):
        raise TypeError(
            "private_key must be an RSA, EC (P-256/384/521) or Ed25519 private key from "
            "cryptography, or its PEM (str or bytes)"
        )
    return value


def _optional_str(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, or None")
    if value == "":
        raise ValueError(f"{name} must not be empty")
    return value


def _algorithm_for(key: SigningPrivateKey, algorithm: object) -> str:
    jwk = public_jwk(key)
    kty, crv = jwk["kty"], jwk.get("crv")
    if kty == "RSA" and isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise ValueError("private_key: an RSA key needs at least 2048 bits")
    if algorithm is None:
        return "EdDSA" if kty == "OKP" else _DEFAULT_ALGORITHM[crv or kty]
    if not isinstance(algorithm, str):
        raise TypeError("private_key_algorithm must be a str such as 'ES256', or None")
    spec = ALGORITHMS.get(algorithm)
    if spec is None or spec.name == "Ed25519":
        raise ValueError(
            f"private_key_algorithm {algorithm!r} is not supported; use one of "
            f"{sorted(set(ALGORITHMS) - {'Ed25519'})}"
        )
    if spec.kty != kty or (spec.curves and crv not in spec.curves):
        raise ValueError(f"private_key_algorithm {algorithm} does not fit a {crv or kty} key")
    return algorithm


@dataclass(frozen=True, slots=True)
class ClientAuthentication:
    """The credentials of one client and the method that presents them.

    Build it with :meth:`create` (which checks every value); :meth:`apply` gives the
    headers and form fields of one request to ``endpoint``.
    """

    client_id: str
    method: str
    client_secret: str | None = field(default=None, repr=False)
    private_key: SigningPrivateKey | None = field(default=None, repr=False)
    algorithm: str | None = None
    key_id: str | None = None
    assertion_audience: str | None = None
    assertion_lifetime: float = 60.0

    @classmethod
    def create(
        cls,
        client_id: object,
        *,
        method: object = None,
        client_secret: object = None,
        private_key: object = None,
        algorithm: object = None,
        key_id: object = None,
        assertion_audience: object = None,
        assertion_lifetime: object = 60,
    ) -> ClientAuthentication:
        """Check the credentials; ``method`` None picks ``private_key_jwt`` when a key is
        given, else ``client_secret_basic``. Raises TypeError/ValueError saying what to fix."""
        if not isinstance(client_id, str):
            raise TypeError("client_id must be a str: this resource server's client id")
        if not client_id or not client_id.isprintable():
            raise ValueError("client_id must be a non-empty printable string")
        if method is None:
            method = "private_key_jwt" if private_key is not None else "client_secret_basic"
        if not isinstance(method, str):
            raise TypeError(f"client_auth must be a str, one of {', '.join(CLIENT_AUTH_METHODS)}")
        if method not in CLIENT_AUTH_METHODS:
            raise ValueError(
                f"client_auth {method!r:.40} is not supported; use one of "
                f"{', '.join(CLIENT_AUTH_METHODS)}"
            )
        kid = _optional_str("private_key_id", key_id)
        audience = _optional_str("assertion_audience", assertion_audience)
        lifetime = opt.seconds("assertion_lifetime", assertion_lifetime, low=1, high=600)
        if method == "private_key_jwt":
            if private_key is None:
                raise ValueError("client_auth='private_key_jwt' needs private_key=")
            if client_secret is not None:
                raise ValueError("give client_secret= or private_key=, not both")
            key = _load_key(private_key)
            return cls(
                client_id,
                method,
                private_key=key,
                algorithm=_algorithm_for(key, algorithm),
                key_id=kid,
                assertion_audience=audience,
                assertion_lifetime=lifetime,
            )
        if private_key is not None or algorithm is not None or key_id is not None:
            raise ValueError(f"client_auth={method!r} uses client_secret=, not a private key")
        if not isinstance(client_secret, str):
            raise TypeError(f"client_auth={method!r} needs client_secret= (a str)")
        if not client_secret:
            raise ValueError("client_secret must not be empty")
        return cls(client_id, method, client_secret=client_secret)

    def apply(self, endpoint: str, now: float) -> tuple[dict[str, str], dict[str, str]]:
        """``(headers, form fields)`` that authenticate one request to ``endpoint``."""
        if self.method == "client_secret_basic":
            assert self.client_secret is not None
            return {"Authorization": basic_authorization(self.client_id, self.client_secret)}, {}
        if self.method == "client_secret_post":
            assert self.client_secret is not None
            return {}, {"client_id": self.client_id, "client_secret": self.client_secret}
        return {}, {
            "client_id": self.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(endpoint, now),
        }

    def assertion(self, endpoint: str, now: float) -> str:
        """A fresh client assertion for ``endpoint``: ``iss`` = ``sub`` = client_id, ``aud``
        the endpoint URL (or ``assertion_audience``), a random ``jti``, ``iat`` and a
        short ``exp``."""
        assert self.private_key is not None
        assert self.algorithm is not None
        issued = int(now)
        claims: Mapping[str, object] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.assertion_audience or endpoint,
            "jti": secrets.token_urlsafe(18),
            "iat": issued,
            "exp": issued + int(self.assertion_lifetime),
        }
        headers = {"typ": "JWT"} if self.key_id is None else {"typ": "JWT", "kid": self.key_id}
        return jwt.encode(dict(claims), self.private_key, algorithm=self.algorithm, headers=headers)
