"""IntrospectionVerifier: opaque (reference) access tokens judged by the issuer's RFC 7662
introspection endpoint, cached, bounded and revocable.

Rules (docs/opaque-tokens.md explains them for users):

* ``verify`` answers from the cache when it can: an active answer until the earliest of
  its ``exp`` and ``cache_ttl`` (so a revoked token stops working within ``cache_ttl``), a
  refusal for ``negative_cache_ttl``. Entries are keyed by the token's digest, never the
  token.
* Otherwise one introspection call per token at a time: concurrent requests with the same
  token await the one call in flight (single-flight), and a request's cancellation never
  cancels it. At most ``max_pending`` distinct tokens are in flight; beyond, 503 at once.
* One overall deadline per call (``timeout``: discovery, the POST and, for RFC 9701
  answers, the key look-up together). Any failure (no answer, slow, not 200, not JSON,
  oversized, the wrong content type, an RFC 9701 answer that does not verify) is never an
  ``active`` token: :class:`IntrospectionUnavailableError` (503 + ``Retry-After``), and
  new tokens fail fast for a cooldown that grows while failures last (the one backoff
  formula), so a failing endpoint never sees a retry storm: once the cooldown is over,
  one call probes the endpoint while other new tokens still get 503. A 401/403 means our
  own client credentials are wrong: logged as the misconfiguration it is (and raised by
  ``start()`` with ``fail_fast``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import httpx

from .. import _options as opt
from .._algorithms import ALGORITHMS, DEFAULT_ALGORITHMS
from .._claims import ClaimRules, ScopeMapper, ScopeRules
from .._client_auth import ClientAuthentication
from .._discovery import Metadata, discover
from .._fetch import (
    FetchError,
    Reply,
    backoff_delay,
    bare_request,
    check_url,
    describe_error,
    send_async,
)
from .._jwks import RemoteKeySource
from .._jws import TokenParser, parse_json_object
from .._models import AccessToken
from .._protocol import Lifecycle
from .._token_cache import token_digest
from ..dpop import DPoPMode, DPoPPolicy
from ..exceptions import (
    IntrospectionUnavailableError,
    InvalidTokenError,
    KeysUnavailableError,
    MalformedTokenError,
)
from ._cache import IntrospectionCache
from ._response import (
    JSON_MEDIA_TYPE,
    JWT_MEDIA_TYPE,
    ResponseError,
    ResponseRules,
    open_jwt_response,
    split_jwt_response,
)

logger = logging.getLogger("resource_guard.introspection")

RESPONSE_FORMATS = ("json", "jwt", "auto")
DEFAULT_MAX_TOKEN_BYTES = 16 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024
MAX_COOLDOWN = 60.0
_SIGNING_ALGS = "introspection_signing_alg_values_supported"

Outcome = AccessToken | InvalidTokenError | IntrospectionUnavailableError


class _Failed(Exception):
    """One failed introspection call; the message says why (no token, no secret).
    ``permanent``: a misconfiguration that will not fix itself (what ``fail_fast`` raises)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def _final(status: int | None) -> bool:
    """An HTTP status that retrying will not change (3xx, 4xx but 408/425/429)."""
    return status is not None and status < 500 and status not in (408, 425, 429)


def _fresh(error: Exception) -> Exception:
    """A copy of ``error`` to raise: one answer is raised in many requests (single-flight,
    the refusal cache), and raising one object again and again would grow its traceback."""
    copy = type(error).__new__(type(error), *error.args)
    copy.__dict__.update(error.__dict__)
    return copy


def _media_type(reply: Reply) -> str:
    value: str = reply.headers.get("Content-Type", "")
    return value.split(";", 1)[0].strip().lower()


