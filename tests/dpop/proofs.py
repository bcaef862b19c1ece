"""Minting DPoP proofs for the tests, good ones and every kind of broken one.

A small signer of our own (cryptography underneath) so that each header member and claim
can be set or left out at will; well-formed proofs could come from any JOSE library.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from resource_guard._jwk import jwk_thumbprint, public_jwk
from tests.helpers import b64url

ABSENT: Any = object()
"""Leave the header member or claim out."""

_counter = itertools.count()
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_EC = {
    "ES256": (ec.SECP256R1(), hashes.SHA256(), 32),
    "ES384": (ec.SECP384R1(), hashes.SHA384(), 48),
}


def ath(token: str) -> str:
    """The ``ath`` of an access token."""
    return b64url(hashlib.sha256(token.encode()).digest())


def generate(alg: str = "ES256") -> PrivateKey:
    """A fresh private key for ``alg``."""
    if alg in _EC:
        return ec.generate_private_key(_EC[alg][0])
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    """A JWS signature of ``data``."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, digest, size = _EC[alg]
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    pad = padding.PSS(padding.MGF1(hashes.SHA256()), 32) if alg == "PS256" else padding.PKCS1v15()
    return key.sign(data, pad, hashes.SHA256())


@dataclass
class ProofKey:
    """A client's DPoP key that mints proofs (``proof``) for tests."""

    alg: str = "ES256"
    key: PrivateKey | None = None
    """The private key; None generates one for ``alg``."""
    now: float = 0.0
    private: PrivateKey = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.private = generate(self.alg) if self.key is None else self.key

    @property
    def jwk(self) -> dict[str, str]:
        """The public JWK."""
        return public_jwk(self.private)

    @property
    def jkt(self) -> str:
        """The RFC 7638 thumbprint, what ``cnf.jkt`` names."""
        return jwk_thumbprint(self.jwk)

    def proof(
        self,
        method: str = "GET",
        url: str = "https://api.example.com/orders",
        *,
        token: str | None = None,
        nonce: str | None = None,
        header: Mapping[str, Any] | None = None,
        claims: Mapping[str, Any] | None = None,
        signature: bytes | None = None,
    ) -> str:
        """A proof for ``method`` on ``url`` (``ath`` of ``token``, ``nonce``), with
        ``header``/``claims`` overriding members (:data:`ABSENT` removes one)."""
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        body: dict[str, Any] = {
            "jti": f"proof-{next(_counter)}",
            "htm": method,
            "htu": url,
            "iat": int(self.now),
        }
        if token is not None:
            body["ath"] = ath(token)
        if nonce is not None:
            body["nonce"] = nonce
        for target, changes in ((head, header or {}), (body, claims or {})):
            for name, value in changes.items():
                if value is ABSENT:
                    target.pop(name, None)
                else:
                    target[name] = value
        signing_input = f"{_segment(head)}.{_segment(body)}"
        raw = (
            sign(self.private, self.alg, signing_input.encode()) if signature is None else signature
        )
        return f"{signing_input}.{b64url(raw)}"


def _segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())
