"""TokenVerifier: the one place that decides whether a bearer JWT is acceptable."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Self

import httpx

from . import _options as opt
from ._algorithms import ALGORITHMS, DEFAULT_ALGORITHMS
from ._claims import RFC9068_CLAIMS, ClaimRules, ClaimValue, ScopeMapper, ScopeRules
from ._decisions import annotate_refusal
from ._fetch import check_url
from ._jwks import RemoteKeySource
from ._jws import Header, TokenParser, decode_payload
from ._keyset import VerificationKey
from ._models import AccessToken
from ._protocol import Lifecycle
from ._token_cache import CacheEntry, VerifiedTokenCache, token_digest
from .dpop import DPoPMode, DPoPPolicy
from .exceptions import (
    AlgorithmNotAllowedError,
    InvalidSignatureError,
    InvalidTokenError,
)

logger = logging.getLogger("resource_guard.verifier")
DEFAULT_MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_CACHE_SIZE = 4096


def _check_claim_values(value: object) -> tuple[tuple[str, ClaimValue], ...]:
    if not isinstance(value, Mapping):
        raise TypeError("claim_values must be a mapping of claim names to values (a dict)")
    pairs: list[tuple[str, ClaimValue]] = []
    for name, expected in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"claim_values must name claims by non-empty strings, got {name!r}")
        if not isinstance(expected, str | int | bool):
            raise TypeError(
                f"claim_values[{name!r}] must be a string, an int or a bool, "
                f"got {type(expected).__name__}"
            )
        pairs.append((name, expected))
    return tuple(pairs)


def _parse_claim_values(raw: str) -> dict[str, str]:
    """``token_use=access,typ=Bearer`` (commas or spaces between pairs)."""
    pairs = [item.partition("=") for item in opt.split_list(raw)]
    if any(not sep or not name for name, sep, _ in pairs):
        raise ValueError(raw)
    return {name: value for name, _, value in pairs}


def _check_algorithms(value: object) -> frozenset[str]:
    names = opt.strings("algorithms", value)
    for name in names:
        if name.lower() == "none":
            raise ValueError("algorithms must never include 'none' (unsigned tokens)")
        if name.upper().startswith("HS"):
            raise ValueError(
                f"algorithms may not include {name}: HMAC needs a shared secret, and keys "
                "from a JWKS are public; use an asymmetric algorithm"
            )
        if name not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {name!r}; choose from {sorted(ALGORITHMS)}")
    return frozenset(names)


def _check_key_source(
    key_source: object, jwks_uri: str | None, http_client: object
) -> RemoteKeySource | None:
    """The ``key_source`` option, checked: None (build one) or another verifier's."""
    if key_source is None:
        return None
    if not isinstance(key_source, RemoteKeySource):
        raise TypeError("key_source must be another verifier's key_source (or None)")
    if jwks_uri is not None or http_client is not None:
        raise ValueError("give key_source, or jwks_uri/http_client, not both")
    return key_source


