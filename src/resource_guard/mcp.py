"""Protect a Model Context Protocol server (the official ``mcp`` SDK, 2.x) with any verifier.

```python
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from resource_guard import TokenVerifier
from resource_guard.mcp import MCPApp, MCPTokenVerifier

verifier = TokenVerifier("https://idp.example.com", "https://mcp.example.com/mcp")
tokens = MCPTokenVerifier(verifier, resource="https://mcp.example.com/mcp")
server = MCPServer(
    "orders",
    token_verifier=tokens,
    auth=AuthSettings(
        issuer_url="https://idp.example.com",
        resource_server_url="https://mcp.example.com/mcp",
        required_scopes=["orders:read"],
        validate_token_resource=True,
    ),
)
app = MCPApp(server.streamable_http_app(), tokens)  # serve with uvicorn
```

The SDK answers a refused token with 401 (its challenge names the RFC 9728 metadata it
serves at ``resource_server_url``'s well-known URL) and a token without
``required_scopes`` with 403. :class:`MCPApp` starts and closes the verifier with the
server's lifespan and answers 503 with ``Retry-After`` when verification is unavailable
(the SDK alone would answer 500). This is the only module that imports ``mcp``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

try:
    from mcp.server.auth.provider import AccessToken as MCPAccessToken
except ImportError as exc:
    raise ImportError(
        "resource_guard.mcp needs the MCP SDK: pip install 'resource-guard[mcp]'"
    ) from exc

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._access import send_reply
from ._bearer_reply import BearerReplies
from ._fetch import check_url
from ._models import AccessToken
from ._protocol import Lifecycle, Verifier
from .exceptions import InvalidTokenError, VerificationUnavailableError

__all__ = ["NO_CLIENT_ID", "MCPApp", "MCPTokenVerifier"]

logger = logging.getLogger("resource_guard.mcp")

NO_CLIENT_ID = ""
"""The SDK's ``client_id`` of a token that names no client (no ``client_id``, ``azp``,
``cid`` or ``appid`` claim): an empty string, which no real client id equals, so code that
trusts a client id can never mistake a token for a client it does not name (``sub`` in its
place could: a user's ``sub`` may spell any client's id)."""

_SHUTDOWN_ENDS = frozenset({"lifespan.shutdown.complete", "lifespan.shutdown.failed"})


class MCPTokenVerifier(Lifecycle):
    """Any resource-guard verifier (``TokenVerifier``, ``TrustedIssuers``, an
    introspection verifier...) as the MCP SDK's ``TokenVerifier``.

    ``verify_token`` answers the SDK's ``AccessToken`` for an accepted token and None for
    a refused one (the SDK then answers 401):

    - ``resource``: the audience that matched: ``resource`` when given and the token
      names it, else the first of the verifier's ``audiences`` the token names, else the
      first audience of the token (RFC 8707 resource indicator; the SDK compares it with
      ``resource_server_url`` when ``validate_token_resource=True``);
    - ``expires_at``: ``exp`` in epoch seconds (int); ``scopes``: sorted;
      ``subject``: ``sub``; ``claims``: every claim (a copy);
    - ``client_id``: the token's client, else :data:`NO_CLIENT_ID` (an empty string);
    - ``token``: the token itself, which the SDK's ``AccessToken`` requires.

    A verifier that cannot decide now (:class:`~resource_guard.VerificationUnavailableError`:
    keys or introspection unavailable) raises; :class:`MCPApp` answers 503 with
    ``Retry-After`` (the SDK alone answers 500). It never becomes a 401, which would send
    clients to fetch new tokens during an identity-provider outage.

    A token verified before is answered by the verifier's ``cached`` without a
    coroutine when it has one; else ``await verify(token)`` decides.
    """

    def __init__(self, verifier: Verifier, *, resource: str | None = None) -> None:
        if not callable(getattr(verifier, "verify", None)):
            raise TypeError("verifier must be a resource-guard verifier (with async verify())")
        if resource is not None:
            check_url(resource, "resource", allow_insecure_http=True)
        self.verifier = verifier
        self.resource = resource
        """The resource identifier (the MCP server's URL) preferred as ``resource``."""
        cached = getattr(verifier, "cached", None)
        self._cached: Callable[[str], AccessToken | None] | None = (
            cached if callable(cached) and not inspect.iscoroutinefunction(cached) else None
        )
        audiences = getattr(verifier, "audiences", None)
        self._audiences: tuple[str, ...] = (
            tuple(a for a in audiences if isinstance(a, str))
            if isinstance(audiences, tuple | list | frozenset | set)
            else ()
        )

    async def verify_token(self, token: str) -> MCPAccessToken | None:
        """The SDK's AccessToken for a valid ``token``, None for a refused one."""
        verified = self._lookup(token)
        if verified is None:
            try:
                verified = await self.verifier.verify(token)
            except InvalidTokenError as exc:
                logger.info("token refused (%s, kid=%r)", exc.code, exc.kid)
                return None
        return self.to_mcp(verified, token)

    def _lookup(self, token: str) -> AccessToken | None:
        cached = self._cached
        if cached is None:
            return None
        try:
            found = cached(token)
        except Exception as exc:  # a verifier's bug: verify() decides instead
            logger.error("the verifier's cached() failed (%s)", type(exc).__name__, exc_info=exc)
            return None
        return found if isinstance(found, AccessToken) else None

    def matched_resource(self, token: AccessToken) -> str | None:
        """The ``resource`` of the SDK's AccessToken (see the class docstring)."""
        named = token.audience
        if self.resource is not None and self.resource in named:
            return self.resource
        for audience in self._audiences:
            if audience in named:
                return audience
        return named[0] if named else None

    def to_mcp(self, token: AccessToken, raw: str) -> MCPAccessToken:
        """The SDK's AccessToken for a verified ``token`` whose compact form is ``raw``."""
        return MCPAccessToken(
            token=raw,
            client_id=token.client_id or NO_CLIENT_ID,
            scopes=sorted(token.scopes),
            expires_at=int(token.expires_at.timestamp()),
            resource=self.matched_resource(token),
            subject=token.subject,
            claims=dict(token.claims),
        )

    async def start(self) -> None:
        """Start the verifier (eager key fetch)."""
        await self.verifier.start()

    async def aclose(self) -> None:
        """Close the verifier."""
        await self.verifier.aclose()


class MCPApp:
    """The SDK's ASGI app (``server.streamable_http_app()``) with the verifier's life and
    outages handled: the verifier starts before the app's start-up and closes after its
    shutdown; a request whose token cannot be verified now gets 503 with
    ``Retry-After`` instead of the SDK's 500. Everything else passes through unchanged.
    """

    def __init__(self, app: ASGIApp, token_verifier: MCPTokenVerifier) -> None:
        if not callable(app):
            raise TypeError("app must be an ASGI app, e.g. server.streamable_http_app()")
        if not isinstance(token_verifier, MCPTokenVerifier):
            raise TypeError("token_verifier must be the MCPTokenVerifier the server uses")
        self.app = app
        self.token_verifier = token_verifier
        self._replies = BearerReplies("mcp")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []  # a 500 reply, until we know what caused it
        replied = False  # whether a message went out

        async def hold(message: Message) -> None:
            nonlocal replied
            if held or (message["type"] == "http.response.start" and message["status"] == 500):
                held.append(message)
            else:
                replied = True
                await send(message)

        try:
            await self.app(scope, receive, hold)
        except VerificationUnavailableError as exc:
            if replied:
                raise  # a reply already went out: nothing to replace
            logger.warning("token verification unavailable (%s); answering 503", exc.code)
            await send_reply(scope, receive, send, self._replies.keys_unavailable(exc.retry_after))
            return
        except BaseException:
            await _flush(held, send)
            raise
        await _flush(held, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        verifier = self.token_verifier

        async def receive_lifespan() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await verifier.start()  # a failure fails the start-up (the app reports it)
            return message

        async def send_lifespan(message: Message) -> None:
            if message["type"] in _SHUTDOWN_ENDS:
                await verifier.aclose()
            await send(message)

        await self.app(scope, receive_lifespan, send_lifespan)


async def _flush(held: list[Message], send: Send) -> None:
    for message in held:
        await send(message)
