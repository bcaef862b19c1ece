"""Pure claim checks: types first, then values. Each failure names the claim and the reason."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._scopes import split_scope
from .exceptions import (
    ExpiredTokenError,
    ImmatureTokenError,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    InvalidTokenTypeError,
)

logger = logging.getLogger("resource_guard.verifier")

ScopeMapper = Callable[[Mapping[str, Any]], Iterable[str]]
"""Maps a token's claims to extra scopes (e.g. Temporal-style ``permissions``)."""

ClaimValue = str | int | bool
"""A value a claim must equal (``claim_values``): a JSON string, integer or boolean."""

RFC9068_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
_ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "jwt"})
_STRING_CLAIMS = ("sub", "jti", "client_id", "azp", "cid", "appid")
_LAST_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z: datetimes can hold it


def _number(payload: Mapping[str, Any], claim: str) -> float | None:
    value = payload.get(claim)
    if value is None and claim not in payload:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClaimError(claim, "is not a NumericDate (a JSON number of seconds)")
    # Compared before any float conversion: a 400-digit integer overflows a float.
    if not 0 <= value <= _LAST_NUMERIC_DATE:  # NaN compares false: refused here too
        raise InvalidClaimError(claim, "is out of range")
    return float(value)


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """What the claims of an acceptable token look like (built once per verifier)."""

    issuer: str
    audiences: frozenset[str]
    leeway: float
    required: tuple[str, ...] = ()
    strict: bool = False
    audience_claim: str = "aud"
    """The claim holding the audience: ``aud``, or e.g. ``client_id`` (Amazon Cognito)."""
    claim_values: tuple[tuple[str, ClaimValue], ...] = ()
    """``(claim, value)`` pairs: each claim must be present and equal its value."""

    def check_type(self, typ: str | None) -> None:
        """Accept access-token media types only (``at+jwt``, ``JWT``; absent unless strict)."""
        if typ is None:
            if self.strict:
                raise InvalidTokenTypeError("the header has no 'typ' (RFC 9068 wants at+jwt)")
            return
        normalized = typ.lower().removeprefix("application/")
        allowed = ("at+jwt",) if self.strict else _ACCESS_TOKEN_TYPES
        if normalized not in allowed:
            raise InvalidTokenTypeError(f"the header 'typ' {typ!r:.40} is not an access token")

    def check(self, payload: Mapping[str, Any], now: float) -> tuple[float, float | None]:
        """Check every claim rule at time ``now``; return ``(exp, nbf)`` for caching.

        Types first, then values; the first failure raises, naming the claim and reason.
        """
        exp = _number(payload, "exp")
        if exp is None:
            raise InvalidClaimError("exp", "is required")
        nbf = _number(payload, "nbf")
        iat = _number(payload, "iat")
        for name in _STRING_CLAIMS:
            if name in payload and not isinstance(payload[name], str):
                raise InvalidClaimError(name, "is not a string")
        for name in self.required:
            if name not in payload:
                raise InvalidClaimError(name, "is required")
        if now > exp + self.leeway:
            raise ExpiredTokenError()
        if nbf is not None and now + self.leeway < nbf:
            raise ImmatureTokenError("nbf", "lies in the future: the token is not valid yet")
        if iat is not None and now + self.leeway < iat:
            raise ImmatureTokenError("iat", "lies in the future: the token was issued later")
        if payload.get("iss") != self.issuer:
            raise InvalidIssuerError("iss", "does not name the expected issuer")
        self._check_audience(payload.get(self.audience_claim))
        self._check_values(payload)
        return exp, nbf

    def _check_values(self, payload: Mapping[str, Any]) -> None:
        """Each ``claim_values`` claim is present and equal to its value, type included
        (``true`` is not ``1``)."""
        for name, expected in self.claim_values:
            if name not in payload:
                raise InvalidClaimError(name, "is required")
            value = payload[name]
            if type(value) is not type(expected) or value != expected:
                raise InvalidClaimError(name, "does not have the required value")

    def _check_audience(self, aud: object) -> None:
        name = self.audience_claim
        if isinstance(aud, str):
            if aud in self.audiences:
                return
        elif isinstance(aud, list) and aud and all(isinstance(item, str) for item in aud):
            if not self.audiences.isdisjoint(aud):
                return
        elif aud is not None:
            raise InvalidAudienceError(name, "is not a string or a list of strings")
        else:
            raise InvalidAudienceError(name, "is required")
        raise InvalidAudienceError(name, "does not name this resource server")


def _lookup(claims: Mapping[str, Any], name: str) -> object:
    if name in claims or "." not in name:
        return claims.get(name)
    value: object = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True, slots=True)
class ScopeRules:
    """Where a token's scopes come from: claims (dotted paths allowed) and a mapper."""

    claims: Sequence[str] = ("scope", "scp")
    mapper: ScopeMapper | None = None

    def extract(self, payload: Mapping[str, Any]) -> frozenset[str]:
        """The union of every configured scope source: a space-delimited string is split
        on single spaces (:func:`split_scope`), a list of strings is taken entry by entry;
        anything else refuses the token."""
        scopes: set[str] = set()
        for name in self.claims:
            value = _lookup(payload, name)
            if value is None:
                continue
            if isinstance(value, str):
                scopes.update(split_scope(value))
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                scopes.update(value)
            else:
                raise InvalidClaimError(name, "is not a string or a list of strings")
        if self.mapper is not None:
            scopes.update(self._mapped(payload))
        return frozenset(scopes)

    def _mapped(self, payload: Mapping[str, Any]) -> list[str]:
        """The mapper's scopes, checked: signed claims feed it, so odd values must refuse
        the token, never crash the request."""
        assert self.mapper is not None
        try:
            mapped = self.mapper(payload)
            items = None if isinstance(mapped, str) else list(mapped)
        except Exception as exc:
            logger.warning("the scope mapper failed (%s); refusing the token", type(exc).__name__)
            raise InvalidClaimError("scope_mapper", "could not map the claims to scopes") from None
        if items is None or not all(
            isinstance(item, str) and item and not any(c.isspace() for c in item) for item in items
        ):
            raise InvalidClaimError("scope_mapper", "gave something other than scope names")
        return items