class TokenVerifier(Lifecycle):
    """Verifies bearer JWT access tokens of one issuer for this resource server.

    Keys come from the issuer's JWKS (discovered from ``issuer`` unless ``jwks_uri`` is
    given) and are kept fresh in the background once :meth:`start` ran (the middleware does
    that at start-up). Every option is checked here, at construction.

    Args:
        issuer: exact expected ``iss`` value (and the discovery base URL).
        audience: one value or several; the token's ``aud`` must contain one of them.
        audience_claim: the claim checked against ``audience`` (``aud``; Amazon Cognito
            access tokens carry the app client in ``client_id`` instead).
        jwks_uri: the JWKS URL; None discovers it (OIDC, then RFC 8414).
        algorithms: allow-list; None means every supported asymmetric algorithm.
        leeway: seconds of clock skew tolerated for ``exp``, ``nbf`` and ``iat`` (0-300).
        refresh_interval: longest time keys are used before a refresh (1 s to 1 day).
        cooldown: least time between two refetches for an unknown ``kid`` (0-1 h).
        max_stale: how long past their age the last good keys serve while the IdP is
            unreachable (0 fails closed at once; at most 7 days).
        timeout: overall deadline of one discovery or JWKS fetch (0.1-60 s).
        http_client: an ``httpx.AsyncClient`` to use for fetching; None creates our own.
        scope_claims: claims read as scopes (space-delimited string or list); dotted
            paths such as ``realm_access.roles`` reach into objects.
        scope_mapper: optional callable adding scopes derived from the claims.
        required_claims: claims that must be present besides ``exp``.
        claim_values: claims that must be present with exactly this value (a string, an
            int or a bool), e.g. ``{"token_use": "access"}``.
        strict: RFC 9068 mode: ``typ`` must be ``at+jwt`` and its claims are required.
        max_token_bytes: longer tokens are refused before decoding.
        cache_size: entries of the verified-token cache (0 turns it off).
        allow_insecure_http: accept plain-http URLs that are not loopback.
        clock: seconds since the epoch; injectable for tests.
        fail_fast: make :meth:`start` raise on a misconfiguration that will not fix
            itself (an outage is only logged, and retried).
        key_source: share another verifier's :attr:`key_source` (issuers publishing one
            JWKS, such as Entra tenants) instead of building one: one fetch serves both.
            Its own settings apply (``jwks_uri``, ``http_client`` must then stay None);
            :meth:`start` starts it, :meth:`aclose` leaves it to the verifier that built it.
        dpop: DPoP (RFC 9449) for this issuer's tokens: ``"allowed"`` (bearer tokens, and
            DPoP-bound ones with a valid proof), ``"required"`` (DPoP only), ``"off"``, or
            a :class:`~resource_guard.dpop.DPoPPolicy` for the proof options (replay store,
            nonces, window). The middleware enforces it; see docs/dpop.md.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        *,
        audience_claim: str = "aud",
        jwks_uri: str | None = None,
        algorithms: Sequence[str] | None = None,
        leeway: float = 30,
        refresh_interval: float = 600,
        cooldown: float = 30,
        max_stale: float = 86400,
        timeout: float = 5,
        http_client: httpx.AsyncClient | None = None,
        scope_claims: Sequence[str] = ("scope", "scp"),
        scope_mapper: ScopeMapper | None = None,
        required_claims: Sequence[str] = (),
        claim_values: Mapping[str, ClaimValue] | None = None,
        strict: bool = False,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        cache_size: int = DEFAULT_CACHE_SIZE,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.time,
        fail_fast: bool = False,
        key_source: RemoteKeySource | None = None,
        dpop: DPoPMode | DPoPPolicy = "allowed",
    ) -> None:
        if not isinstance(allow_insecure_http, bool):
            raise TypeError("allow_insecure_http must be a bool")
        check_url(issuer, "issuer", allow_insecure_http=allow_insecure_http)
        if "?" in issuer or "#" in issuer:
            raise ValueError("issuer must not contain a query or fragment")
        if jwks_uri is not None:
            check_url(jwks_uri, "jwks_uri", allow_insecure_http=allow_insecure_http)
        audiences = opt.strings("audience", audience)
        if not isinstance(audience_claim, str):
            raise TypeError("audience_claim must be the name of a claim, such as 'aud'")
        if not audience_claim.strip():
            raise ValueError("audience_claim must not be empty: name a claim, such as 'aud'")
        values = _check_claim_values({} if claim_values is None else claim_values)
        allowed = DEFAULT_ALGORITHMS if algorithms is None else algorithms
        self._algorithms = _check_algorithms(allowed)
        leeway = opt.seconds("leeway", leeway, low=0, high=300)
        refresh_interval = opt.seconds("refresh_interval", refresh_interval, low=1, high=86400)
        cooldown = opt.seconds("cooldown", cooldown, low=0, high=3600)
        max_stale = opt.seconds("max_stale", max_stale, low=0, high=7 * 86400)
        timeout = opt.seconds("timeout", timeout, low=0.1, high=60)
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient (or None)")
        if scope_mapper is not None and not callable(scope_mapper):
            raise TypeError("scope_mapper must be callable: claims -> iterable of scopes")
        if not isinstance(strict, bool):
            raise TypeError("strict must be a bool")
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds since the epoch")
        required = opt.strings("required_claims", required_claims, allow_empty=True)
        if strict:
            required = tuple(dict.fromkeys((*required, *RFC9068_CLAIMS)))

        if not isinstance(fail_fast, bool):
            raise TypeError("fail_fast must be a bool")
        self._fail_fast = fail_fast
        self._issuer = issuer
        self._audiences = audiences
        self._leeway = leeway
        self._clock = clock
        self._claims = ClaimRules(
            issuer, frozenset(audiences), leeway, required, strict, audience_claim, values
        )
        self._scopes = ScopeRules(
            opt.strings("scope_claims", scope_claims, allow_empty=True), scope_mapper
        )
        self._parser = TokenParser(
            opt.count("max_token_bytes", max_token_bytes, low=256, high=1024 * 1024)
        )
        size = opt.count("cache_size", cache_size, low=0, high=10_000_000)
        self._cache = VerifiedTokenCache(size) if size else None
        self._owns_keys = _check_key_source(key_source, jwks_uri, http_client) is None
        self._keys = key_source or RemoteKeySource(
            issuer=issuer,
            jwks_uri=jwks_uri,
            refresh_interval=refresh_interval,
            cooldown=cooldown,
            max_stale=max_stale,
            timeout=timeout,
            http_client=http_client,
            allow_insecure_http=allow_insecure_http,
            clock=clock,
        )
        self._dpop = DPoPPolicy.of(dpop)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build a verifier from ``RESOURCE_GUARD_*`` environment variables.

        ``RESOURCE_GUARD_ISSUER`` and ``RESOURCE_GUARD_AUDIENCE`` are required; see
        docs/configuration.md for the rest. Keyword ``overrides`` win over the environment.
        """
        settings: dict[str, Any] = opt.settings_from_env(environ, _ENVIRONMENT, 2, overrides)
        return cls(**settings)

    # -- properties --------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The expected ``iss``."""
        return self._issuer

    @property
    def audiences(self) -> tuple[str, ...]:
        """The accepted audiences."""
        return self._audiences

    @property
    def audience_claim(self) -> str:
        """The claim checked against :attr:`audiences` (``aud`` unless configured)."""
        return self._claims.audience_claim

    @property
    def claim_values(self) -> Mapping[str, ClaimValue]:
        """Claims that must equal these values (read-only)."""
        return MappingProxyType(dict(self._claims.claim_values))

    @property
    def scope_claims(self) -> tuple[str, ...]:
        """The claims read as scopes."""
        return tuple(self._scopes.claims)

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithm allow-list."""
        return self._algorithms

    @property
    def token_cache(self) -> VerifiedTokenCache | None:
        """The verified-token cache (``len()`` and ``maxsize`` for metrics); None when
        ``cache_size=0`` turned it off."""
        return self._cache

    @property
    def key_source(self) -> RemoteKeySource:
        """The JWKS source (for health checks and tests: ``fetch_count``, ``last_error``)."""
        return self._keys

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Fetch keys now and refresh them in the background. Safe to call again.

        An unreachable IdP is logged, not raised: requests get 503 until keys arrive. With
        ``fail_fast=True``, a misconfiguration that will not fix itself (discovery 404,
        issuer mismatch, a JWKS without a usable key) raises
        :class:`~resource_guard.KeysUnavailableError` (``permanent=True``) instead.
        """
        await self._keys.start(fail_fast=self._fail_fast)

    async def aclose(self) -> None:
        """Stop background refreshing and close the HTTP client this verifier created
        (a shared ``key_source`` is left to the verifier that built it)."""
        if self._owns_keys:
            await self._keys.aclose()
        await self._dpop.aclose()

    def dpop_policy(self, token: AccessToken | None = None) -> DPoPPolicy:
        """The DPoP policy for ``token`` (this verifier has one for all its tokens); with
        None, the policy that challenges a request without a token."""
        return self._dpop

    async def token_endpoint(self) -> str | None:
        """The issuer's ``token_endpoint`` from discovery, or None if it cannot be had."""
        return await self._keys.endpoint("token_endpoint")

    # -- verification ------------------------------------------------------------------

    async def verify(self, token: str) -> AccessToken:
        """Verify ``token`` and return what it grants.

        Checks, in order: size, structure and the header, algorithm allow-list, key
        selection, signature, then the payload, ``typ`` and claims. Raises an InvalidTokenError
        subclass, or KeysUnavailableError when keys cannot be had right now.
        """
        found = self._lookup(token)
        if isinstance(found, AccessToken):
            return found
        header: Header | None = None
        payload = ""
        try:
            header, payload, signing_input, signature = self._parser.split(token)
            alg = header.alg
            if alg not in self._algorithms:
                raise AlgorithmNotAllowedError(f"algorithm {alg!r:.40} is not allowed")
            keys = self._keys
            key = keys.current_key(header.kid, alg) or await keys.get_key(header.kid, alg)
            return self._accept(key, header, payload, signing_input, signature, found)
        except InvalidTokenError as exc:
            annotate_refusal(exc, header, payload, self._claims, self._clock())
            logger.debug("token refused (%s): %s", exc.code, exc.message)
            raise

    def cached(self, token: str | bytes) -> AccessToken | None:
        """The AccessToken of a token verified before, without waiting; else None.

        A token :meth:`verify` accepted earlier and would accept now: its cache entry's
        time window holds, its key was not revoked and the keys are usable. None means
        "ask :meth:`verify`": the token was never verified (or was refused), left the
        cache, expired, or lost its key; nothing about the token is judged here.

        ``token`` may be the raw bytes of an ``Authorization`` header's token: an ASCII
        token hashes to the same cache key either way. Never waits; call it on the event
        loop (a hit may start a background key refresh that is due).

        Always None while :meth:`verify` is overridden, on the instance
        (``verifier.verify = wrapper``, ``mock.patch.object``) or in a subclass, so that
        every token goes through the override: a deny list, an audit wrapper, a mock.
        """
        if type(self).verify is not _VERIFY or "verify" in self.__dict__:
            return None
        found = self._lookup(token)
        return found if isinstance(found, AccessToken) else None

    def _lookup(self, token: str | bytes) -> AccessToken | bytes:
        """A cache hit's AccessToken, else the token's cache key (b"" when not cacheable).

        A hit is an entry that still holds (time window, key, keys usable); an entry that
        no longer holds is dropped, so that :meth:`verify` names the precise error.
        """
        cache = self._cache
        kind = type(token)
        if (
            cache is None
            or (kind is not str and kind is not bytes)
            or len(token) > self._parser.max_length
            or not token.isascii()
        ):
            return b""
        digest = token_digest(token.encode() if isinstance(token, str) else token)
        now = self._clock()
        keys = self._keys
        entry = cache.get(digest, now)
        if entry is None:
            return digest
        if now > keys.usable_until:
            cache.forget(digest)  # verify afresh: the full path names the precise error
            return digest
        if now >= keys.refresh_due:
            keys.refresh_if_due(now)
        return entry.token

    def _accept(
        self,
        key: VerificationKey,
        header: Header,
        payload_segment: str,
        signing_input: bytes,
        signature: bytes,
        digest: bytes,
    ) -> AccessToken:
        """Signature, then the payload, ``typ`` and claims; build the AccessToken and
        cache it. Nothing of the payload is parsed before the signature verified."""
        alg = header.alg
        if not key.verify(alg, signing_input, signature):
            raise InvalidSignatureError(f"bad signature for kid={header.kid!r:.66}")
        payload = decode_payload(payload_segment)
        self._claims.check_type(header.typ)
        exp, nbf = self._claims.check(payload, self._clock())
        get = payload.get
        access_token = AccessToken(
            claims=MappingProxyType(payload),
            scopes=self._scopes.extract(payload),
            expires_at=datetime.fromtimestamp(exp, UTC),
            subject=get("sub"),
            client_id=get("client_id") or get("azp") or get("cid") or get("appid"),
            issuer=self._issuer,
            key_id=key.kid,
        )
        if self._cache is not None and digest:
            self._cache.put(
                digest,
                CacheEntry(
                    access_token,
                    key,
                    -math.inf if nbf is None else nbf - self._leeway,
                    exp + self._leeway,
                ),
            )
        return access_token


