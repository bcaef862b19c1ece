"""FastAPI integration: per-route scopes, the verified token, and the OpenAPI scheme.

```python
from resource_guard.fastapi import current_token, install_openapi, require_scopes

@app.get("/orders", dependencies=[require_scopes("orders:read")])
async def orders(token: AccessToken = Depends(current_token)): ...

install_openapi(app, verifier=verifier)   # Swagger UI's Authorize: client credentials
```

The dependencies read what :class:`~resource_guard.BearerAuthMiddleware` stored; without
the middleware they raise :class:`RuntimeError` (a 500), never allow. Refusals are sent
by the middleware like its own: 403 ``insufficient_scope`` (or 401 without a token) with
the RFC 6750 challenge and the body ``{"error": ..., "error_description": ...}``. In a
sub-app mounted below the middleware they become ``HTTPException``s with the same status
and challenge, answered by FastAPI (body ``{"detail": {...}}``).
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations.

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn, Protocol

try:
    from fastapi import Depends, FastAPI, HTTPException, Security, WebSocketException
    from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
    from fastapi.security.base import SecurityBase
except ImportError as exc:
    raise ImportError(
        "resource_guard.fastapi needs FastAPI: pip install 'resource-guard[fastapi]'"
    ) from exc

from starlette.requests import HTTPConnection

from ._access import (
    APP_KEY,
    DENIAL_EXTENSION,
    POLICY_VIOLATION,
    AccessRefused,
    check_access,
)
from ._bearer_reply import Reply
from ._models import AccessToken
from ._scopes import check_scope_names

__all__ = [
    "SCHEME_NAME",
    "CurrentToken",
    "current_token",
    "install_openapi",
    "openapi_scopes",
    "optional_token",
    "require_scopes",
]

logger = logging.getLogger("resource_guard.fastapi")

SCHEME_NAME = "bearerAuth"
"""Name of the security scheme in the OpenAPI document."""
_SCHEME_MODEL = HTTPBearerModel(
    bearerFormat="JWT", description="OAuth 2.0 access token (RFC 6750 bearer JWT)"
)


class _BearerDependency(SecurityBase):
    """A dependency that is also the OpenAPI security scheme, so FastAPI resolves one call
    per use (a security sub-dependency would cost as much again on every request)."""

    def __init__(self) -> None:
        self.model = _SCHEME_MODEL
        self.scheme_name = SCHEME_NAME


class _ScopeCheck(_BearerDependency):
    """``require_scopes(...)`` and ``current_token``: the token holding the scopes."""

    def __init__(self, required: tuple[str, ...], any_of: bool) -> None:
        super().__init__()
        self.required = required
        self.any_of = any_of
        self.resource_guard_scopes = required  # metadata.ROUTE_SCOPES_ATTRIBUTE

    async def __call__(self, connection: HTTPConnection) -> AccessToken:
        return _authorize(connection, self.required, self.any_of)


class _OptionalToken(_BearerDependency):
    """``optional_token``: the token, or None without one."""

    async def __call__(self, connection: HTTPConnection) -> AccessToken | None:
        outcome = check_access(connection.scope, (), False, report=False)
        return None if isinstance(outcome, Reply) else outcome


def _refuse(connection: HTTPConnection, reply: Reply) -> NoReturn:
    """Raise what turns into ``reply``: AccessRefused when the middleware wraps this very
    app (it answers with its own body shape), else an exception FastAPI's own handler
    answers with the same status and challenge (a sub-app mounted under the middleware)."""
    scope = connection.scope
    if scope.get(APP_KEY, connection) is scope.get("app"):
        raise AccessRefused(reply)
    if connection.scope["type"] == "websocket" and DENIAL_EXTENSION not in (
        connection.scope.get("extensions") or {}
    ):
        raise WebSocketException(code=POLICY_VIOLATION, reason=reply.error)
    # One field may hold several challenges (Bearer, DPoP), comma-separated (RFC 9110 §11.6.1).
    challenge = b", ".join(value for name, value in reply.headers if name == b"www-authenticate")
    headers = {"WWW-Authenticate": challenge.decode("ascii")} if challenge else None
    detail = {"error": reply.error, "error_description": reply.description}
    raise HTTPException(status_code=reply.status, detail=detail, headers=headers)


def _authorize(connection: HTTPConnection, required: tuple[str, ...], any_of: bool) -> AccessToken:
    outcome = check_access(connection.scope, required, any_of)
    if isinstance(outcome, Reply):
        _refuse(connection, outcome)
    return outcome


def require_scopes(*scopes: str, any_of: bool = False) -> Any:
    """A dependency requiring every one of ``scopes`` (one of them with ``any_of=True``).

    Use it in ``dependencies=[...]`` of a route, a router or the app, or as a parameter
    (``token: AccessToken = require_scopes("orders:write")``) to get the token too. The
    scopes show up in the OpenAPI document. With no scopes, any valid token will do.
    """
    required = check_scope_names(scopes)
    if not isinstance(any_of, bool):
        raise TypeError("any_of must be a bool")

    return Security(_ScopeCheck(required, any_of), scopes=list(required))


current_token = _ScopeCheck((), any_of=False)
"""Dependency: the request's verified :class:`~resource_guard.AccessToken`
(``Depends(current_token)``).

