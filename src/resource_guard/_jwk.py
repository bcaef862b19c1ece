"""Public JWKs of keys we hold, and their RFC 7638 thumbprints (the ``jkt`` of DPoP)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ._b64 import b64url_encode

__all__ = ["THUMBPRINT_MEMBERS", "AnyKey", "jwk_thumbprint", "public_jwk", "uint_member"]

AnyKey = (
    rsa.RSAPrivateKey
    | rsa.RSAPublicKey
    | ec.EllipticCurvePrivateKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PrivateKey
    | ed25519.Ed25519PublicKey
)
"""A key whose public half can be written as a JWK."""

_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

THUMBPRINT_MEMBERS: Mapping[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
"""The members a thumbprint hashes, by ``kty`` (RFC 7638 §3.2, RFC 8037 §2), sorted."""


def uint_member(value: int, length: int | None = None) -> str:
    """A JWK integer member: big-endian, base64url (``length`` bytes when given, RFC 7518)."""
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def public_jwk(key: AnyKey) -> dict[str, str]:
    """The members that describe the public half of ``key`` (RFC 7518 §6, RFC 8037 §2):
    ``kty`` and ``n``/``e``, ``crv``/``x``/``y`` or ``crv``/``x``; never a private member."""
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "n": uint_member(numbers.n), "e": uint_member(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": _CURVE_NAMES[key.curve.name],
            "x": uint_member(point.x, size),
            "y": uint_member(point.y, size),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


def jwk_thumbprint(jwk: Mapping[str, object]) -> str:
    """The base64url SHA-256 thumbprint of a public JWK (RFC 7638).

    Only the required members count, in lexicographic order, as JSON without whitespace;
    any other member (``kid``, ``alg``, ``use``) changes nothing. Raises ValueError for a
    ``kty`` other than EC, OKP or RSA, or a required member that is not a string.
    """
    kty = jwk.get("kty")
    members = THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError(f"no thumbprint for kty {kty!r:.20}: EC, OKP or RSA only")
    picked: dict[str, str] = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise ValueError(f"a {kty} JWK needs {name!r} as a string")
        picked[name] = value
    canonical = json.dumps(picked, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())
