"""The one contract every verifier kind meets, and that the middleware, the route checks
and the framework adapters accept: ``TokenVerifier`` today, more kinds to come."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from ._models import AccessToken

__all__ = ["Lifecycle", "Verifier"]


class Verifier(Protocol):
    """A verifier of bearer tokens: what BearerAuthMiddleware, the FastAPI and Starlette
    scope checks and the framework adapters accept (TokenVerifier implements it).

    ``verify`` decides: it returns the AccessToken or raises InvalidTokenError (401) or
    VerificationUnavailableError (503: KeysUnavailableError, IntrospectionUnavailableError).
    ``start`` and ``aclose`` run at lifespan start-up and shutdown.

    ``cached`` is optional at run time (a verifier without it has every request go
    through ``await verify(...)``). When present, the middleware calls it first, with the
    *unchecked* bytes after ``Bearer `` of the one ``Authorization`` header, and uses its
    answer without calling ``verify``. So it must return an AccessToken only for a token
    ``verify`` accepted before and would accept now (same token, time window, key not
    revoked, keys usable), and None whenever the caller must ``await verify(...)``:
    anything unknown, and always while ``verify`` is overridden or wrapped. It must
    never wait (no I/O, no coroutine; it may schedule background work) and never raise.

    ``dpop_policy(token: AccessToken | None = None) -> DPoPPolicy`` is optional too: the
    :class:`~resource_guard.dpop.DPoPPolicy` (RFC 9449) for a verified token (None: the one
    whose challenges a request without a token gets). It must be quick (called on every
    request) and never raise. Without it the middleware applies a default ``"allowed"``
    policy with a replay store of its own, so a ``cnf.jkt``-bound token is still held to
    its key.
    """

    async def verify(self, token: str) -> AccessToken: ...
    def cached(self, token: str | bytes) -> AccessToken | None: ...
    async def start(self) -> None: ...
    async def aclose(self) -> None: ...


class Lifecycle:
    """``async with thing:`` for anything with ``start()`` and ``aclose()``: start on
    entry, close on exit (every verifier kind, the MCP adapter)."""

    __slots__ = ()

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