class IntrospectionVerifier(Lifecycle):
    """Verifies opaque access tokens with the issuer's introspection endpoint (RFC 7662).

    The same interface as :class:`~resource_guard.TokenVerifier` (``verify``, ``cached``,
    ``start``, ``aclose``; see :class:`~resource_guard.Verifier`) and the same
    :class:`~resource_guard.AccessToken`: ``claims`` are the answer's members, ``scopes``
    come from ``scope_claims``, ``key_id`` is None. Every option is checked here.

    Args:
        issuer: the authorization server; an answer's ``iss``, when present, must equal it.
        audience: one value or several; the answer's ``aud`` must contain one of them.
        client_id: this resource server's client at the authorization server.
        client_secret: its secret (``client_secret_basic``, or ``client_secret_post``).
        client_auth: ``client_secret_basic``, ``client_secret_post`` or
            ``private_key_jwt``; None picks ``private_key_jwt`` when ``private_key`` is
            given, else ``client_secret_basic``.
        private_key: for ``private_key_jwt`` (RFC 7523): a ``cryptography`` private key
            or its PEM.
        private_key_id: the key's ``kid`` as registered at the issuer (None: no ``kid``).
        private_key_algorithm: the JWS algorithm (None: RS256, ES256/384/512 or EdDSA by
            key type).
        assertion_audience: the assertion's ``aud`` (None: the endpoint URL).
        introspection_endpoint: the URL; None discovers it (OIDC, then RFC 8414).
        response_format: ``json`` (RFC 7662), ``jwt`` (RFC 9701 signed answers only,
            verified with the issuer's JWKS) or ``auto`` (``jwt`` when discovery lists
            ``introspection_signing_alg_values_supported``).
        require_audience: refuse an answer without ``aud`` (default). False accepts it
            (for servers that leave ``aud`` out); a present ``aud`` is checked anyway.
        audience_claim: the member checked against ``audience``.
        required_claims: members that must be present (e.g. ``("exp", "sub")``); without
            ``exp`` an active answer holds for ``cache_ttl`` and ``expires_at`` is then.
        leeway: seconds of clock skew for ``exp``, ``nbf`` and ``iat`` (0-300).
        cache_ttl: longest time an active answer is reused (0-3600 s, default 60): the
            bound within which a revoked token stops working.
        negative_cache_ttl: how long a refusal is reused (0-300 s, default 5).
        cache_size: entries of the active-answer cache (0 turns it off).
        negative_cache_size: entries of the refusal cache (0 turns it off).
        timeout: overall deadline of one introspection call (0.1-60 s).
        cooldown: after a failed call, new tokens get 503 at once for this long, doubling
            while failures last (up to 60 s; 0 disables it).
        max_pending: distinct tokens being introspected at once; beyond, 503 at once.
        scope_claims: the members read as scopes, as for TokenVerifier.
        scope_mapper: optional callable adding scopes derived from the members.
        algorithms: accepted algorithms of RFC 9701 answers (None: every supported one).
        jwks_uri: the issuer's JWKS for RFC 9701 answers; None discovers it.
        max_token_bytes: longer tokens are refused without a call.
        max_response_bytes: larger answers are a failure (503).
        http_client: an ``httpx.AsyncClient`` to use; None creates our own.
        allow_insecure_http: accept plain-http URLs that are not loopback.
        clock: seconds since the epoch; injectable for tests.
        dpop: DPoP (RFC 9449) for these tokens, as for TokenVerifier: ``"allowed"``
            (an answer with ``cnf.jkt`` binds the token to a key: the middleware then wants
            a valid proof), ``"required"``, ``"off"``, or a
            :class:`~resource_guard.dpop.DPoPPolicy`.
        fail_fast: make :meth:`start` raise on a misconfiguration that will not fix
            itself (see there) instead of logging it.
    """

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        *,
        client_id: str,
        client_secret: str | None = None,
        client_auth: str | None = None,
        private_key: object = None,
        private_key_id: str | None = None,
        private_key_algorithm: str | None = None,
        assertion_audience: str | None = None,
        introspection_endpoint: str | None = None,
        response_format: str = "json",
        require_audience: bool = True,
        audience_claim: str = "aud",
        required_claims: Sequence[str] = (),
        leeway: float = 30,
        cache_ttl: float = 60,
        negative_cache_ttl: float = 5,
        cache_size: int = 4096,
        negative_cache_size: int = 1024,
        timeout: float = 5,
        cooldown: float = 2,
        max_pending: int = 256,
        scope_claims: Sequence[str] = ("scope", "scp"),
        scope_mapper: ScopeMapper | None = None,
        algorithms: Sequence[str] | None = None,
        jwks_uri: str | None = None,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.time,
        dpop: DPoPMode | DPoPPolicy = "allowed",
        fail_fast: bool = False,
    ) -> None:
        for name, flag in (
            ("allow_insecure_http", allow_insecure_http),
            ("require_audience", require_audience),
            ("fail_fast", fail_fast),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool")
        self._fail_fast = fail_fast
        self._insecure = allow_insecure_http
        check_url(issuer, "issuer", allow_insecure_http=allow_insecure_http)
        if "?" in issuer or "#" in issuer:
            raise ValueError("issuer must not contain a query or fragment")
        for name, url in (
            ("introspection_endpoint", introspection_endpoint),
            ("jwks_uri", jwks_uri),
        ):
            if url is not None:
                check_url(url, name, allow_insecure_http=allow_insecure_http)
        self._auth = ClientAuthentication.create(
            client_id,
            method=client_auth,
            client_secret=client_secret,
            private_key=private_key,
            algorithm=private_key_algorithm,
            key_id=private_key_id,
            assertion_audience=assertion_audience,
        )
        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}")
        if not isinstance(audience_claim, str) or not audience_claim.strip():
            raise ValueError("audience_claim must name a member, such as 'aud'")
        if scope_mapper is not None and not callable(scope_mapper):
            raise TypeError("scope_mapper must be callable: claims -> iterable of scopes")
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise TypeError("http_client must be an httpx.AsyncClient (or None)")
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds since the epoch")
        names = opt.strings("algorithms", DEFAULT_ALGORITHMS if algorithms is None else algorithms)
        unknown = sorted(set(names) - set(ALGORITHMS))
        if unknown:
            raise ValueError(
                f"unsupported algorithm(s) {unknown}; choose from {sorted(ALGORITHMS)}"
            )
        self._algorithms = frozenset(names)
        self._issuer = issuer
        self._audiences = opt.strings("audience", audience)
        # RFC 9701 answers name us by client id or by resource identifier (its example)
        self._answer_audiences = frozenset((self._auth.client_id, *self._audiences))
        self._leeway = opt.seconds("leeway", leeway, low=0, high=300)
        self._cache_ttl = opt.seconds("cache_ttl", cache_ttl, low=0, high=3600)
        self._negative_ttl = opt.seconds("negative_cache_ttl", negative_cache_ttl, low=0, high=300)
        self._timeout = opt.seconds("timeout", timeout, low=0.1, high=60)
        self._cooldown = opt.seconds("cooldown", cooldown, low=0, high=MAX_COOLDOWN)
        self._max_pending = opt.count("max_pending", max_pending, low=1, high=100_000)
        self._max_token_bytes = opt.count("max_token_bytes", max_token_bytes, low=256, high=1 << 20)
        self._max_response_bytes = opt.count(
            "max_response_bytes", max_response_bytes, low=1024, high=1 << 24
        )
        self._cache = IntrospectionCache(
            opt.count("cache_size", cache_size, low=0, high=10_000_000),
            opt.count("negative_cache_size", negative_cache_size, low=0, high=10_000_000),
        )
        self._rules = ResponseRules(
            ClaimRules(issuer, frozenset(self._audiences), self._leeway, (), False, audience_claim),
            ScopeRules(opt.strings("scope_claims", scope_claims, allow_empty=True), scope_mapper),
            opt.strings("required_claims", required_claims, allow_empty=True),
            require_audience,
        )
        self._parser = TokenParser(self._max_response_bytes)
        self._format = response_format
        self._endpoint = introspection_endpoint
        self._jwks_uri = jwks_uri
        self._metadata: Metadata | None = None
        self._keys: RemoteKeySource | None = None
        self._clock = clock
        self._jitter: Callable[[], float] = random.random
        self._given_client = http_client
        self._own_client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[bytes, asyncio.Task[Outcome]] = {}
        self._failures = 0
        self._retry_at = -math.inf
        self.last_error: str | None = None
        """Why the last introspection call failed; None after a call that worked."""
        self.introspection_count = 0
        """Introspection calls started so far (for tests, metrics and benchmarks)."""
        self._dpop = DPoPPolicy.of(dpop)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build a verifier from ``RESOURCE_GUARD_*`` environment variables.

        ``RESOURCE_GUARD_ISSUER``, ``RESOURCE_GUARD_AUDIENCE`` and
        ``RESOURCE_GUARD_INTROSPECTION_CLIENT_ID`` are required; see docs/configuration.md
        for the rest. Keyword ``overrides`` win over the environment.
        """
        settings: dict[str, Any] = opt.settings_from_env(environ, _ENVIRONMENT, 3, overrides)
        return cls(settings.pop("issuer"), settings.pop("audience"), **settings)

    # -- properties --------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The authorization server."""
        return self._issuer

    @property
    def audiences(self) -> tuple[str, ...]:
        """The accepted audiences."""
        return self._audiences

    @property
    def client_id(self) -> str:
        """This resource server's client id at the authorization server."""
        return self._auth.client_id

    @property
    def client_auth(self) -> str:
        """The client authentication method in use."""
        return self._auth.method

    @property
    def introspection_endpoint(self) -> str | None:
        """The endpoint URL: configured, or discovered (None until discovery worked)."""
        return self._endpoint

    @property
    def cache(self) -> IntrospectionCache:
        """The answer cache (``len()``; iterating gives its keys: token digests)."""
        return self._cache

    @property
    def pending(self) -> int:
        """Introspection calls in flight now."""
        return len(self._pending)

    @property
    def key_source(self) -> RemoteKeySource | None:
        """The JWKS source verifying RFC 9701 answers (None until one is needed)."""
        return self._keys

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve the endpoint (discovery) now and, for RFC 9701 answers, fetch the
        issuer's keys. A failure is logged, not raised: requests get 503 until it works.

        With ``fail_fast=True``, start also introspects one random token (proving the
        client credentials), and a misconfiguration that will not fix itself (discovery
        answering 404 or without ``introspection_endpoint``, our credentials refused with
        401/403, an endpoint that does not answer ``active: false`` for that random token,
        no usable key for RFC 9701 answers) raises
        :class:`~resource_guard.IntrospectionUnavailableError` (``permanent=True``; a
        :class:`~resource_guard.KeysUnavailableError` for the keys). An outage never does.
        """
        self._bind_loop()
        try:
            async with asyncio.timeout(self._timeout):
                await self._resolve()
                if self._fail_fast:
                    await self._probe()
        except (_Failed, TimeoutError) as exc:
            reason = str(exc) or f"no answer within {self._timeout:g} s"
            if self._fail_fast and isinstance(exc, _Failed) and exc.permanent:
                raise IntrospectionUnavailableError(
                    f"token introspection is misconfigured: {reason}; this will not fix "
                    "itself, check issuer, introspection_endpoint and the client credentials",
                    retry_after=max(self._cooldown, 1.0),
                    permanent=True,
                ) from None
            logger.warning("token introspection is not ready yet: %s", reason)
            return
        if self._keys is not None:
            await self._keys.start(fail_fast=self._fail_fast)

    async def _probe(self) -> None:
        """Introspect a random token: proves our credentials, and that the endpoint does
        not call just anything active (a stub or a misrouted URL would)."""
        answer = await self._ask(secrets.token_urlsafe(32))
        if answer.get("active") is not False:
            raise _Failed(
                "the endpoint did not answer active=false for a random token: it cannot be "
                "trusted to judge tokens",
                permanent=True,
            )

    def dpop_policy(self, token: AccessToken | None = None) -> DPoPPolicy:
        """The DPoP policy (one for every token of this verifier)."""
        return self._dpop

    async def aclose(self) -> None:
        """Cancel calls in flight and close the HTTP clients this verifier created."""
        tasks = list(self._pending.values())
        self._pending = {}
        for task in tasks:
            task.cancel()
        if pending := [task for task in tasks if not task.done()]:
            await asyncio.wait(pending)
        if self._keys is not None:
            await self._keys.aclose()
        client, self._own_client = self._own_client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()  # (one of another, finished loop is only dropped)
        await self._dpop.aclose()

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Tasks and connections belong to one event loop; a new loop starts afresh.
            self._loop = loop
            self._pending = {}
            self._own_client = None

    def _client(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            self._own_client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_connections=self._max_pending),
            )
        return self._own_client

    # -- verification ------------------------------------------------------------------

    async def verify(self, token: str) -> AccessToken:
        """Introspect ``token`` (or answer from the cache) and return what it grants.

        Raises InactiveTokenError (not active), an InvalidClaimError subclass (a member
        fails a rule), MalformedTokenError (not a bearer token at all: no call made), or
        IntrospectionUnavailableError when the endpoint cannot answer now.
        """
        if not isinstance(token, str):
            raise MalformedTokenError("the token is not a string")
        if len(token) > self._max_token_bytes:
            raise MalformedTokenError("the token is larger than this verifier accepts")
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise MalformedTokenError("the token holds characters a bearer token cannot hold")
        digest = token_digest(token.encode("ascii"))
        now = self._clock()
        cache = self._cache
        found = cache.active(digest, now)
        if found is not None:
            return found
        refused = cache.refusal(digest, now)
        if refused is not None:
            raise _fresh(refused)
        outcome = await self._shared(token, digest)
        if isinstance(outcome, AccessToken):
            return outcome
        raise _fresh(outcome)

    def cached(self, token: str | bytes) -> AccessToken | None:
        """The AccessToken of an active answer still cached for ``token``, without waiting;
        else None ("ask :meth:`verify`"). ``token`` may be the raw bytes after ``Bearer``.
        Always None while :meth:`verify` is overridden (see TokenVerifier.cached)."""
        if type(self).verify is not _VERIFY or "verify" in self.__dict__:
            return None
        kind = type(token)
        if (
            (kind is not str and kind is not bytes)
            or len(token) > self._max_token_bytes
            or not token.isascii()
        ):
            return None
        digest = token_digest(token.encode() if isinstance(token, str) else token)
        return self._cache.active(digest, self._clock())

    async def _shared(self, token: str, digest: bytes) -> Outcome:
        """Join the call in flight for this token, or start it (cooldown and bound allowing)."""
        self._bind_loop()
        task = self._pending.get(digest)
        if task is None:
            now = self._clock()
            if now < self._retry_at:
                raise IntrospectionUnavailableError(
                    f"token introspection failed recently ({self.last_error}); "
                    "new tokens wait for the cooldown",
                    retry_after=float(max(1, math.ceil(self._retry_at - now))),
                )
            if self._failures and self._cooldown and self._pending:
                raise IntrospectionUnavailableError(
                    f"token introspection failed recently ({self.last_error}); one call "
                    "is probing the endpoint",
                    retry_after=1.0,
                )
            if len(self._pending) >= self._max_pending:
                raise IntrospectionUnavailableError(
                    f"{len(self._pending)} introspection calls are in flight already",
                    retry_after=1.0,
                )
            task = asyncio.get_running_loop().create_task(
                self._introspect(token, digest), name="resource-guard-introspect"
            )
            self._pending[digest] = task
            task.add_done_callback(functools.partial(self._forget, digest))
        return await asyncio.shield(task)

    def _forget(self, digest: bytes, task: asyncio.Task[Outcome]) -> None:
        if self._pending.get(digest) is task:
            del self._pending[digest]
        if not task.cancelled():
            task.exception()  # mark retrieved; _introspect returns its failures

    async def _introspect(self, token: str, digest: bytes) -> Outcome:
        """One call and its judgement; the outcome is cached (a failure starts the
        cooldown). Never raises: every outcome is returned."""
        self.introspection_count += 1
        try:
            async with asyncio.timeout(self._timeout):
                document = await self._ask(token)
        except _Failed as exc:
            return self._failed(str(exc))
        except TimeoutError:
            return self._failed(f"no complete answer within {self._timeout:g} s")
        except Exception as exc:  # a bug must not pass for an answer; traceback at DEBUG
            logger.debug("unexpected error during token introspection", exc_info=True)
            return self._failed("unexpected " + describe_error(exc))
        self._failures = 0
        self._retry_at = -math.inf
        self.last_error = None
        now = self._clock()
        until = now + self._cache_ttl
        try:
            access, exp = self._rules.judge(document, now, until)
        except InvalidTokenError as exc:
            logger.debug("introspection refused a token (%s): %s", exc.code, exc.message)
            if self._negative_ttl:
                self._cache.put_refusal(digest, exc, now + self._negative_ttl)
            return exc
        if exp is not None:
            until = min(until, exp)
        if until > now:
            self._cache.put_active(digest, access, until)
        return access

    def _failed(self, reason: str) -> IntrospectionUnavailableError:
        now = self._clock()
        self._failures += 1
        delay = 0.0
        if self._cooldown:
            delay = backoff_delay(
                self._failures, base=self._cooldown, cap=MAX_COOLDOWN, jitter=self._jitter()
            )
        self._retry_at = now + delay
        self.last_error = reason
        logger.error(
            "token introspection failed (%s); tokens not cached get 503 for %.0f s", reason, delay
        )
        return IntrospectionUnavailableError(
            f"token introspection failed: {reason}", retry_after=float(max(1, math.ceil(delay)))
        )

    # -- the exchange ------------------------------------------------------------------

    async def _ask(self, token: str) -> dict[str, object]:
        """POST the token; the answer's members (from JSON or a verified RFC 9701 JWT)."""
        endpoint, signed = await self._resolve()
        headers = {"Accept": JWT_MEDIA_TYPE if signed else JSON_MEDIA_TYPE}
        auth_headers, form = self._auth.apply(endpoint, self._clock())
        headers.update(auth_headers)
        form.update(token=token, token_type_hint="access_token")
        try:
            request = bare_request(
                "POST", endpoint, timeout=self._timeout, headers=headers, data=form
            )
            reply = await send_async(
                self._client(), request, timeout=self._timeout, max_bytes=self._max_response_bytes
            )
        except FetchError as exc:
            raise _Failed(str(exc)) from None
        status = reply.status_code
        if status in (401, 403):
            logger.error(
                "the introspection endpoint refused this resource server's credentials "
                "(HTTP %d; client_id=%r, %s): check client_id and its secret or key",
                status,
                self._auth.client_id,
                self._auth.method,
            )
            raise _Failed(
                f"HTTP {status}: our client credentials were refused (misconfiguration)",
                permanent=True,
            )
        if status != 200:
            raise _Failed(f"HTTP status {status} instead of 200")
        media_type = _media_type(reply)
        wanted = JWT_MEDIA_TYPE if signed else JSON_MEDIA_TYPE
        if media_type != wanted:
            raise _Failed(f"the answer is {media_type or 'untyped'!r:.60}, not {wanted}")
        if signed:
            return await self._open_signed(reply.body)
        try:
            return parse_json_object(reply.body, "answer")
        except MalformedTokenError:
            raise _Failed("the answer is not a JSON object") from None

    async def _open_signed(self, body: bytes) -> dict[str, object]:
        try:
            parts = split_jwt_response(self._parser, body, self._algorithms)
            header = parts[0]
            keys = self._keys
            assert keys is not None  # _resolve made it for a signed format
            try:
                key = keys.current_key(header.kid, header.alg) or await keys.get_key(
                    header.kid, header.alg
                )
            except (InvalidTokenError, KeysUnavailableError) as exc:
                raise ResponseError(f"no key for the JWT answer ({exc.message})") from None
            return open_jwt_response(
                key,
                parts,
                issuer=self._issuer,
                audiences=self._answer_audiences,
                now=self._clock(),
                max_age=self._leeway + self._timeout,
                leeway=self._leeway,
            )
        except ResponseError as exc:
            raise _Failed(str(exc)) from None

    async def _resolve(self) -> tuple[str, bool]:
        """The endpoint URL and whether answers are RFC 9701 JWTs (discovering once)."""
        fmt = self._format
        if self._metadata is None and (
            self._endpoint is None or fmt == "auto" or (fmt == "jwt" and self._jwks_uri is None)
        ):
            self._metadata = await self._discover()
        metadata = self._metadata
        if self._endpoint is None:
            assert metadata is not None
            self._endpoint = self._discovered(metadata, "introspection_endpoint")
        signed = fmt == "jwt" or (
            fmt == "auto"
            and metadata is not None
            and isinstance(metadata.document.get(_SIGNING_ALGS), list)
        )
        if signed and self._keys is None:
            jwks_uri = self._jwks_uri
            if jwks_uri is None:
                assert metadata is not None
                jwks_uri = self._discovered(metadata, "jwks_uri")
            self._keys = RemoteKeySource(
                issuer=self._issuer,
                jwks_uri=jwks_uri,
                refresh_interval=600,
                cooldown=30,
                max_stale=86400,
                timeout=self._timeout,
                http_client=self._given_client,
                allow_insecure_http=self._insecure,
                clock=self._clock,
            )
        return self._endpoint, signed

    def _discovered(self, metadata: Metadata, name: str) -> str:
        try:
            return metadata.endpoint(name, allow_insecure_http=self._insecure)
        except FetchError as exc:
            raise _Failed(str(exc), permanent=True) from None

    async def _discover(self) -> Metadata:
        """OIDC discovery, then RFC 8414; a failure is permanent when every location
        answered for good (404, another issuer's document), not when one did not answer."""
        statuses: list[int | None] = []

        async def get(url: str) -> Reply:
            request = bare_request("GET", url, timeout=self._timeout)
            try:
                reply = await send_async(
                    self._client(),
                    request,
                    timeout=self._timeout,
                    max_bytes=self._max_response_bytes,
                )
            except FetchError:
                statuses.append(None)
                raise
            statuses.append(reply.status_code)
            return reply

        try:
            return await discover(self._issuer, get)
        except FetchError as exc:
            raise _Failed(str(exc), permanent=all(map(_final, statuses))) from None


