"""Building and signing access tokens (PyJWT does the signing)."""

from __future__ import annotations

import enum
import math
import secrets
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from ._checks import scope_tuple
from ._keys import SigningKey

__all__ = ["CURRENT", "Current", "access_token_claims", "sign"]


class Current(enum.Enum):
    """Type of the :data:`CURRENT` sentinel."""

    CURRENT = "CURRENT"

    def __repr__(self) -> str:
        return "CURRENT"


CURRENT: Final = Current.CURRENT
"""Default of ``mint(kid=...)``: the signing key's own ``kid`` (``kid=None`` omits it)."""


def access_token_claims(
    *,
    issuer: str,
    subject: str | None,
    audience: str | tuple[str, ...],
    now: float,
    expires_in: int,
    client_id: str | None,
    scopes: str | Iterable[str],
) -> dict[str, Any]:
    """``iss``, ``sub``, ``aud``, ``iat``, ``exp``, ``jti`` (+ ``client_id``, ``scope``)."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        raise TypeError("expires_in must be an int number of seconds")
    if isinstance(now, bool) or not isinstance(now, int | float):
        raise TypeError(
            f"the clock (or issued_at) must give epoch seconds, got {type(now).__name__}"
        )
    if not math.isfinite(now):
        raise ValueError(f"the clock (or issued_at) must give finite epoch seconds, got {now!r}")
    claims: dict[str, Any] = {"iss": issuer}
    if subject is not None:
        claims["sub"] = subject
    claims["aud"] = audience if isinstance(audience, str) else list(audience)
    claims["iat"] = int(now)
    claims["exp"] = int(now) + expires_in
    claims["jti"] = secrets.token_urlsafe(16)
    if client_id is not None:
        claims["client_id"] = client_id
    scope_list = scope_tuple("scopes", scopes)
    if scope_list:
        claims["scope"] = " ".join(scope_list)
    return claims


def sign(
    payload: dict[str, Any],
    *,
    algorithm: str,
    key: SigningKey | str | bytes | None,
    kid: str | Current | None,
    typ: str | None,
    headers: Mapping[str, Any] | None,
) -> str:
    """A compact JWS of ``payload`` signed with ``algorithm`` (the header's ``alg``):
    ``key`` is a signing key, an HMAC secret or None (``algorithm="none"``);
    ``kid=CURRENT`` takes the key's own."""
    header: dict[str, Any] = {"typ": typ}
    chosen = (key.kid if isinstance(key, SigningKey) else None) if kid is CURRENT else kid
    if chosen is not None:
        header["kid"] = chosen
    header.update(headers or {})
    material = key.private_key if isinstance(key, SigningKey) else key
    weak = isinstance(material, str | bytes) or (
        isinstance(material, rsa.RSAPrivateKey) and material.key_size < 2048
    )
    if not weak:
        return jwt.encode(payload, material, algorithm=algorithm, headers=header)  # type: ignore[arg-type]
    with warnings.catch_warnings():  # weak keys are the point of such tests
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(payload, material, algorithm=algorithm, headers=header)  # type: ignore[arg-type]
