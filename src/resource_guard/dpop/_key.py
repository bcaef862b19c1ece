"""``DPoPKey``: the client's proof-of-possession key and the DPoP proofs it signs (RFC 9449 §4).

A proof is a compact JWS whose header carries ``typ: dpop+jwt``, the ``alg`` and the public
``jwk``, and whose claims name one HTTP request: ``jti`` (random, single use), ``htm``,
``htu`` (without query and fragment), ``iat``, and ``ath`` (the hash of the access token)
and ``nonce`` when given. The private key never leaves the object unless
:meth:`DPoPKey.private_pem` is called.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .._b64 import b64url_encode
from .._jwk import jwk_thumbprint, public_jwk
from ._proof import access_token_hash

__all__ = ["DPOP_ALGORITHMS", "DPoPKey", "htu_of"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_EC: Final[dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm]]] = {
    "ES256": (ec.SECP256R1, hashes.SHA256()),
    "ES384": (ec.SECP384R1, hashes.SHA384()),
}
_RSA: Final[dict[str, padding.AsymmetricPadding]] = {
    "RS256": padding.PKCS1v15(),
    "PS256": padding.PSS(padding.MGF1(hashes.SHA256()), hashes.SHA256.digest_size),
}
DPOP_ALGORITHMS: Final = ("ES256", "ES384", "EdDSA", "PS256", "RS256")
"""The algorithms a :class:`DPoPKey` signs with (ES256 is the default and the most widely
accepted; EdDSA is Ed25519)."""
RSA_KEY_SIZE: Final = 2048
MAX_PEM_BYTES: Final = 64 * 1024

_TOKEN_CHARS = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP method is an RFC 9110 ``token``."""


def htu_of(url: str) -> str:
    """The ``htu`` of a request to ``url``: the absolute http(s) URI without user info,
    query and fragment (RFC 9449 §4.2; a password in the URL never goes into a proof).
    ValueError for anything else."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("url must be an absolute http(s) URL") from None
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise ValueError("url must be an absolute http(s) URL such as https://api.example.com/x")
    return f"{parts.scheme}://{host}{parts.path or '/'}"


def _algorithm_for(key: PrivateKey, requested: str | None) -> str:
    """The algorithm ``key`` signs with: ``requested`` if it fits, else the key's natural one."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        natural = {"secp256r1": "ES256", "secp384r1": "ES384"}.get(key.curve.name)
        if natural is None:
            raise ValueError(f"EC curve {key.curve.name} is not supported: use P-256 or P-384")
        allowed: tuple[str, ...] = (natural,)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        natural, allowed = "EdDSA", ("EdDSA",)
    else:
        if key.key_size < RSA_KEY_SIZE:
            raise ValueError(f"an RSA key needs at least {RSA_KEY_SIZE} bits")
        natural, allowed = "RS256", ("RS256", "PS256")
    if requested is None:
        return natural
    if requested not in allowed:
        raise ValueError(f"this key cannot sign {requested!r}: use one of {list(allowed)}")
    return requested


