"""A DPoP replay store in Redis, shared by every process of a fleet (``resource-guard[redis]``).

Each proof costs one ``SET <namespace><digest> 1 NX PX <ttl>``: Redis creates the key only
if it is absent, atomically, so of any number of processes presenting the same proof
exactly one sees "not seen before". Keys expire on their own when the proof could no
longer be accepted anyway. This is the only module of the package that imports ``redis``.

When Redis does not answer within ``timeout`` (down, slow, unreachable), the store fails
closed: :class:`~resource_guard.ReplayStoreUnavailableError`, which the middleware answers
with 503 and ``Retry-After``. ``fail_open=True`` instead logs a warning and lets the proof
through as "not seen": availability over replay protection, a risk to take knowingly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._options import count, seconds
from ..exceptions import ReplayStoreUnavailableError

__all__ = ["DEFAULT_NAMESPACE", "RedisReplayStore"]

logger = logging.getLogger("resource_guard.dpop")

DEFAULT_NAMESPACE: Final = "resource-guard:dpop:"
"""The prefix of every key the store writes (one Redis can serve several stores)."""
MAX_TTL: Final = 86400.0
"""The longest a proof id is remembered: no proof window is longer than a day."""
WARNING_INTERVAL: Final = 10.0
"""With ``fail_open``, seconds between two warnings while Redis stays unavailable."""
_SCHEMES = ("redis://", "rediss://", "unix://")


class RedisReplayStore:
    """Remembers DPoP proof ids in Redis, so that a proof is accepted once across a fleet.

    Give ``url`` (``redis://host:6379/0``, ``rediss://`` for TLS, ``unix:///path.sock``;
    the store opens a connection pool of at most ``max_connections``, where a burst waits
    for a free connection within ``timeout``, and closes it in :meth:`aclose`) or
    ``client`` (a ``redis.asyncio.Redis`` you own and close yourself).

    - ``namespace``: prefix of the keys (default ``resource-guard:dpop:``); stores with
      different namespaces never see each other's proofs.
    - ``timeout``: seconds one check may take, connecting included (default 0.25).
    - ``fail_open``: when Redis cannot answer, treat the proof as new (logged) instead of
      refusing the request with 503. A replayed proof is then accepted while Redis is
      down: only for deployments that prefer availability to replay protection.
    - ``retry_after``: the ``Retry-After`` seconds of the 503 (default 1).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = 0.25,
        fail_open: bool = False,
        retry_after: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give exactly one of url= (redis://...) or client= (a Redis client)")
        if not isinstance(namespace, str) or not namespace or len(namespace) > 200:
            raise ValueError("namespace must be a non-empty string of at most 200 characters")
        if not isinstance(fail_open, bool):
            raise TypeError("fail_open must be a bool")
        self._timeout = seconds("timeout", timeout, low=0.001, high=60.0)
        self._retry_after = seconds("retry_after", retry_after, low=0.0, high=3600.0)
        self._namespace = namespace
        self._fail_open = fail_open
        self._last_warning = -math.inf
        self._owned = client is None
        if client is not None:
            if not isinstance(client, aioredis.Redis):
                raise TypeError(
                    f"client must be a redis.asyncio.Redis, got {type(client).__name__}"
                )
            self._client = client
            return
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        if not url.startswith(_SCHEMES):
            raise ValueError(
                "url must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)"
            )
        connections = count("max_connections", max_connections, low=1, high=10_000)
        # Never echo the URL: it may hold a password.
        try:
            # Blocking: a burst beyond max_connections waits (within the deadline) for a
            # connection instead of failing at once.
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=connections,
                timeout=self._timeout,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError:
            raise ValueError("url is not a valid Redis URL") from None
        self._client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 1))

    def __repr__(self) -> str:
        return (
            f"RedisReplayStore(namespace={self._namespace!r}, timeout={self._timeout!r}, "
            f"fail_open={self._fail_open!r})"
        )

    def key(self, jti: str) -> str:
        """The Redis key of ``jti``: the namespace and a SHA-256 digest (bounded length, and
        nothing a client chose reaches Redis verbatim)."""
        return self._namespace + hashlib.sha256(jti.encode("utf-8", "replace")).hexdigest()

    async def seen_before(self, jti: str, expires_in: float) -> bool:
        """True when ``jti`` was recorded (by any process) within its window; else record it
        for ``expires_in`` seconds (at least 1 ms) and return False."""
        ttl = MAX_TTL if math.isnan(expires_in) else min(max(expires_in, 0.001), MAX_TTL)
        try:
            async with asyncio.timeout(self._timeout):
                created: Any = await self._client.set(
                    self.key(jti), b"1", nx=True, px=math.ceil(ttl * 1000)
                )
        except (RedisError, OSError, TimeoutError) as exc:
            return self._unavailable(exc)
        return not created

    def _unavailable(self, exc: BaseException) -> bool:
        timed_out = isinstance(exc, TimeoutError | RedisTimeoutError)
        reason = "timed out" if timed_out else type(exc).__name__
        if not self._fail_open:
            raise ReplayStoreUnavailableError(
                f"the DPoP replay store (Redis) could not answer: {reason}",
                retry_after=self._retry_after,
            ) from None
        now = time.monotonic()
        if now - self._last_warning >= WARNING_INTERVAL:
            self._last_warning = now
            logger.warning(
                "the DPoP replay store (Redis) could not answer (%s); fail_open is set, so "
                "proofs are accepted without a replay check",
                reason,
            )
        return False

    async def ping(self) -> bool:
        """True when Redis answers within the timeout (for readiness checks); never raises."""
        try:
            async with asyncio.timeout(self._timeout):
                return bool(await self._client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        """Close the connection pool the store opened (a ``client=`` is left to its owner).
        Safe to call again: verifiers sharing one policy each close it."""
        if self._owned:
            self._owned = False
            await self._client.aclose(close_connection_pool=True)
