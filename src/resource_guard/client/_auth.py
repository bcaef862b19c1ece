"""``ClientCredentialsAuth``: when to fetch a token (memory and disk caches, locks for
threads and event loops, refresh before expiry, one retry after a 401); how to fetch one is
the job of ``_fetcher``."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import Any

import httpx

from .._fetch import check_url
from .._options import count, seconds
from ..dpop import DPoPKey
from ..exceptions import TokenRequestError
from . import _options as options
from ._cache import DiskCache, cache_key
from ._dpop import dpop_session
from ._fetcher import Credentials, TokenFetcher
from ._http import RetryPolicy
from ._token import Token

__all__ = ["ClientCredentialsAuth"]

logger = logging.getLogger("resource_guard.client")

STALE_HOLD = 5.0
"""After a failed refresh, seconds to keep serving the still-valid token before trying again."""


def _copy(error: TokenRequestError) -> TokenRequestError:
    """A fresh instance for another waiter (one exception object is never raised twice)."""
    return TokenRequestError(
        error.message,
        error=error.error,
        error_description=error.error_description,
        status_code=error.status_code,
    )


def _replayable(request: httpx.Request) -> bool:
    """True when the request body can be sent again (bytes, not a consumed iterator)."""
    return isinstance(request.stream, httpx.ByteStream)


class ClientCredentialsAuth(httpx.Auth):
    """``httpx.Auth`` that sends ``Authorization: Bearer <token>`` from the client-credentials
    grant, for ``httpx.Client`` and ``httpx.AsyncClient`` alike.

    Give ``token_url``, or ``issuer`` to discover the token endpoint (OIDC Discovery, then
    RFC 8414; the document's ``issuer`` must equal the configured one). Options, all
    keyword-only and checked here (``ValueError``/``TypeError`` say what to fix):

    - ``client_id``, ``client_secret``: the client's credentials.
    - ``scopes``: a space-delimited string or a sequence; ``audience``: sent as
      ``audience`` (Auth0 and similar); ``extra_params``: more form fields, each a string
      or a list of strings sent as a repeated field in order (RFC 8707 ``resource``, whose
      values must be absolute URIs without a fragment).
    - ``auth_method``: ``"client_secret_basic"`` (default; id and secret form-encoded, then
      HTTP Basic, RFC 6749 §2.3.1) or ``"client_secret_post"`` (credentials in the body).
    - ``timeout``: seconds for one exchange with the token endpoint (default 10).
    - ``refresh_skew``: refresh this many seconds before expiry (default 30; at most half
      the token's lifetime).
    - ``cache_dir``: also cache tokens on disk there (0700 directory, 0600 files), so
      restarts and cold starts reuse a token; checked for writability here.
    - ``http_client``: an ``httpx.Client``, an ``httpx.AsyncClient`` or one of each, used
      for token requests (never the client being authenticated); otherwise a short-lived
      client of our own per token request.
    - ``clock``: epoch seconds (default ``time.time``); ``retries`` (default 2) and
      ``retry_backoff`` (default 0.5 s, doubled per retry, jittered) for network errors and
      5xx; ``cooldown``: least seconds between two token drops caused by 401 replies
      (default 10), so a resource server that refuses every token cannot turn each request
      into a token request (``refetch_cooldown`` is its deprecated spelling);
      ``allow_insecure_http``: permit a plain-http token endpoint that is not loopback.
    - ``dpop``: ``True`` (a fresh ES256 key, kept in memory only) or a
      :class:`~resource_guard.dpop.DPoPKey` of yours: sender-constrained tokens (RFC 9449).
      Token requests carry a proof and must get ``token_type: DPoP`` (a Bearer answer is
      refused); API requests carry ``Authorization: DPoP <token>`` and a fresh proof with
      ``ath``. A ``use_dpop_nonce`` answer from the token endpoint (400) or an API (401) is
      retried once with the server's nonce; the latest nonce of each origin is remembered.
      ``cache_dir`` needs a key of yours (``dpop=True`` refuses it: a token is useless
      without its key); the key itself is never written anywhere.

    Failures of the token endpoint raise :class:`~resource_guard.exceptions.TokenRequestError`
    from the request being sent. The secret never appears in logs, messages or ``repr``.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        token_url: str | None = None,
        issuer: str | None = None,
        scopes: str | Sequence[str] | None = None,
        audience: str | None = None,
        extra_params: Mapping[str, str | Sequence[str]] | None = None,
        auth_method: str = "client_secret_basic",
        timeout: float = 10.0,
        refresh_skew: float = 30.0,
        cache_dir: str | os.PathLike[str] | None = None,
        http_client: httpx.Client
        | httpx.AsyncClient
        | Sequence[httpx.Client | httpx.AsyncClient]
        | None = None,
        clock: Callable[[], float] = time.time,
        retries: int = 2,
        retry_backoff: float = 0.5,
        cooldown: float = options.DEFAULT_COOLDOWN,
        allow_insecure_http: bool = False,
        refetch_cooldown: float | None = None,
        dpop: bool | DPoPKey = False,
    ) -> None:
        if refetch_cooldown is not None:
            given: dict[str, float] = {"cooldown": cooldown, "refetch_cooldown": refetch_cooldown}
            options.renamed(given)
            cooldown = given["cooldown"]
        if not isinstance(allow_insecure_http, bool):
            raise TypeError("allow_insecure_http must be a bool")
        if (token_url is None) == (issuer is None):
            raise ValueError("give exactly one of token_url= or issuer= (for discovery)")
        if token_url is not None:
            check_url(token_url, "token_url", allow_insecure_http=allow_insecure_http)
        if issuer is not None:
            check_url(issuer, "issuer", allow_insecure_http=allow_insecure_http)
        if not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        self._dpop = dpop_session(dpop, clock)
        self._issuer = issuer
        self._credentials = Credentials(
            client_id=options.text("client_id", client_id),
            client_secret=options.secret(client_secret),
            scopes=options.scopes(scopes),
            audience=None if audience is None else options.text("audience", audience),
            extra_params=options.extra_params(extra_params),
            auth_method=options.auth_method(auth_method),
        )
        self._refresh_skew = seconds("refresh_skew", refresh_skew, low=0.0, high=86400.0)
        policy = RetryPolicy(
            retries=count("retries", retries, low=0, high=10),
            backoff=seconds("retry_backoff", retry_backoff, low=0.0, high=60.0),
        )
        self._cooldown = seconds("cooldown", cooldown, low=0.0, high=86400.0)
        sync_http, async_http = options.http_clients(http_client)
        self._clock = clock
        self._fetcher = TokenFetcher(
            token_url=token_url,
            issuer=issuer,
            credentials=self._credentials,
            timeout=seconds("timeout", timeout, low=0.001, high=300.0),
            refresh_skew=self._refresh_skew,
            policy=policy,
            sync_http=sync_http,
            async_http=async_http,
            allow_insecure_http=allow_insecure_http,
            clock=clock,
            dpop=self._dpop,
        )

        self._disk: DiskCache | None = None
        if cache_dir is not None:
            if not isinstance(cache_dir, str | os.PathLike):
                raise TypeError("cache_dir must be a path (str or os.PathLike)")
            if not os.fspath(cache_dir).strip():
                raise ValueError("cache_dir must name a directory, got an empty path")
            if self._dpop is not None and self._dpop.generated:
                raise ValueError(
                    "cache_dir with dpop=True: a DPoP-bound token is useless without its key, "
                    "and a generated key lives in this process only; pass "
                    "dpop=DPoPKey.load(path) to reuse cached tokens, or drop cache_dir"
                )
            key = cache_key(
                source="token_url" if issuer is None else "issuer",
                url=token_url or issuer or "",
                client_id=self._credentials.client_id,
                scopes=self._credentials.scopes,
                audience=self._credentials.audience,
                extra_params=self._credentials.extra_params,
                dpop_jkt=None if self._dpop is None else self._dpop.key.thumbprint,
            )
            self._disk = DiskCache.open(cache_dir, key)

        self._token: Token | None = None
        self._generation = 0
        self._failure: TokenRequestError | None = None
        self._hold_until = 0.0
        self._last_drop = float("-inf")
        self._lock = threading.Lock()
        self._loop_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._loop_locks_guard = threading.Lock()

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ClientCredentialsAuth:
        """Build from ``RESOURCE_GUARD_*`` variables; keyword ``overrides`` win.

        Reads ``RESOURCE_GUARD_CLIENT_ID``, ``_CLIENT_SECRET``, ``_TOKEN_URL`` (or
        ``_ISSUER``), ``_CLIENT_AUDIENCE``, ``_SCOPES`` (space or comma separated),
        ``_TOKEN_CACHE_DIR`` and ``_CLIENT_AUTH_METHOD``. Never ``RESOURCE_GUARD_AUDIENCE``:
        that is the protected service's own audience, not the one of the services it calls.
        Missing required variables raise ``ValueError`` naming them.
        """
        options.renamed(overrides)
        env = os.environ if environ is None else environ
        return cls(**options.from_environ(env, overrides))

    @property
    def token_url(self) -> str | None:
        """The token endpoint: configured, or discovered (None until the first request)."""
        return self._fetcher.token_url

    @property
    def client_id(self) -> str:
        """The OAuth client id."""
        return self._credentials.client_id

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes asked for, in order."""
        return self._credentials.scopes

    @property
    def audience(self) -> str | None:
        """The ``audience`` parameter, if any."""
        return self._credentials.audience

    @property
    def dpop_key(self) -> DPoPKey | None:
        """The key DPoP proofs are signed with (None without DPoP)."""
        return None if self._dpop is None else self._dpop.key

    def __repr__(self) -> str:
        credentials = self._credentials
        endpoint = (
            f"token_url={self._fetcher.token_url!r}"
            if self._issuer is None
            else f"issuer={self._issuer!r}"
        )
        return (
            f"ClientCredentialsAuth({endpoint}, client_id={credentials.client_id!r}, "
            f"scopes={credentials.scopes!r}, audience={credentials.audience!r}, "
            f"auth_method={credentials.auth_method!r}"
            + ("" if self._dpop is None else f", dpop={self._dpop.key!r}")
            + ")"
        )

    # -- httpx.Auth -------------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._sync_token()
        nonce = self._authorize(request, token)
        response = yield request
        if self._wants_nonce(request, response, nonce):
            self._authorize(request, token)
            response = yield request
            if self._still_wants_nonce(response):
                return
        if response.status_code != 401 or not self._sync_reject(token):
            return
        if _replayable(request):
            self._authorize(request, self._sync_token())
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._async_token()
        nonce = self._authorize(request, token)
        response = yield request
        if self._wants_nonce(request, response, nonce):
            self._authorize(request, token)
            response = yield request
            if self._still_wants_nonce(response):
                return
        if response.status_code != 401 or not await self._async_reject(token):
            return
        if _replayable(request):
            self._authorize(request, await self._async_token())
            yield request

    def get_token(self) -> str:
        """The current access token (fetched if needed), for use outside httpx."""
        return self._sync_token().access_token

    async def aget_token(self) -> str:
        """Async twin of :meth:`get_token`."""
        return (await self._async_token()).access_token

    def _authorize(self, request: httpx.Request, token: Token) -> str | None:
        """Put the token (and with DPoP a fresh proof) on ``request``; return the DPoP
        nonce the proof carries."""
        if self._dpop is None:
            request.headers["Authorization"] = f"Bearer {token.access_token}"
            return None
        return self._dpop.authorize(request, token.access_token)

    def _wants_nonce(
        self, request: httpx.Request, response: httpx.Response, nonce: str | None
    ) -> bool:
        """With DPoP: remember the reply's nonce; True when the resource server refused the
        proof for want of a nonce it just sent and the request can be sent again."""
        if self._dpop is None or not self._dpop.resource_wants_nonce(response, nonce):
            return False
        if not _replayable(request):
            return False
        logger.debug("the resource server asked for a DPoP nonce; retrying with it")
        return True

    def _still_wants_nonce(self, response: httpx.Response) -> bool:
        """After a retry with a nonce: True when the server asks for a nonce again (the
        token is not at fault, so it is kept); the reply's nonce is remembered."""
        session = self._dpop
        assert session is not None  # only called after a nonce retry
        session.remember(response.request.url, response.headers)
        return session.is_nonce_challenge(response)

    # -- cache decisions (callers hold the sync lock or their loop's lock) ------------------

    def _fresh(self, now: float) -> Token | None:
        """The cached token if it needs no refresh now (or a refresh just failed)."""
        token = self._token
        if token is None:
            return None
        if now < token.refresh_at or (now < token.expires_at and now < self._hold_until):
            return token
        return None

    def _reuse(self, generation: int) -> Token | None:
        """After waiting for the lock: the token another caller got, or the failure it met."""
        token = self._fresh(self._clock())
        if token is None and generation != self._generation and self._failure is not None:
            raise _copy(self._failure)
        return token

    def _adopt(self, stored: Token | None) -> Token | None:
        if stored is None or not self._clock() < stored.refresh_at:
            return None
        logger.debug("using the access token cached on disk")
        self._token = stored
        return stored

    def _keep(self, token: Token) -> None:
        self._generation += 1
        self._failure = None
        self._hold_until = 0.0
        self._token = token

    def _fall_back(self, error: TokenRequestError) -> Token:
        """Serve the current token while it is valid, else raise ``error``."""
        now = self._clock()
        self._generation += 1
        self._failure = error
        token = self._token
        if token is None or now >= token.expires_at:
            raise error
        self._hold_until = now + STALE_HOLD
        logger.warning(
            "could not refresh the access token (%s); using the current one, which expires in "
            "%.0f s",
            error.message,
            token.expires_at - now,
        )
        return token

    def _drop(self, token: Token) -> bool | None:
        """React to a 401 for ``token``: True to retry, False not to, None after dropping it."""
        current = self._token
        if current is None or current.access_token != token.access_token:
            return True
        now = self._clock()
        if now - self._last_drop < self._cooldown:
            logger.debug(
                "the resource server refused the access token again within %.0f s; "
                "not fetching another one yet",
                self._cooldown,
            )
            return False
        self._last_drop = now
        self._token = None
        logger.info("the resource server refused the access token; fetching a new one")
        return None

    # -- sync -------------------------------------------------------------------------------

    def _sync_token(self) -> Token:
        token = self._fresh(self._clock())
        if token is not None:
            return token
        generation = self._generation
        with self._lock:
            token = self._reuse(generation)
            if token is not None:
                return token
            if self._disk is not None:
                token = self._adopt(self._disk.load(skew=self._refresh_skew))
                if token is not None:
                    return token
            try:
                token = self._fetcher.fetch_sync()
            except TokenRequestError as error:
                return self._fall_back(error)
            self._keep(token)
            if self._disk is not None:
                self._disk.store(token)
            return token

    def _sync_reject(self, token: Token) -> bool:
        with self._lock:
            decision = self._drop(token)
            if decision is None and self._disk is not None:
                self._disk.discard(token.access_token)
        return decision is not False

    # -- async ------------------------------------------------------------------------------

    def _loop_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._loop_locks_guard:
            lock = self._loop_locks.get(loop)
            if lock is None:
                lock = self._loop_locks[loop] = asyncio.Lock()
            return lock

    async def _async_token(self) -> Token:
        token = self._fresh(self._clock())
        if token is not None:
            return token
        generation = self._generation
        async with self._loop_lock():
            token = self._reuse(generation)
            if token is not None:
                return token
            if self._disk is not None:
                stored = await asyncio.to_thread(self._disk.load, skew=self._refresh_skew)
                token = self._adopt(stored)
                if token is not None:
                    return token
            try:
                token = await self._fetcher.fetch_async()
            except TokenRequestError as error:
                return self._fall_back(error)
            self._keep(token)
            if self._disk is not None:
                await asyncio.to_thread(self._disk.store, token)
            return token

    async def _async_reject(self, token: Token) -> bool:
        async with self._loop_lock():
            decision = self._drop(token)
            if decision is None and self._disk is not None:
                await asyncio.to_thread(self._disk.discard, token.access_token)
        return decision is not False