class DPoPKey:
    """A private key that signs DPoP proofs; its public JWK thumbprint is the token's ``jkt``.

    Make one with :meth:`generate`, :meth:`from_pem` or :meth:`load`. The private key is
    reachable only through :meth:`private_pem`; ``repr`` shows the algorithm and thumbprint.
    """

    __slots__ = ("_algorithm", "_header", "_jwk", "_key", "_thumbprint")

    ALGORITHMS: ClassVar[tuple[str, ...]] = DPOP_ALGORITHMS
    """The algorithms :meth:`generate` makes keys for."""

    def __init__(self, private_key: PrivateKey, *, algorithm: str | None = None) -> None:
        if not isinstance(
            private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise TypeError(
                "private_key must be an EC (P-256, P-384), Ed25519 or RSA private key from "
                f"the cryptography package, got {type(private_key).__name__}"
            )
        if algorithm is not None and not isinstance(algorithm, str):
            raise TypeError(f"algorithm must be a str such as 'ES256', got {type(algorithm)}")
        self._algorithm = _algorithm_for(private_key, algorithm)
        self._key = private_key
        jwk = public_jwk(private_key)
        self._jwk = MappingProxyType(jwk)
        self._thumbprint = jwk_thumbprint(jwk)
        header = {"typ": "dpop+jwt", "alg": self._algorithm, "jwk": jwk}
        self._header = b64url_encode(json.dumps(header, separators=(",", ":")).encode("ascii"))

    # -- making keys ---------------------------------------------------------------------

    @classmethod
    def generate(cls, algorithm: str = "ES256") -> DPoPKey:
        """A fresh key for ``algorithm`` (one of :data:`DPOP_ALGORITHMS`; default ES256)."""
        if not isinstance(algorithm, str):
            raise TypeError(f"algorithm must be a str such as 'ES256', got {type(algorithm)}")
        key: PrivateKey
        if algorithm in _EC:
            key = ec.generate_private_key(_EC[algorithm][0]())
        elif algorithm == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        elif algorithm in _RSA:
            key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
        else:
            raise ValueError(f"unsupported DPoP algorithm {algorithm!r:.20}: use {DPOP_ALGORITHMS}")
        return cls(key, algorithm=algorithm)

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        password: bytes | str | None = None,
        *,
        algorithm: str | None = None,
    ) -> DPoPKey:
        """The key in a PEM private key (PKCS#8 or traditional; encrypted with ``password``).

        ``algorithm`` defaults to the key's own (ES256/ES384 by curve, EdDSA, RS256 for RSA;
        pass ``PS256`` for PSS). ValueError when the data is not a usable private key.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, bytes):
            raise TypeError(f"data must be PEM bytes or str, got {type(data).__name__}")
        if isinstance(password, str):
            password = password.encode("utf-8")
        if password is not None and not isinstance(password, bytes):
            raise TypeError("password must be bytes, str or None")
        if len(data) > MAX_PEM_BYTES:
            raise ValueError("the PEM data is too large to be a private key")
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            # The library's text may say "password" or "malformed": neither holds key bytes.
            raise ValueError(f"not a usable PEM private key: {exc}") from None
        if not isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise ValueError(
                f"a {type(key).__name__} cannot sign DPoP proofs: use EC P-256, Ed25519 or RSA"
            )
        return cls(key, algorithm=algorithm)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        password: bytes | str | None = None,
        *,
        algorithm: str | None = None,
    ) -> DPoPKey:
        """:meth:`from_pem` of the file at ``path``."""
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
        return cls.from_pem(data, password, algorithm=algorithm)

    def private_pem(self, password: bytes | str | None = None) -> bytes:
        """The private key as PKCS#8 PEM, encrypted when ``password`` is given. Handle the
        result as a secret: whoever holds it can use every token bound to this key."""
        if isinstance(password, str):
            password = password.encode("utf-8")
        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if not password
            else serialization.BestAvailableEncryption(password)
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def save(self, path: str | os.PathLike[str], password: bytes | str | None = None) -> None:
        """Write :meth:`private_pem` to a new file readable by this user only (0600).

        FileExistsError when ``path`` exists: a key file is never overwritten."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(Path(path), flags, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.private_pem(password))

    # -- what others see -----------------------------------------------------------------

    @property
    def algorithm(self) -> str:
        """The JWS ``alg`` of the proofs."""
        return self._algorithm

    @property
    def public_jwk(self) -> dict[str, str]:
        """The public JWK (``kty`` and the public members only), a fresh copy."""
        return dict(self._jwk)

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint of :attr:`public_jwk`: the ``jkt`` of bound tokens."""
        return self._thumbprint

    def __repr__(self) -> str:
        return f"DPoPKey(algorithm={self._algorithm!r}, thumbprint={self._thumbprint!r})"

    # -- proofs --------------------------------------------------------------------------

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
        now: float | None = None,
    ) -> str:
        """A fresh proof for one ``method`` request to ``url`` (query and fragment dropped).

        ``access_token`` adds ``ath`` (for requests to a resource server), ``nonce`` the
        server's ``DPoP-Nonce``; ``iat`` is ``now`` (epoch seconds), else the current time.
        """
        if not isinstance(method, str) or not _TOKEN_CHARS.fullmatch(method):
            raise ValueError("method must be an HTTP method such as 'GET'")
        claims: dict[str, object] = {
            "jti": b64url_encode(secrets.token_bytes(16)),
            "htm": method,
            "htu": htu_of(url),
            "iat": int(time.time() if now is None else now),
        }
        if access_token is not None:
            if not isinstance(access_token, str) or not access_token.isascii():
                raise ValueError("access_token must be an ASCII string")
            claims["ath"] = access_token_hash(access_token)
        if nonce is not None:
            if not isinstance(nonce, str) or not nonce:
                raise ValueError("nonce must be a non-empty string")
            claims["nonce"] = nonce
        payload = b64url_encode(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
        signing_input = f"{self._header}.{payload}"
        return f"{signing_input}.{b64url_encode(self._sign(signing_input.encode('ascii')))}"

    def _sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_EC[self._algorithm][1])))
            size = (key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        return key.sign(data, _RSA[self._algorithm], hashes.SHA256())
