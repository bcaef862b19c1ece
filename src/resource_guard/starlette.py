"""Per-route scope checks for Starlette: ``@require_scopes("orders:read")``.

Works on function endpoints (sync and async), :class:`~starlette.endpoints.HTTPEndpoint`
methods and WebSocket endpoints, behind :class:`~resource_guard.BearerAuthMiddleware`:

```python
from resource_guard.starlette import require_scopes

@require_scopes("orders:read")
async def list_orders(request):
    ...
```

A token without the scopes gets the RFC 6750 403 ``insufficient_scope`` reply (a refused
WebSocket handshake); a request without a token (public path, anonymous mode) gets 401.
If the middleware is missing, the request fails with :class:`RuntimeError` (a 500),
never passes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from ._access import (
    check_access,
    send_reply,
)
from ._bearer_reply import Reply
from ._scopes import check_scope_names
from .metadata import ROUTE_SCOPES_ATTRIBUTE

__all__ = ["require_scopes"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection:
    for value in (*args, *kwargs.values()):
        if isinstance(value, HTTPConnection):
            return value
    raise RuntimeError(
        "require_scopes decorates endpoints that receive a Request or a WebSocket; "
        "none was passed to this call"
    )


def _response(reply: Reply) -> Response:
    response = Response(reply.body, status_code=reply.status)
    response.raw_headers = list(reply.headers)  # WWW-Authenticate may repeat (Bearer, DPoP)
    return response


def require_scopes(*scopes: str, any_of: bool = False) -> Callable[[_F], _F]:
    """Require the request's token to hold every one of ``scopes`` (one of them with
    ``any_of=True``). With no scopes, any valid token will do."""
    required = check_scope_names(scopes)
    if not isinstance(any_of, bool):
        raise TypeError("any_of must be a bool")

    def decorator(func: _F) -> _F:
        if not callable(func):
            raise TypeError("require_scopes(...) decorates a function or method")
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                conn = _connection(args, kwargs)
                outcome = check_access(conn.scope, required, any_of)
                if isinstance(outcome, Reply):
                    if isinstance(conn, WebSocket):
                        await send_reply(conn.scope, conn.receive, conn.send, outcome)
                        return None
                    return _response(outcome)
                return await func(*args, **kwargs)

            setattr(async_wrapper, ROUTE_SCOPES_ATTRIBUTE, required)  # for the metadata
            return cast(_F, async_wrapper)

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            conn = _connection(args, kwargs)
            outcome = check_access(conn.scope, required, any_of)
            if isinstance(outcome, Reply):
                return _response(outcome)
            return func(*args, **kwargs)

        setattr(sync_wrapper, ROUTE_SCOPES_ATTRIBUTE, required)  # for the metadata
        return cast(_F, sync_wrapper)

    return decorator