Without a token (public path, anonymous request) the request gets 401.
"""

optional_token = _OptionalToken()
"""Dependency: the verified token, or None for anonymous requests and public paths
(``Depends(optional_token)``)."""


CurrentToken = Annotated[AccessToken, Depends(current_token)]
"""``token: CurrentToken`` in an endpoint's parameters: the verified AccessToken."""


class _TokenEndpointSource(Protocol):
    async def token_endpoint(self) -> str | None: ...


def _collect_scopes(schema: Mapping[str, Any]) -> list[str]:
    found: dict[str, None] = {}
    for path_item in (schema.get("paths") or {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for requirement in operation.get("security") or ():
                for scope in requirement.get(SCHEME_NAME) or ():
                    found[scope] = None
    return sorted(found)


def openapi_scopes(schema: Mapping[str, Any]) -> list[str]:
    """Every scope an OpenAPI document's operations require of the ``bearerAuth`` scheme
    (what ``require_scopes`` declares), sorted; read for RFC 9728 ``scopes_supported``."""
    return _collect_scopes(schema)


def install_openapi(
    app: FastAPI,
    *,
    verifier: _TokenEndpointSource | None = None,
    token_url: str | None = None,
    scope_descriptions: Mapping[str, str] | None = None,
) -> None:
    """Describe the API's security as OAuth 2.0 client credentials in ``app.openapi()``.

    The ``bearerAuth`` scheme becomes an ``oauth2`` scheme with a ``clientCredentials``
    flow whose ``scopes`` are every scope the routes require (plus those described in
    ``scope_descriptions``), so Swagger UI's Authorize button can fetch a token.

    ``tokenUrl`` is ``token_url`` when given; otherwise it is read from the issuer's
    discovery document (``await verifier.token_endpoint()``) at application start-up.
    Until it is known (no lifespan yet, or the issuer publishes none) the scheme stays a
    plain HTTP bearer scheme, which Swagger UI accepts as a pasted token.
    """
    if not isinstance(app, FastAPI):
        raise TypeError("install_openapi needs a FastAPI application")
    if token_url is None and verifier is None:
        raise ValueError("install_openapi needs token_url=... or verifier=... to find it")
    if token_url is not None and (not isinstance(token_url, str) or not token_url):
        raise ValueError("token_url must be a non-empty URL string")
    if verifier is not None and not callable(getattr(verifier, "token_endpoint", None)):
        raise TypeError("verifier must be a TokenVerifier (with async token_endpoint())")
    descriptions = dict(scope_descriptions or {})
    check_scope_names(descriptions)
    if not all(isinstance(text, str) for text in descriptions.values()):
        raise TypeError("scope_descriptions must map scope names to description strings")
    state: dict[str, str | None] = {"token_url": token_url}
    original: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original()
        url = state["token_url"]
        if url is None:
            return schema
        scopes = dict.fromkeys(_collect_scopes(schema), "")
        scopes.update(descriptions)
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SCHEME_NAME] = {
            "type": "oauth2",
            "description": "OAuth 2.0 client credentials; send the token as a bearer JWT",
            "flows": {"clientCredentials": {"tokenUrl": url, "scopes": scopes}},
        }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    if token_url is not None or verifier is None:
        return
    source = verifier
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        try:
            url = await source.token_endpoint()
        except Exception as exc:
            logger.warning("could not read the issuer's token_endpoint: %s", type(exc).__name__)
            url = None
        if url:
            state["token_url"] = url
        else:
            logger.warning(
                "the issuer publishes no token_endpoint; OpenAPI keeps a plain bearer scheme "
                "(pass install_openapi(..., token_url=...) to offer client credentials)"
            )
        async with inner(target) as maybe_state:
            yield maybe_state

    app.router.lifespan_context = lifespan