_VERIFY = IntrospectionVerifier.verify
"""IntrospectionVerifier's own verify(): ``cached`` answers only while it is in force."""

_ENVIRONMENT: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("issuer", "RESOURCE_GUARD_ISSUER", str),
    ("audience", "RESOURCE_GUARD_AUDIENCE", opt.split_list),
    ("client_id", "RESOURCE_GUARD_INTROSPECTION_CLIENT_ID", str),
    ("client_secret", "RESOURCE_GUARD_INTROSPECTION_CLIENT_SECRET", str),
    ("client_auth", "RESOURCE_GUARD_INTROSPECTION_CLIENT_AUTH", str),
    ("private_key", "RESOURCE_GUARD_INTROSPECTION_PRIVATE_KEY", str),
    ("private_key_id", "RESOURCE_GUARD_INTROSPECTION_PRIVATE_KEY_ID", str),
    ("introspection_endpoint", "RESOURCE_GUARD_INTROSPECTION_ENDPOINT", str),
    ("response_format", "RESOURCE_GUARD_INTROSPECTION_RESPONSE_FORMAT", str),
    ("cache_ttl", "RESOURCE_GUARD_INTROSPECTION_CACHE_TTL", float),
    ("negative_cache_ttl", "RESOURCE_GUARD_INTROSPECTION_NEGATIVE_CACHE_TTL", float),
    ("audience_claim", "RESOURCE_GUARD_AUDIENCE_CLAIM", str),
    ("jwks_uri", "RESOURCE_GUARD_JWKS_URI", str),
    ("algorithms", "RESOURCE_GUARD_ALGORITHMS", opt.split_list),
    ("leeway", "RESOURCE_GUARD_LEEWAY", float),
    ("timeout", "RESOURCE_GUARD_TIMEOUT", float),
    ("scope_claims", "RESOURCE_GUARD_SCOPE_CLAIMS", opt.split_list),
    ("required_claims", "RESOURCE_GUARD_REQUIRED_CLAIMS", opt.split_list),
    ("max_token_bytes", "RESOURCE_GUARD_MAX_TOKEN_BYTES", int),
    ("allow_insecure_http", "RESOURCE_GUARD_ALLOW_INSECURE_HTTP", opt.parse_bool),
    ("dpop", "RESOURCE_GUARD_DPOP", str),
)
"""(option, environment variable, converter); the first three are required. The client
variables are the introspection's own: RESOURCE_GUARD_CLIENT_ID and its kin belong to
ClientCredentialsAuth (this service calling others, often as another client)."""
