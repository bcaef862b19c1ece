"""Signing keys for the fake issuer: generation, JWK export, PEM export.

Keys are generated at run time (nothing is checked in) and never leave the process except as
public JWKs, unless a test asks for the private form on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, overload

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .._b64 import b64url_encode
from .._jwk import jwk_thumbprint, public_jwk, uint_member
from ._checks import integer, non_empty_str, one_of, renamed

__all__ = ["SUPPORTED_ALGORITHMS", "PrivateKey", "SigningKey", "check_algorithm", "generate_key"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""The private key types a :class:`SigningKey` can hold."""

_RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_CURVES: dict[str, tuple[ec.EllipticCurve, str]] = {
    "ES256": (ec.SECP256R1(), "P-256"),
    "ES384": (ec.SECP384R1(), "P-384"),
    "ES512": (ec.SECP521R1(), "P-521"),
}
SUPPORTED_ALGORITHMS: tuple[str, ...] = (*_RSA_ALGS, *_EC_CURVES, "EdDSA")
"""Every JWS algorithm the fake issuer can generate keys for."""


def check_algorithm(value: object, name: str = "algorithm") -> str:
    """``value`` if it is one of :data:`SUPPORTED_ALGORITHMS` (TypeError when not a str)."""
    return one_of(name, value, SUPPORTED_ALGORITHMS, unknown="unsupported algorithm")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private signing key with its ``kid`` and the JWS ``alg`` it signs with."""

    kid: str
    alg: str
    private_key: PrivateKey = field(repr=False)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK: ``kty``, key members, ``kid``, ``alg`` and ``use: sig``."""
        return {**public_jwk(self.private_key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def private_jwk(self) -> dict[str, Any]:
        """The JWK *with* private members (``d``...), for tests that publish one on purpose."""
        jwk = self.public_jwk()
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            numbers = key.private_numbers()
            jwk.update(
                d=uint_member(numbers.d),
                p=uint_member(numbers.p),
                q=uint_member(numbers.q),
                dp=uint_member(numbers.dmp1),
                dq=uint_member(numbers.dmq1),
                qi=uint_member(numbers.iqmp),
            )
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            size = (key.curve.key_size + 7) // 8
            jwk["d"] = uint_member(key.private_numbers().private_value, size)
        else:
            raw = key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            jwk["d"] = b64url_encode(raw)
        return jwk

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@overload
def generate_key(
    algorithm: str, kid: str | None = None, *, key_size: int | None = None
) -> SigningKey: ...


@overload
def generate_key(
    *, alg: str, kid: str | None = None, key_size: int | None = None
) -> SigningKey: ...  # deprecated spelling


def generate_key(
    algorithm: str | None = None,
    kid: str | None = None,
    *,
    key_size: int | None = None,
    alg: str | None = None,
) -> SigningKey:
    """Generate a fresh key for ``algorithm``; ``kid`` defaults to the RFC 7638 thumbprint.

    ``key_size`` (RSA only, default 2048) lets a test make a deliberately weak key.
    ``alg=`` is the deprecated spelling of ``algorithm=``.
    """
    algorithm = renamed("algorithm", algorithm, "alg", alg)
    if algorithm is None:
        raise TypeError("generate_key() needs an algorithm, such as 'ES256'")
    check_algorithm(algorithm)
    if kid is not None:
        non_empty_str("kid (or None)", kid)
    if key_size is not None:
        if algorithm not in _RSA_ALGS:
            raise ValueError(f"key_size applies to RSA algorithms only, not {algorithm!r}")
        integer("key_size (bits)", key_size, 1024)
    private_key: PrivateKey
    if algorithm in _RSA_ALGS:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size or 2048)
    elif algorithm in _EC_CURVES:
        private_key = ec.generate_private_key(_EC_CURVES[algorithm][0])
    else:
        private_key = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid or jwk_thumbprint(public_jwk(private_key)), algorithm, private_key)