_VERIFY = TokenVerifier.verify
"""TokenVerifier's own verify(): :meth:`TokenVerifier.cached` answers only while it is the
one in force (a later patch of the class counts as an override too)."""

_ENVIRONMENT: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("issuer", "RESOURCE_GUARD_ISSUER", str),
    ("audience", "RESOURCE_GUARD_AUDIENCE", opt.split_list),
    ("audience_claim", "RESOURCE_GUARD_AUDIENCE_CLAIM", str),
    ("jwks_uri", "RESOURCE_GUARD_JWKS_URI", str),
    ("algorithms", "RESOURCE_GUARD_ALGORITHMS", opt.split_list),
    ("leeway", "RESOURCE_GUARD_LEEWAY", float),
    ("refresh_interval", "RESOURCE_GUARD_REFRESH_INTERVAL", float),
    ("cooldown", "RESOURCE_GUARD_COOLDOWN", float),
    ("max_stale", "RESOURCE_GUARD_MAX_STALE", float),
    ("timeout", "RESOURCE_GUARD_TIMEOUT", float),
    ("scope_claims", "RESOURCE_GUARD_SCOPE_CLAIMS", opt.split_list),
    ("required_claims", "RESOURCE_GUARD_REQUIRED_CLAIMS", opt.split_list),
    ("claim_values", "RESOURCE_GUARD_CLAIM_VALUES", _parse_claim_values),
    ("strict", "RESOURCE_GUARD_STRICT", opt.parse_bool),
    ("max_token_bytes", "RESOURCE_GUARD_MAX_TOKEN_BYTES", int),
    ("cache_size", "RESOURCE_GUARD_CACHE_SIZE", int),
    ("allow_insecure_http", "RESOURCE_GUARD_ALLOW_INSECURE_HTTP", opt.parse_bool),
    ("dpop", "RESOURCE_GUARD_DPOP", str),
)
"""(option, environment variable, converter); the first two are required."""
