"""The remote key source: discovery, JWKS fetching, refresh, cooldown and stale-if-error.

Rules (docs/keys.md explains them for users):

* Keys are fetched eagerly by :meth:`RemoteKeySource.start` and refreshed before they age
  out, by a background task and on access, so no request waits on the IdP while usable
  keys are cached.
* A failed fetch keeps the last good keys for ``max_stale`` seconds past their age. The
  *background* refresh of a failing IdP backs off (jittered, exponential, up to 5 min).
* Requests that wait for keys (none usable, or a well-formed token naming an unknown
  ``kid``) may cause one fetch per ``cooldown`` (every attempt counts), backoff or not, so
  service returns within one cooldown of the IdP's recovery. Concurrent callers await the
  one fetch in flight; a caller's cancellation never cancels it. Inside the cooldown they
  are refused at once. A token without ``kid`` never causes a fetch while keys are usable.
* A successful refresh that drops a key revokes it.
* A failed fetch is a *misconfiguration* when it will not fix itself (the issuer answers
  but serves no discovery document, or one naming another issuer, a JWKS URL that answers
  404, a JWKS without a usable key while none was ever had), else an *outage* (retried).
  The log line says which; ``start(fail_fast=True)`` raises on a misconfiguration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from ._discovery import DiscoveryError, Metadata, discover
from ._fetch import (
    MAX_DOCUMENT_BYTES,
    Document,
    FetchError,
    Reply,
    backoff_delay,
    bare_request,
    describe_error,
    fetch_json,
    send_async,
)
from ._keyset import KeySet, VerificationKey
from .exceptions import KeysUnavailableError, UnknownKeyError

logger = logging.getLogger("resource_guard.jwks")

REFRESH_AHEAD = 0.8
"""Refresh once keys reach this fraction of their time to live."""
MIN_TTL = 60.0
MAX_BACKOFF = 300.0

FailureKind = Literal["misconfiguration", "outage"]
MISCONFIGURATION_HINT = "misconfiguration: this will not fix itself, check issuer and jwks_uri"
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


def _final(status: int | None) -> bool:
    """True for an HTTP answer that retrying will not change (3xx, 4xx but 408/425/429,
    or a 200 whose body is not what we need); None (no answer) and 5xx are outages."""
    return status is not None and status < 500 and status not in _TRANSIENT_STATUSES


class _FetchFailed(Exception):
    """One failed fetch: why, and whether it is a misconfiguration."""

    def __init__(self, reason: str, kind: FailureKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True, slots=True)
class KeyFetch:
    """One JWKS fetch attempt (discovery included), for metrics and alerts.

    Handed to the listeners of :meth:`RemoteKeySource.add_listener` when it ends.
    """

    ok: bool
    """New keys were installed."""
    keys: int
    """How many keys are cached after it (the previous ones when it failed)."""
    duration: float
    """Seconds it took (monotonic)."""
    error: str | None = None
    """Why it failed (the same text as ``KeySourceStatus.last_error``)."""
    failure: FailureKind | None = None
    """``misconfiguration`` (will not fix itself) or ``outage`` (retried); None when ok."""
    usable: bool = False
    """Cached keys may verify tokens after it (stale keys included)."""


KeyFetchListener = Callable[[KeyFetch], object]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class KeySourceStatus:
    """A snapshot of a key source, for health checks, readiness and metrics.

    Times are seconds of the verifier's clock (epoch seconds by default); ``None`` where
    there is nothing to report yet. Every field is a plain value (``dataclasses.asdict``
    gives a JSON-ready dict); nothing in it is a secret.
    """

    keys: tuple[tuple[str | None, str], ...]
    """``(kid, alg)`` of each cached key (its ``kty`` when the JWK names no ``alg``)."""
    usable: bool
    """Cached keys may verify tokens now (fresh, or stale while fetching fails)."""
    stale: bool
    """The keys are past their age and serve only because refreshing them fails."""
    fetched_at: float | None
    """When the cached keys were fetched; None before the first successful fetch."""
    age: float | None
    """Seconds since then."""
    usable_until: float | None
    """Until when the cached keys may serve without a successful fetch."""
    next_refresh: float | None
    """When the background refresh tries next (after a failure: when its backoff ends)."""
    last_error: str | None
    """Why the last fetch failed; None after a success."""
    fetch_count: int
    """Fetches attempted so far (discovery included in the one they belong to)."""
    last_failure: FailureKind | None = None
    """What the last failure was: ``misconfiguration`` (will not fix itself: check
    ``issuer`` and ``jwks_uri``) or ``outage`` (retried); None after a success."""

    @property
    def fresh(self) -> bool:
        """Keys are loaded and within their age (usable and not stale)."""
        return self.usable and not self.stale


class RemoteKeySource:
    """Verification keys of one issuer, fetched over HTTP and kept fresh."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_uri: str | None,
        refresh_interval: float,
        cooldown: float,
        max_stale: float,
        timeout: float,
        http_client: httpx.AsyncClient | None,
        allow_insecure_http: bool,
        clock: Callable[[], float],
        max_bytes: int = MAX_DOCUMENT_BYTES,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.issuer = issuer
        self._jwks_uri = jwks_uri
        self._metadata: Metadata | None = None
        self._refresh_interval = refresh_interval
        self._cooldown = cooldown
        self._max_stale = max_stale
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._allow_insecure_http = allow_insecure_http
        self._clock = clock
        self._jitter = jitter
        self._given_client = http_client
        self._own_client: httpx.AsyncClient | None = None

        self.keys: KeySet | None = None
        self.refresh_due = -math.inf
        self._stale_until = -math.inf
        self.usable_until = -math.inf
        """Until when the cached keys may verify tokens without waiting for a fetch.

        That is their age; past it they serve on (up to ``max_stale``) only while fetching
        fails. Keys nobody refreshed (no background task, a process that slept) are fetched
        again first, so a key the IdP dropped meanwhile is not trusted. A plain attribute
        (set on every fetch outcome): every cache hit reads it.
        """
        self._fetched_at = -math.inf
        self._fresh_until = -math.inf
        self._last_attempt = -math.inf
        self._retry_at = -math.inf
        self._failures = 0
        self.last_error: str | None = None
        self.last_failure: FailureKind | None = None
        self.fetch_count = 0
        self._listeners: list[KeyFetchListener] = []

        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: asyncio.Task[bool] | None = None
        self._refresher: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, fail_fast: bool = False) -> None:
        """Fetch keys now (unless usable ones are cached) and keep them fresh in the background.

        With ``fail_fast``, a start without usable keys because of a misconfiguration
        raises :class:`KeysUnavailableError` (``permanent=True``); an outage never does.
        """
        self._bind_loop()
        if self._clock() > self.usable_until:
            await self._fetch_shared()
            unusable = self.keys is None or self._clock() > self.usable_until
            if fail_fast and unusable and self.last_failure == "misconfiguration":
                raise self._misconfigured()
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(
                self._refresh_forever(), name="resource-guard-jwks-refresh"
            )

    async def aclose(self) -> None:
        """Stop background work and close the HTTP client we own. Cached keys are kept."""
        tasks = [task for task in (self._refresher, self._inflight) if task is not None]
        self._refresher = self._inflight = None
        for task in tasks:
            task.cancel()
        if pending := [task for task in tasks if not task.done()]:
            await asyncio.wait(pending)  # unlike `await task`, never swallows our own cancel
        if self._own_client is not None:
            client, self._own_client = self._own_client, None
            await client.aclose()

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Tasks and connections belong to one event loop; a new loop starts afresh.
            self._loop = loop
            self._inflight = self._refresher = None
            self._own_client = None

    def _client(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        if self._own_client is None:
            # Fetches are minutes apart: keep no idle connection, so none outlives a fetch
            # (or the event loop it belongs to, when the next call runs on another loop).
            self._own_client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        return self._own_client

    # -- status ------------------------------------------------------------------------

    def status(self) -> KeySourceStatus:
        """A consistent snapshot of the cached keys and of fetching (no I/O, no waiting)."""
        now = self._clock()
        keys = self.keys
        usable = keys is not None and now <= self.usable_until
        fetched_at = _finite(self._fetched_at)
        next_refresh = max(self.refresh_due, self._retry_at)
        return KeySourceStatus(
            keys=tuple((key.kid, key.alg or key.kty) for key in keys.keys) if keys else (),
            usable=usable,
            stale=usable and now > self._fresh_until,
            fetched_at=fetched_at,
            age=None if fetched_at is None else max(0.0, now - fetched_at),
            usable_until=_finite(self.usable_until),
            next_refresh=_finite(next_refresh),
            last_error=self.last_error,
            fetch_count=self.fetch_count,
            last_failure=self.last_failure,
        )

    def add_listener(self, listener: KeyFetchListener) -> None:
        """Call ``listener`` with a :class:`KeyFetch` after every fetch attempt (on the
        event loop; quick, please). What it raises is logged and ignored."""
        if not callable(listener):
            raise TypeError("listener must be callable: KeyFetch -> None")
        self._listeners.append(listener)

    def remove_listener(self, listener: KeyFetchListener) -> None:
        """Stop calling ``listener`` (nothing happens when it was not added)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- key lookup --------------------------------------------------------------------

    async def get_key(self, kid: str | None, alg: str) -> VerificationKey:
        """The key for this ``kid``/``alg`` of a well-formed token with an allowed ``alg``.

        Fetches (or joins the fetch in flight) when no usable keys are cached, or for an
        unknown ``kid``, at most once per cooldown. Raises UnknownKeyError, or
        KeysUnavailableError when no usable key set can be had.
        """
        key = self.current_key(kid, alg)
        if key is not None:
            return key
        self._bind_loop()
        now = self._clock()
        keys = self.keys
        if keys is not None and now <= self.usable_until:
            try:
                return keys.select(kid, alg)  # raises UnknownKeyError: current_key found none
            except UnknownKeyError:
                if kid is None or not self._may_fetch(now, self._last_attempt):
                    raise  # no kid to look for, or inside the cooldown: refuse at once
        elif not self._may_fetch(now, self._last_attempt if self._failures else -math.inf):
            raise self._unavailable(now)  # a fetch failed inside the cooldown
        await self._fetch_shared()
        keys = self.keys
        if keys is None or self._clock() > self.usable_until:
            raise self._unavailable(self._clock())
        return keys.select(kid, alg)

    def current_key(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key when usable cached keys hold it, without waiting (the common case);
        None when :meth:`get_key` must decide (no usable keys, an unknown kid)."""
        now = self._clock()
        keys = self.keys
        if keys is None or now > self.usable_until:
            return None
        try:
            key = keys.select(kid, alg)
        except UnknownKeyError:
            return None
        if now >= self.refresh_due:
            self.refresh_if_due(now)
        return key

    def refresh_if_due(self, now: float) -> None:
        """Start a background refresh when keys near their age (after a failure, when the
        backoff allows); never waits for it."""
        if now >= self.refresh_due and self._inflight is None and now >= self._retry_at:
            self._begin_fetch()

    def _may_fetch(self, now: float, since: float) -> bool:
        """For waiting requests: join the fetch in flight, or start one a cooldown after
        ``since`` (the last attempt that counts). The backoff does not apply here."""
        return self._inflight is not None or now >= since + self._cooldown

    def _unavailable(self, now: float) -> KeysUnavailableError:
        # Retry-After: when a request may fetch again (a cooldown after the failed attempt).
        wait = self._last_attempt + self._cooldown - now if self._failures else 0.0
        retry_after = float(max(1, math.ceil(wait)))
        reason = self.last_error or "no keys fetched yet"
        return KeysUnavailableError(
            f"no usable verification keys: {reason}", retry_after=retry_after
        )

    # -- fetching ----------------------------------------------------------------------

    def _begin_fetch(self) -> asyncio.Task[bool]:
        self._bind_loop()
        if self._inflight is None:
            self._last_attempt = self._clock()
            task = asyncio.get_running_loop().create_task(
                self._fetch_and_install(), name="resource-guard-jwks-fetch"
            )
            task.add_done_callback(self._forget_inflight)
            self._inflight = task
        return self._inflight

    def _forget_inflight(self, task: asyncio.Task[bool]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # mark retrieved; _fetch_and_install never raises on purpose

    async def _fetch_shared(self) -> bool:
        """Start (or join) the one fetch in flight and wait for it without owning it."""
        return await asyncio.shield(self._begin_fetch())

    async def refresh(self) -> bool:
        """Fetch the JWKS now (joining a fetch in flight); True when new keys were installed."""
        return await self._fetch_shared()

    async def wait_until_idle(self) -> None:
        """Wait for the fetch in flight, if any, to end (without cancelling it)."""
        task = self._inflight
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            await asyncio.wait({task})

    def _misconfigured(self) -> KeysUnavailableError:
        return KeysUnavailableError(
            f"no usable verification keys for issuer {self.issuer!r:.200}: "
            f"{self.last_error}; this is a {MISCONFIGURATION_HINT}",
            retry_after=max(self._cooldown, 1.0),
            permanent=True,
        )

    async def _fetch_and_install(self) -> bool:
        self.fetch_count += 1
        started = time.perf_counter()
        try:
            keys, document = await self._fetch_keys()
        except _FetchFailed as exc:
            self._record_failure(exc.reason, exc.kind)
        except Exception as exc:  # a bug must not kill refreshing; its traceback is for DEBUG
            logger.debug("unexpected error while fetching the JWKS", exc_info=True)
            self._record_failure("unexpected " + describe_error(exc), "outage")
        else:
            self._install(keys, document)
        ok = self.last_error is None
        if self._listeners:
            self._tell(ok, time.perf_counter() - started)
        return ok

    async def _fetch_keys(self) -> tuple[KeySet, Document]:
        """The JWKS's usable keys and the document; else _FetchFailed, classified."""
        jwks_uri = await self._resolve_jwks_uri()
        try:
            document = await fetch_json(
                self._client(), jwks_uri, timeout=self._timeout, max_bytes=self._max_bytes
            )
        except FetchError as exc:
            final = _final(exc.status)
            raise _FetchFailed(str(exc), "misconfiguration" if final else "outage") from None
        try:
            keys = KeySet.from_jwks(document.body, previous=self.keys)
            if not keys:
                raise ValueError("the JWKS holds no usable signing key")
        except ValueError as exc:
            # Never a usable key: the JWKS is not the issuer's. Had before: an IdP hiccup.
            kind: FailureKind = "misconfiguration" if self.keys is None else "outage"
            raise _FetchFailed(str(exc), kind) from None
        return keys, document

    def _tell(self, ok: bool, duration: float) -> None:
        status = self.status()
        event = KeyFetch(
            ok=ok,
            keys=len(status.keys),
            duration=duration,
            error=self.last_error,
            failure=self.last_failure,
            usable=status.usable,
        )
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception as exc:
                logger.error("a key-fetch listener failed (%s)", type(exc).__name__, exc_info=exc)

    def _install(self, keys: KeySet, document: Document) -> None:
        now = self._clock()
        previous, self.keys = self.keys, keys
        if previous is not None:
            for key in previous.revoke_missing_from(keys):
                logger.info("key kid=%.64r is no longer published: revoked", key.kid)
        ttl = self._ttl(document.max_age)
        self._fetched_at = now
        self._fresh_until = now + ttl
        self.refresh_due = now + ttl * REFRESH_AHEAD
        self._stale_until = now + ttl + self._max_stale
        self.usable_until = now + ttl
        self._failures = 0
        self._retry_at = -math.inf
        self.last_error = None
        self.last_failure = None
        logger.debug("installed %d JWKS keys, fresh for %.0f s", len(keys), ttl)

    def _ttl(self, max_age: float | None) -> float:
        if max_age is None:
            return self._refresh_interval
        floor = min(max(self._cooldown, MIN_TTL), self._refresh_interval)
        return min(max(max_age, floor), self._refresh_interval)

    def _record_failure(self, reason: str, kind: FailureKind) -> None:
        now = self._clock()
        self._failures += 1
        self.usable_until = self._stale_until
        delay = backoff_delay(
            self._failures, base=max(self._cooldown, 1.0), cap=MAX_BACKOFF, jitter=self._jitter()
        )
        self._retry_at = now + delay
        self.last_error = reason
        self.last_failure = kind
        which = MISCONFIGURATION_HINT if kind == "misconfiguration" else "outage: retrying"
        if self.keys is not None and now <= self.usable_until:
            logger.warning(
                "JWKS fetch failed (%s); serving keys fetched %.0f s ago for up to %.0f s more; %s",
                reason,
                now - self._fetched_at,
                self.usable_until - now,
                which,
            )
        else:
            logger.error(
                "JWKS fetch failed (%s); no usable keys: requests get 503; %s", reason, which
            )

    async def _refresh_forever(self) -> None:
        while True:
            now = self._clock()
            due = max(self.refresh_due, self._retry_at)
            await asyncio.sleep(min(max(due - now, 1.0), self._refresh_interval))
            if self._clock() >= max(self.refresh_due, self._retry_at):
                await self._fetch_shared()

    # -- discovery ---------------------------------------------------------------------

    async def endpoint(self, name: str) -> str | None:
        """The discovered URL of ``name`` (``token_endpoint``, ``introspection_endpoint``...)
        checked like a configured URL; None when discovery or the check fails."""
        found = await self._discovered()
        if found is None:
            return None
        try:
            return found.endpoint(name, allow_insecure_http=self._allow_insecure_http)
        except FetchError:
            return None

    async def _discovered(self) -> Metadata | None:
        if self._metadata is None:
            with contextlib.suppress(FetchError, ValueError):
                self._metadata = await self._discover()
        return self._metadata

    async def _resolve_jwks_uri(self) -> str:
        """The JWKS URL (discovered once); else _FetchFailed: a misconfiguration when every
        location answered for good (404, another issuer, no ``jwks_uri``), else an outage."""
        if self._jwks_uri is None:
            statuses: list[int | None] = []
            try:
                metadata = await self._discover(statuses)
                jwks_uri = metadata.endpoint(
                    "jwks_uri", allow_insecure_http=self._allow_insecure_http
                )
            except DiscoveryError as exc:
                final = all(_final(status) for status in statuses)
                raise _FetchFailed(str(exc), "misconfiguration" if final else "outage") from None
            self._metadata, self._jwks_uri = metadata, jwks_uri
        return self._jwks_uri

    async def _discover(self, statuses: list[int | None] | None = None) -> Metadata:
        """OIDC discovery, then RFC 8414; the document must name our issuer exactly.
        ``statuses`` collects each location's HTTP status (None: no answer)."""
        seen: list[int | None] = [] if statuses is None else statuses

        async def get(url: str) -> Reply:
            try:
                reply = await self._get(url)
            except FetchError:
                seen.append(None)
                raise
            seen.append(reply.status_code)
            return reply

        return await discover(self.issuer, get)

    async def _get(self, url: str) -> Reply:
        request = bare_request("GET", url, timeout=self._timeout)
        return await send_async(
            self._client(), request, timeout=self._timeout, max_bytes=self._max_bytes
        )
