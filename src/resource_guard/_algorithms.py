"""The asymmetric JWS algorithms we verify, and what kind of key each one needs.

The cryptography itself is the `cryptography` package's; this module only maps an ``alg``
name to a key type and a verification call, with the padding and hash objects built once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
Verify = Callable[[PublicKey, bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One JWS algorithm: the JWK ``kty`` (and curves) it needs and how to verify with it."""

    name: str
    kty: str
    curves: frozenset[str]
    verify: Verify


def _rsa(pad: padding.AsymmetricPadding, hash_alg: hashes.HashAlgorithm) -> Verify:
    def verify(key: PublicKey, data: bytes, signature: bytes) -> bool:
        # cast, not an isinstance assert: key types are matched by VerificationKey.fits, and
        # an isinstance check against these ABCs costs about a microsecond per token.
        key = cast(rsa.RSAPublicKey, key)
        if len(signature) != (key.key_size + 7) // 8:
            return False
        try:
            key.verify(signature, data, pad, hash_alg)
        except InvalidSignature:
            return False
        return True

    return verify


def _pkcs1(hash_alg: hashes.HashAlgorithm) -> Verify:
    return _rsa(padding.PKCS1v15(), hash_alg)


def _pss(hash_alg: hashes.HashAlgorithm) -> Verify:
    # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
    return _rsa(padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size), hash_alg)


def _ecdsa(hash_alg: hashes.HashAlgorithm, size: int) -> Verify:
    signature_algorithm = ec.ECDSA(hash_alg)

    def verify(key: PublicKey, data: bytes, signature: bytes) -> bool:
        key = cast(ec.EllipticCurvePublicKey, key)
        # JWS carries R || S, each exactly `size` bytes (RFC 7518 §3.4); never DER.
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if r == 0 or s == 0:  # "psychic signatures": never valid
            return False
        try:
            key.verify(encode_dss_signature(r, s), data, signature_algorithm)
        except InvalidSignature:
            return False
        return True

    return verify


def _eddsa(key: PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        cast(ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, key).verify(signature, data)
    except InvalidSignature:
        return False
    return True


_NO_CURVE: frozenset[str] = frozenset()

ALGORITHMS: dict[str, Algorithm] = {
    algorithm.name: algorithm
    for algorithm in (
        Algorithm("RS256", "RSA", _NO_CURVE, _pkcs1(hashes.SHA256())),
        Algorithm("RS384", "RSA", _NO_CURVE, _pkcs1(hashes.SHA384())),
        Algorithm("RS512", "RSA", _NO_CURVE, _pkcs1(hashes.SHA512())),
        Algorithm("PS256", "RSA", _NO_CURVE, _pss(hashes.SHA256())),
        Algorithm("PS384", "RSA", _NO_CURVE, _pss(hashes.SHA384())),
        Algorithm("PS512", "RSA", _NO_CURVE, _pss(hashes.SHA512())),
        Algorithm("ES256", "EC", frozenset({"P-256"}), _ecdsa(hashes.SHA256(), 32)),
        Algorithm("ES384", "EC", frozenset({"P-384"}), _ecdsa(hashes.SHA384(), 48)),
        Algorithm("ES512", "EC", frozenset({"P-521"}), _ecdsa(hashes.SHA512(), 66)),
        Algorithm("EdDSA", "OKP", frozenset({"Ed25519", "Ed448"}), _eddsa),
        Algorithm("Ed25519", "OKP", frozenset({"Ed25519"}), _eddsa),
    )
}
"""Every algorithm this library can verify. The default allow-list is all of them."""

DEFAULT_ALGORITHMS: tuple[str, ...] = tuple(ALGORITHMS)
