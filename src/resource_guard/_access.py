"""The contract between BearerAuthMiddleware and the route checks built on it.

The middleware records its outcome in the ASGI scope under the keys below; the Starlette
and FastAPI ``require_scopes`` read them through :func:`check_access`, raise
:class:`AccessRefused` inside the wrapped app, and the middleware (or :func:`send_reply`)
answers with its own refusal shape. A missing middleware is never "allowed".
"""

from __future__ import annotations

import logging
from time import perf_counter
from types import MappingProxyType

from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from ._bearer_reply import BearerReplies, Reply
from ._decisions import Decision, DecisionHook, clean, decisions_logger, emit
from ._models import AccessToken

__all__ = [
    "ACCESS_TOKEN_KEY",
    "APP_KEY",
    "DENIAL_EXTENSION",
    "MISSING_MIDDLEWARE",
    "OBSERVER_KEY",
    "POLICY_VIOLATION",
    "REPLIES_KEY",
    "AccessRefused",
    "check_access",
    "decision_path",
    "get_access_token",
    "send_reply",
]

ACCESS_TOKEN_KEY = "resource_guard.access_token"
"""Scope key of the verified AccessToken (None on public paths and anonymous requests)."""
REPLIES_KEY = "resource_guard.replies"
"""Scope key of the middleware's BearerReplies; its presence proves the middleware ran."""
APP_KEY = "resource_guard.app"
"""Scope key of the app the middleware wraps: refusals raised inside it reach the middleware."""
OBSERVER_KEY = "resource_guard.observer"
"""Scope key of ``(on_decision hook, perf_counter at arrival)``; set only with a hook."""
DENIAL_EXTENSION = "websocket.http.response"
POLICY_VIOLATION = 1008

MISSING_MIDDLEWARE = (
    "resource-guard: BearerAuthMiddleware did not handle this request, so its token cannot "
    "be checked; add app.add_middleware(BearerAuthMiddleware, verifier=...) to the "
    "application (scope checks never allow a request they cannot check)"
)


class AccessRefused(Exception):
    """A route's scope check refused the request; the middleware sends ``reply``.

    Raised only inside the app the middleware wraps (``scope[APP_KEY]``), so every
    refusal has the middleware's bare ``{"error", "error_description"}`` body.
    """

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.error)
        self.reply = reply


def get_access_token(conn: HTTPConnection) -> AccessToken | None:
    """The verified AccessToken of a request or WebSocket; None when there is none.

    None on public paths and for anonymous requests (``allow_anonymous=True``). Raises
    :class:`RuntimeError` when BearerAuthMiddleware did not handle the request.
    """
    scope = conn.scope
    if REPLIES_KEY not in scope:
        raise RuntimeError(MISSING_MIDDLEWARE)
    token: AccessToken | None = scope.get(ACCESS_TOKEN_KEY)
    return token


def check_access(
    scope: Scope, required: tuple[str, ...], any_of: bool, *, report: bool = True
) -> AccessToken | Reply:
    """The token when it holds the ``required`` scopes, else the refusal to send.

    Shared by the Starlette and FastAPI integrations. A refusal is reported (logged, and
    handed to the middleware's ``on_decision``) unless ``report`` is False (a check whose
    refusal is not sent). Raises :class:`RuntimeError` when the middleware did not run: a
    missing middleware must never mean "allowed".
    """
    replies: BearerReplies | None = scope.get(REPLIES_KEY)
    if replies is None:
        raise RuntimeError(MISSING_MIDDLEWARE)
    token: AccessToken | None = scope.get(ACCESS_TOKEN_KEY)
    if token is None:
        if report:
            _report_route_refusal(scope, "missing_token", 401, None, {})
        return replies.missing
    if required and not token.has_scopes(*required, any_of=any_of):
        if report:  # pragma: no branch - report=False comes with no required scopes
            details = {
                "required": clean(" ".join(required), 200),
                "held": clean(" ".join(sorted(token.scopes)), 200),
                "match": "any" if any_of else "all",
            }
            _report_route_refusal(scope, "insufficient_scope", 403, token, details)
        return replies.insufficient_scope(required, any_of=any_of)
    return token


def decision_path(scope: Scope) -> tuple[str, str]:
    """The method (``WEBSOCKET`` for a handshake) and the path the app routes on (without
    ``root_path``), short and printable, for a Decision."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :] or "/"
    method = scope.get("method", "WEBSOCKET") if scope["type"] == "http" else "WEBSOCKET"
    return clean(method, 20), clean(path, 200)


def _report_route_refusal(
    scope: Scope, reason: str, status: int, token: AccessToken | None, details: dict[str, str]
) -> None:
    observer: tuple[DecisionHook, float] | None = scope.get(OBSERVER_KEY)
    if observer is None and not decisions_logger.isEnabledFor(logging.INFO):
        return
    hook, started = observer if observer is not None else (None, 0.0)
    method, path = decision_path(scope)
    decision = Decision(
        "refused",
        reason,
        status,
        method,
        path,
        decided_by="route",
        client_id=None if token is None else token.client_id,
        subject=None if token is None else token.subject,
        kid=None if token is None else token.key_id,
        details=MappingProxyType(details),
        duration=None if hook is None else perf_counter() - started,
    )
    emit(decision, hook)


async def send_reply(scope: Scope, receive: Receive, send: Send, reply: Reply) -> None:
    """Send ``reply`` on an HTTP request, or refuse a WebSocket handshake with it.

    A WebSocket gets the reply as a denial response when the server offers the
    ``websocket.http.response`` extension, else a close with code 1008 (policy violation)
    once the ``websocket.connect`` message arrived.
    """
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": list(reply.headers)}
        )
        await send({"type": "http.response.body", "body": reply.body})
        return
    if DENIAL_EXTENSION in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": reply.status,
                "headers": list(reply.headers),
            }
        )
        await send({"type": "websocket.http.response.body", "body": reply.body})
        return
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close", "code": POLICY_VIOLATION, "reason": ""})
