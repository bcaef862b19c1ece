"""Pure judgement of introspection responses (RFC 7662 §2.2, RFC 9701): no I/O here.

A JSON answer is judged by :meth:`ResponseRules.judge`: ``active`` must be exactly the
JSON value ``true``; then the claim rules of the JWT path (:class:`ClaimRules`: types,
``exp``/``nbf``/``iat`` with leeway, ``iss``, the audience, required values) apply to the
members that are present. RFC 7662 makes ``iss``, ``exp`` and ``aud`` optional, so an
absent one is filled in, for the check only, with a value that passes (``aud`` only when
``require_audience`` is off, and then also when it is null or ``[]``): the one set of
claim rules, not a second copy. A refresh token or an ID token (``token_type``, Hydra's
``token_use`` or Keycloak's ``typ`` saying so, Keycloak's ``Offline`` included) is refused.

An RFC 9701 answer (``application/token-introspection+jwt``) is a JWS signed by the
issuer: :func:`split_jwt_response` and :func:`open_jwt_response` check it around the key
look-up the verifier does, and yield the ``token_introspection`` object judged as above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from .._claims import ClaimRules, ScopeRules
from .._jws import Header, TokenParser, decode_payload
from .._keyset import VerificationKey
from .._models import AccessToken
from ..exceptions import InactiveTokenError, InvalidClaimError, MalformedTokenError

__all__ = [
    "JSON_MEDIA_TYPE",
    "JWT_MEDIA_TYPE",
    "JWT_TYP",
    "IntrospectedToken",
    "ResponseError",
    "ResponseRules",
    "open_jwt_response",
    "split_jwt_response",
]

JSON_MEDIA_TYPE = "application/json"
JWT_MEDIA_TYPE = "application/token-introspection+jwt"
JWT_TYP = "token-introspection+jwt"
_REFRESH_TOKEN_KINDS = (
    "refresh_token",
    "refresh",
    "offline",  # Keycloak's offline token
    "urn:ietf:params:oauth:token-type:refresh_token",
)
_ID_TOKEN_KINDS = ("id", "id_token", "urn:ietf:params:oauth:token-type:id_token")
_NOT_ACCESS_TOKENS = dict.fromkeys(_REFRESH_TOKEN_KINDS, "a refresh token") | dict.fromkeys(
    _ID_TOKEN_KINDS, "an ID token"
)
"""Token kinds (lower case) an answer's ``token_type``/``token_use``/``typ`` may name
that are not access tokens."""


@dataclass(frozen=True, slots=True, repr=False)
class IntrospectedToken(AccessToken):
    """An :class:`~resource_guard.AccessToken` granted by an introspection answer (not a
    verified JWT): ``claims`` are the answer's members, ``key_id`` is None. It tells
    :class:`~resource_guard.HybridVerifier` which side verified a token."""


class ResponseError(Exception):
    """The endpoint's answer cannot be trusted or read (never a verdict on the token)."""


@dataclass(frozen=True, slots=True)
class ResponseRules:
    """What an acceptable introspection answer looks like (built once per verifier)."""

    claims: ClaimRules
    scopes: ScopeRules
    required: tuple[str, ...] = ()
    require_audience: bool = True

    def judge(
        self, document: Mapping[str, Any], now: float, no_exp_until: float
    ) -> tuple[AccessToken, float | None]:
        """The AccessToken an answer grants and its ``exp`` (None: the answer has none;
        ``expires_at`` is then ``no_exp_until``, when the verifier will ask again).

        Raises InactiveTokenError unless ``active`` is exactly ``true``, else the
        InvalidClaimError subclass naming the claim that fails.
        """
        if document.get("active") is not True:
            raise InactiveTokenError("the introspection endpoint says the token is not active")
        for name in ("token_type", "token_use", "typ"):  # RFC 7662, Ory Hydra, Keycloak
            kind = document.get(name)
            if kind is None:
                continue
            if not isinstance(kind, str):
                raise InvalidClaimError(name, "is not a string")
            other = _NOT_ACCESS_TOKENS.get(kind.lower())
            if other is not None:
                raise InvalidClaimError(name, f"names {other}, not an access token")
        for name in self.required:
            if name not in document:
                raise InvalidClaimError(name, "is required")
        rules = self.claims
        view = dict(document)
        view.setdefault("iss", rules.issuer)
        view.setdefault("exp", now)  # no exp: active is the endpoint's word for now
        if not self.require_audience and document.get(rules.audience_claim) in (None, []):
            view[rules.audience_claim] = next(iter(rules.audiences))  # absent, null or []
        rules.check(view, now)
        exp = document.get("exp")
        get = document.get
        token = IntrospectedToken(
            claims=MappingProxyType(dict(document)),
            scopes=self.scopes.extract(document),
            expires_at=datetime.fromtimestamp(no_exp_until if exp is None else exp, UTC),
            subject=get("sub"),
            client_id=get("client_id") or get("azp") or get("cid") or get("appid"),
            issuer=rules.issuer,
            key_id=None,
        )
        return token, None if exp is None else float(exp)


def split_jwt_response(
    parser: TokenParser, body: bytes, algorithms: frozenset[str]
) -> tuple[Header, str, bytes, bytes]:
    """Header, payload segment, signing input and signature of an RFC 9701 answer, its
    ``typ`` and ``alg`` checked; ResponseError when it is not one."""
    try:
        text = body.decode("ascii").strip()
        header, payload, signing_input, signature = parser.split(text)
    except (UnicodeDecodeError, MalformedTokenError):
        raise ResponseError("the JWT answer is not a compact JWS") from None
    typ = (header.typ or "").lower().removeprefix("application/")
    if typ != JWT_TYP:
        raise ResponseError(f"the JWT answer's typ is {header.typ!r:.40}, not {JWT_TYP}")
    if header.alg not in algorithms:
        raise ResponseError(f"the JWT answer's algorithm {header.alg!r:.20} is not allowed")
    return header, payload, signing_input, signature


def open_jwt_response(
    key: VerificationKey,
    parts: tuple[Header, str, bytes, bytes],
    *,
    issuer: str,
    audiences: frozenset[str],
    now: float,
    max_age: float,
    leeway: float,
) -> dict[str, Any]:
    """The ``token_introspection`` object of a signed answer, once the signature, ``iss``,
    ``aud`` (naming one of ``audiences``: our client id, our resource identifiers) and
    ``iat`` (neither ahead by more than the leeway nor older than ``max_age``) hold;
    ResponseError otherwise."""
    header, payload_segment, signing_input, signature = parts
    if not key.verify(header.alg, signing_input, signature):
        raise ResponseError(f"the JWT answer's signature does not verify (kid={header.kid!r:.66})")
    try:
        claims = decode_payload(payload_segment)
    except MalformedTokenError:
        raise ResponseError("the JWT answer's payload is not a JSON object") from None
    if claims.get("iss") != issuer:
        raise ResponseError("the JWT answer's iss is not the issuer")
    aud = claims.get("aud")
    named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audiences.isdisjoint(item for item in named if isinstance(item, str)):
        raise ResponseError("the JWT answer's aud is not this resource server")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        raise ResponseError("the JWT answer has no numeric iat")
    if iat > now + leeway or iat < now - max_age:
        raise ResponseError("the JWT answer's iat is not current")
    inner = claims.get("token_introspection")
    if not isinstance(inner, dict):
        raise ResponseError("the JWT answer has no token_introspection object")
    return inner
