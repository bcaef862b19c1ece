"""HybridVerifier: JWT access tokens verified locally, everything else introspected.

The route is chosen from the token's shape alone, before anything is verified: a compact
JWS whose payload names (unverified) an issuer of the JWT side goes to the JWT verifier;
any other token goes to the introspection verifier. So an opaque token never causes a
JWKS fetch, and a JWT of a local issuer never causes an introspection call unless
``introspect_jwts`` asks for one (to see revocations of JWTs too). Reading ``iss`` before
the signature decides nothing: the chosen verifier still checks everything.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from . import _options as opt
from ._b64 import b64url_decode
from ._jws import parse_json_object
from ._models import AccessToken
from ._protocol import Verifier
from .dpop import DPoPPolicy
from .exceptions import MalformedTokenError
from .introspection import IntrospectedToken
from .introspection._verifier import DEFAULT_MAX_TOKEN_BYTES

__all__ = ["HybridVerifier"]

IssuerTest = Callable[[str], bool]


def _issuer_test(jwt: object, jwt_issuers: object) -> IssuerTest:
    if jwt_issuers is None:
        verifier_for = getattr(jwt, "verifier_for", None)  # TrustedIssuers, templates too
        if callable(verifier_for):
            return lambda iss: verifier_for(iss) is not None
        issuer = getattr(jwt, "issuer", None)
        if not isinstance(issuer, str):
            raise TypeError(
                "pass jwt_issuers= (the issuers whose JWTs the jwt verifier checks, or a "
                "callable iss -> bool): the jwt verifier names none"
            )
        jwt_issuers = (issuer,)
    if callable(jwt_issuers):
        return jwt_issuers
    if isinstance(jwt_issuers, str) or not isinstance(jwt_issuers, Iterable):
        raise TypeError("jwt_issuers must be a collection of issuer strings, or a callable")
    names = frozenset(jwt_issuers)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError("jwt_issuers must hold at least one non-empty issuer string")
    return names.__contains__


def _strings(*verifiers: object, single: str, several: str) -> tuple[str, ...]:
    found: list[str] = []
    for verifier in verifiers:
        one = getattr(verifier, single, None) if single else None
        many = getattr(verifier, several, None)
        if isinstance(one, str):
            found.append(one)
        elif isinstance(many, tuple | list):
            found.extend(item for item in many if isinstance(item, str))
    return tuple(dict.fromkeys(found))


def _opaque_side(access: AccessToken) -> IntrospectedToken:
    """``access`` (granted by the opaque side) marked as such: an IntrospectionVerifier's
    tokens are already; another verifier's are copied into the mark."""
    if isinstance(access, IntrospectedToken):
        return access
    fields = dataclasses.fields(AccessToken)
    return IntrospectedToken(**{field.name: getattr(access, field.name) for field in fields})


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` of a token shaped like a compact JWS, read without any check of its
    signature (for routing only); None for any other token."""
    first = token.find(".")
    second = token.find(".", first + 1)
    if first <= 0 or second <= first + 1 or token.find(".", second + 1) >= 0:
        return None
    try:
        claims = parse_json_object(b64url_decode(token[first + 1 : second]), "payload")
    except (ValueError, MalformedTokenError):
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) else None


class HybridVerifier:
    """One verifier for an issuer (or several) handing out JWTs and opaque tokens.

    Args:
        jwt: the verifier of JWTs (a TokenVerifier or TrustedIssuers).
        opaque: the verifier of everything else (an IntrospectionVerifier).
        jwt_issuers: the issuers whose JWTs go to ``jwt``: a collection, or a callable
            ``iss -> bool``; None asks ``jwt.verifier_for(iss)`` (TrustedIssuers) or
            reads ``jwt.issuer`` (TokenVerifier).
        introspect_jwts: also introspect JWTs that ``jwt`` accepted (both must accept);
            off by default: a JWT is then judged locally only.
        max_token_bytes: longer tokens are refused before ``iss`` is read, unseen by
            either side (256 - 1 MiB).
    """

    def __init__(
        self,
        *,
        jwt: Verifier,
        opaque: Verifier,
        jwt_issuers: Iterable[str] | IssuerTest | None = None,
        introspect_jwts: bool = False,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    ) -> None:
        for name, verifier in (("jwt", jwt), ("opaque", opaque)):
            if not callable(getattr(verifier, "verify", None)):
                raise TypeError(f"{name} must be a verifier (an object with async verify())")
        if not isinstance(introspect_jwts, bool):
            raise TypeError("introspect_jwts must be a bool")
        self._is_local = _issuer_test(jwt, jwt_issuers)
        self.jwt = jwt
        self.opaque = opaque
        self.introspect_jwts = introspect_jwts
        self._max_token_bytes = opt.count(
            "max_token_bytes", max_token_bytes, low=256, high=1024 * 1024
        )
        self._jwt_cached = self._cached_of(jwt)
        self._opaque_cached = self._cached_of(opaque)
        self._default_dpop = DPoPPolicy()  # for a side without a policy of its own

    @property
    def issuers(self) -> tuple[str, ...]:
        """The issuers both sides name (for protected-resource metadata), in order."""
        return _strings(self.jwt, self.opaque, single="issuer", several="issuers")

    @property
    def audiences(self) -> tuple[str, ...]:
        """The audiences both sides accept, in order (for metadata and the MCP adapter)."""
        return _strings(self.jwt, self.opaque, single="", several="audiences")

    def dpop_policy(self, token: AccessToken | None = None) -> DPoPPolicy:
        """The DPoP policy of the side that verified ``token``: the opaque side's for an
        :class:`~resource_guard.introspection.IntrospectedToken` (what it returns through
        this verifier), else the JWT side's, which also challenges requests without a
        token. A side without a policy gets the default."""
        side = self.opaque if isinstance(token, IntrospectedToken) else self.jwt
        policy_of = getattr(side, "dpop_policy", None)
        policy = policy_of(token) if callable(policy_of) else None
        return policy if isinstance(policy, DPoPPolicy) else self._default_dpop

    @staticmethod
    def _cached_of(verifier: Any) -> Callable[[str | bytes], AccessToken | None] | None:
        cached = getattr(verifier, "cached", None)
        return cached if callable(cached) and not asyncio.iscoroutinefunction(cached) else None

    def routes_to_jwt(self, token: str) -> bool:
        """True when ``token`` goes to the JWT verifier (a JWS of a local issuer)."""
        if len(token) > self._max_token_bytes:
            return False
        iss = unverified_issuer(token)
        return iss is not None and bool(self._is_local(iss))

    async def verify(self, token: str) -> AccessToken:
        """The JWT verifier's answer for a JWT of a local issuer (and, with
        ``introspect_jwts``, the introspection's too); else the introspection's."""
        if isinstance(token, str) and len(token) > self._max_token_bytes:
            raise MalformedTokenError("the token is larger than this verifier accepts")
        if isinstance(token, str) and self.routes_to_jwt(token):
            access = await self.jwt.verify(token)
            if self.introspect_jwts:
                await self.opaque.verify(token)
            return access
        return _opaque_side(await self.opaque.verify(token))

    def cached(self, token: str | bytes) -> AccessToken | None:
        """A token either side verified before and would accept now, without waiting;
        None while :meth:`verify` is overridden (see TokenVerifier.cached)."""
        if (
            type(self).verify is not _VERIFY
            or "verify" in self.__dict__
            or len(token) > self._max_token_bytes
        ):
            return None
        jwt_cached, opaque_cached = self._jwt_cached, self._opaque_cached
        dots = token.count(b".") if isinstance(token, bytes) else token.count(".")
        if jwt_cached is not None and dots == 2:
            found = jwt_cached(token)
            if found is not None:
                if not self.introspect_jwts:
                    return found
                return found if opaque_cached is not None and opaque_cached(token) else None
        if opaque_cached is None:
            return None
        found = opaque_cached(token)
        return None if found is None else _opaque_side(found)

    async def start(self) -> None:
        """Start both verifiers."""
        await self.jwt.start()
        await self.opaque.start()

    async def aclose(self) -> None:
        """Close both verifiers."""
        try:
            await self.jwt.aclose()
        finally:
            await self.opaque.aclose()
            await self._default_dpop.aclose()


_VERIFY = HybridVerifier.verify
"""HybridVerifier's own verify(): ``cached`` answers only while it is in force."""
