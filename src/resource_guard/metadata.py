"""OAuth 2.0 Protected Resource Metadata (RFC 9728): what a client needs to get a token.

```python
from resource_guard import BearerAuthMiddleware, ProtectedResourceMetadata

app.add_middleware(
    BearerAuthMiddleware,
    verifier=verifier,
    resource_metadata=ProtectedResourceMetadata("https://api.example.com", route_scopes=True),
)
```

The middleware then answers ``GET /.well-known/oauth-protected-resource`` itself (the
path-suffixed form for a resource identifier with a path, RFC 9728 §3.1), and every
``WWW-Authenticate`` challenge it sends names that document's URL in a
``resource_metadata`` parameter (RFC 9728 §5.1). Only that one path is answered without a
token, and the app never sees its requests.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Receive, Scope, Send

from ._fetch import check_url
from ._scopes import check_scope_names
from .dpop import DPoPPolicy

__all__ = [
    "ROUTE_SCOPES_ATTRIBUTE",
    "WELL_KNOWN_PATH",
    "MetadataEndpoint",
    "ProtectedResourceMetadata",
    "route_scopes",
]

logger = logging.getLogger("resource_guard.metadata")

WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource"
"""The well-known path RFC 9728 §3 registers; a resource path is appended to it."""

ROUTE_SCOPES_ATTRIBUTE = "resource_guard_scopes"
"""The attribute by which a route's scope check names its scopes (a tuple of str):
set on Starlette endpoints decorated with ``@require_scopes`` and on FastAPI's
``require_scopes`` dependencies, read by :func:`route_scopes`."""

# RFC 3986 characters: nothing that could break out of a quoted-string or a JSON value.
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_MAX_DEPTH = 16
_NO_BODY_METHODS = frozenset({"HEAD"})
_ALLOWED = b"GET, HEAD, OPTIONS"


def _uri(value: object, what: str, *, allow_insecure_http: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a URL string, got {type(value).__name__}")
    if not _URI_CHARACTERS.fullmatch(value):
        raise ValueError(f"{what} must be a URL of plain RFC 3986 characters (no spaces, quotes)")
    return check_url(value, what, allow_insecure_http=allow_insecure_http)


def _identifier(value: object, what: str, *, allow_insecure_http: bool) -> str:
    """An https URL without query or fragment: a resource or issuer identifier."""
    url = _uri(value, what, allow_insecure_http=allow_insecure_http)
    if "?" in url or "#" in url:
        raise ValueError(f"{what} must have no query and no fragment (RFC 9728 §1.2), got {url!r}")
    return url


def _optional_text(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str or None")
    if not value.strip() or not value.isprintable():
        raise ValueError(f"{what} must be non-empty printable text")
    return value


def _verifier_issuers(verifier: object) -> tuple[str, ...]:
    """The issuers a verifier accepts (``issuers`` of TrustedIssuers, else ``issuer``),
    without tenant templates (``{tenant}``), which name no one authorization server."""
    issuers = getattr(verifier, "issuers", None)
    if issuers is None:
        issuer = getattr(verifier, "issuer", None)
        issuers = (issuer,) if isinstance(issuer, str) else ()
    if isinstance(issuers, str) or not isinstance(issuers, Iterable):
        return ()
    return tuple(i for i in issuers if isinstance(i, str) and "{" not in i)


def _verifier_dpop(verifier: object) -> DPoPPolicy | None:
    """The verifier's DPoP policy for tokens in general (``dpop_policy(None)``), if any."""
    policy_of = getattr(verifier, "dpop_policy", None)
    if not callable(policy_of) or inspect.iscoroutinefunction(policy_of):
        return None
    policy = policy_of(None)
    return policy if isinstance(policy, DPoPPolicy) else None


def _verifier_audiences(verifier: object) -> tuple[str, ...] | None:
    audiences = getattr(verifier, "audiences", None)
    if isinstance(audiences, str):
        return (audiences,)
    if not isinstance(audiences, Iterable):
        return None
    found = tuple(a for a in audiences if isinstance(a, str))
    return found or None


class ProtectedResourceMetadata:
    """The RFC 9728 metadata of one protected resource, served by BearerAuthMiddleware.

    Args:
        resource: the resource identifier: an https URL with no query and no fragment
            (plain http only for loopback hosts, or with ``allow_insecure_http``). It is
            the document's ``resource`` exactly (RFC 9728 §3.3) and must be one of the
            verifier's audiences: the audience clients ask tokens for.
        authorization_servers: issuer identifiers of the authorization servers clients
            may get tokens from. Default: the verifier's issuer(s) (every issuer of
            ``TrustedIssuers``; tenant templates are left out).
        scopes_supported: scopes to publish.
        route_scopes: also publish every scope the app's routes require (FastAPI and
            Starlette ``require_scopes``), collected at the first metadata request.
        resource_name: a human-readable name of the resource.
        resource_documentation: the URL of the resource's documentation for developers.
        resource_policy_uri: the URL of its data-use policy.
        resource_tos_uri: the URL of its terms of service.
        dpop_signing_alg_values_supported: the DPoP proof algorithms accepted (RFC 9449),
            when the resource accepts DPoP-bound tokens.
        dpop_bound_access_tokens_required: True when the resource accepts DPoP-bound
            tokens only.
        max_age: ``Cache-Control: max-age`` of the document, in seconds.
        allow_insecure_http: accept plain-http URLs that are not loopback.

    ``bearer_methods_supported`` is always ``["header"]``: tokens in a form body or the
    query string are refused. The document is not signed, so it has no ``signed_metadata``
    and no ``resource_signing_alg_values_supported``.
    """

    __slots__ = (
        "_dpop_algorithms",
        "_dpop_required",
        "_pages",
        "_resource_name",
        "allow_insecure_http",
        "authorization_servers",
        "max_age",
        "path",
        "resource",
        "route_scopes",
        "scopes_supported",
        "url",
    )

    def __init__(
        self,
        resource: str,
        *,
        authorization_servers: Sequence[str] | None = None,
        scopes_supported: Iterable[str] = (),
        route_scopes: bool = False,
        resource_name: str | None = None,
        resource_documentation: str | None = None,
        resource_policy_uri: str | None = None,
        resource_tos_uri: str | None = None,
        dpop_signing_alg_values_supported: Sequence[str] | None = None,
        dpop_bound_access_tokens_required: bool | None = None,
        max_age: int = 3600,
        allow_insecure_http: bool = False,
    ) -> None:
        if not isinstance(allow_insecure_http, bool):
            raise TypeError("allow_insecure_http must be a bool")
        if not isinstance(route_scopes, bool):
            raise TypeError("route_scopes must be a bool")
        if isinstance(max_age, bool) or not isinstance(max_age, int):
            raise TypeError("max_age must be an int (seconds)")
        if not 0 <= max_age <= 86400 * 7:
            raise ValueError("max_age must be between 0 and 604800 seconds (a week)")
        insecure = allow_insecure_http
        self.allow_insecure_http = insecure
        self.resource = _identifier(resource, "resource", allow_insecure_http=insecure)
        """The resource identifier, the document's ``resource``."""
        parts = urlsplit(self.resource)
        suffix = "" if parts.path == "/" else parts.path
        self.path = WELL_KNOWN_PATH + suffix
        """The path of the document (RFC 9728 §3.1: the resource's path appended)."""
        self.url = f"{parts.scheme}://{parts.netloc}{self.path}"
        """The document's URL, the ``resource_metadata`` of every challenge."""
        self.authorization_servers: tuple[str, ...] | None = None
        """The issuers named; None until known (the middleware fills in its verifier's)."""
        if authorization_servers is not None:
            self.authorization_servers = self._servers(authorization_servers)
        if isinstance(scopes_supported, str):
            raise TypeError('scopes_supported must be a sequence of scopes, e.g. ("a", "b")')
        self.scopes_supported = check_scope_names(tuple(scopes_supported))
        """The scopes published besides the routes' ones."""
        self.route_scopes = route_scopes
        self.max_age = max_age
        self._resource_name = _optional_text(resource_name, "resource_name")
        pages = {
            "resource_documentation": resource_documentation,
            "resource_policy_uri": resource_policy_uri,
            "resource_tos_uri": resource_tos_uri,
        }
        self._pages = {
            name: _uri(value, name, allow_insecure_http=insecure)
            for name, value in pages.items()
            if value is not None
        }
        self._dpop_algorithms: tuple[str, ...] | None = None
        if dpop_signing_alg_values_supported is not None:
            algorithms = dpop_signing_alg_values_supported
            if isinstance(algorithms, str) or not all(isinstance(a, str) and a for a in algorithms):
                raise TypeError("dpop_signing_alg_values_supported must be a list of names")
            self._dpop_algorithms = tuple(algorithms)
        if dpop_bound_access_tokens_required is not None and not isinstance(
            dpop_bound_access_tokens_required, bool
        ):
            raise TypeError("dpop_bound_access_tokens_required must be a bool or None")
        self._dpop_required = dpop_bound_access_tokens_required

    def _servers(self, servers: object) -> tuple[str, ...]:
        if isinstance(servers, str) or not isinstance(servers, Iterable):
            raise TypeError("authorization_servers must be a sequence of issuer URLs")
        found = tuple(
            _identifier(server, "authorization_servers entry", allow_insecure_http=True)
            for server in servers
        )
        if not found:
            raise ValueError("authorization_servers must name at least one issuer")
        return tuple(dict.fromkeys(found))

    def __repr__(self) -> str:
        return f"ProtectedResourceMetadata(resource={self.resource!r})"

    def for_verifier(self, verifier: object) -> ProtectedResourceMetadata:
        """This metadata checked against ``verifier``, with its issuers as the
        ``authorization_servers`` unless they were given. Raises ValueError when the
        resource is not one of the verifier's audiences, or no issuer is known."""
        audiences = _verifier_audiences(verifier)
        if audiences is not None and self.resource not in audiences:
            raise ValueError(
                f"the metadata's resource {self.resource!r} is not an audience the verifier "
                f"accepts ({', '.join(map(repr, audiences))}): clients would get tokens the "
                "verifier refuses; make the resource one of the verifier's audiences"
            )
        issuers = self.authorization_servers
        if issuers is None:
            issuers = tuple(dict.fromkeys(_verifier_issuers(verifier)))
            if not issuers:
                raise ValueError(
                    "the verifier names no issuer to publish: pass "
                    "ProtectedResourceMetadata(..., authorization_servers=[...])"
                )
        algorithms, required = self._dpop_algorithms, self._dpop_required
        policy = _verifier_dpop(verifier)
        if policy is not None and policy.enabled:
            if algorithms is None:
                algorithms = tuple(sorted(policy.algorithms))
            if required is None:
                required = not policy.bearer_allowed
        if (issuers, algorithms, required) == (
            self.authorization_servers,
            self._dpop_algorithms,
            self._dpop_required,
        ):
            return self
        bound = object.__new__(ProtectedResourceMetadata)
        for name in self.__slots__:
            object.__setattr__(bound, name, getattr(self, name))
        bound.authorization_servers = issuers
        object.__setattr__(bound, "_dpop_algorithms", algorithms)
        object.__setattr__(bound, "_dpop_required", required)
        return bound

    def document(self, extra_scopes: Iterable[str] = ()) -> dict[str, Any]:
        """The JSON document; ``extra_scopes`` (the routes') join ``scopes_supported``.

        Raises ValueError while ``authorization_servers`` is unknown (see
        :meth:`for_verifier`).
        """
        if self.authorization_servers is None:
            raise ValueError(
                "authorization_servers is unknown: pass it, or use for_verifier(verifier)"
            )
        document: dict[str, Any] = {
            "resource": self.resource,
            "authorization_servers": list(self.authorization_servers),
        }
        scopes = sorted({*self.scopes_supported, *extra_scopes})
        if scopes:
            document["scopes_supported"] = scopes
        document["bearer_methods_supported"] = ["header"]
        if self._resource_name is not None:
            document["resource_name"] = self._resource_name
        document.update(self._pages)
        if self._dpop_algorithms is not None:
            document["dpop_signing_alg_values_supported"] = list(self._dpop_algorithms)
        if self._dpop_required is not None:
            document["dpop_bound_access_tokens_required"] = self._dpop_required
        return document


# -- the scopes the app's routes require --------------------------------------------------


def _marked(value: object) -> tuple[str, ...]:
    scopes = getattr(value, ROUTE_SCOPES_ATTRIBUTE, None)
    if isinstance(scopes, tuple) and all(isinstance(s, str) for s in scopes):
        return scopes
    return ()


def _dependency_scopes(dependant: object, found: dict[str, None], depth: int) -> None:
    """FastAPI: the scopes of every ``require_scopes`` in a route's dependency tree."""
    if depth > _MAX_DEPTH:
        return
    found.update(dict.fromkeys(_marked(getattr(dependant, "call", None))))
    for child in getattr(dependant, "dependencies", None) or ():
        _dependency_scopes(child, found, depth + 1)


def _endpoint_scopes(endpoint: object, found: dict[str, None]) -> None:
    """Starlette: a decorated endpoint, or the decorated methods of an endpoint class."""
    found.update(dict.fromkeys(_marked(endpoint)))
    if inspect.isclass(endpoint):
        for _, member in inspect.getmembers(endpoint, callable):
            found.update(dict.fromkeys(_marked(member)))


def _routes_holder(app: object) -> Any:
    """``app``, or the first app it wraps (a middleware's ``.app`` chain), that has routes."""
    for _ in range(_MAX_DEPTH):
        if isinstance(getattr(app, "routes", None), Sequence):
            return app
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


def _openapi_scopes(app: object) -> tuple[str, ...]:
    """FastAPI: the scopes its OpenAPI document declares for ``require_scopes`` (included
    routers and their dependencies too; routes left out of the schema are not seen)."""
    from .fastapi import openapi_scopes  # the app has openapi(): FastAPI is installed

    try:
        schema = app.openapi()  # type: ignore[attr-defined]
    except Exception as exc:  # a broken schema must not break the metadata
        logger.warning(
            "could not read the app's OpenAPI document for scopes_supported (%s)",
            type(exc).__name__,
        )
        return ()
    return tuple(openapi_scopes(schema))


def _collect(app: object, found: dict[str, None], depth: int) -> None:
    holder = _routes_holder(app)
    if holder is None or depth > _MAX_DEPTH:
        return
    if callable(getattr(holder, "openapi", None)):
        found.update(dict.fromkeys(_openapi_scopes(holder)))
    for route in holder.routes:
        _endpoint_scopes(getattr(route, "endpoint", None), found)
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            _dependency_scopes(dependant, found, 0)
        inner = getattr(route, "app", None)  # Mount, Host: a sub-app or a router
        if inner is not None:
            _collect(inner, found, depth + 1)


def route_scopes(app: object) -> tuple[str, ...]:
    """Every scope the routes of a Starlette or FastAPI ``app`` require, sorted: those of
    Starlette ``@require_scopes`` endpoints and of FastAPI ``require_scopes``
    dependencies (route, router and app dependencies; a FastAPI app's OpenAPI document
    too), mounted sub-apps included. ``app`` may be a middleware wrapping the app (its
    ``.app`` chain is followed)."""
    found: dict[str, None] = {}
    _collect(app, found, 0)
    return tuple(sorted(found))


def _source(routes_app: object, scope: Scope | None) -> object:
    """Where the routes are: ``routes_app``, or the request's app when it is the one
    ``routes_app`` leads to (FastAPI: the app, whose OpenAPI document tells more than
    its router), or has to be the one (no ``routes_app``)."""
    app = None if scope is None else scope.get("app")
    if routes_app is None:
        return app
    holder = _routes_holder(routes_app)
    if app is not None and holder is not None and getattr(app, "router", None) is holder:
        return app
    return routes_app


# -- serving it ------------------------------------------------------------------------------


def _reply_headers(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *extra,
    ]


class MetadataEndpoint:
    """An ASGI app answering the metadata document at :attr:`path` (BearerAuthMiddleware
    mounts one; it can also be served by any router).

    GET and HEAD get the document (``application/json``, ``Cache-Control: public,
    max-age=...``); OPTIONS gets a CORS preflight answer; other methods get 405 with
    ``Allow``. Every reply lets any origin read it (``Access-Control-Allow-Origin: *``):
    the document is public and browser-based clients fetch it.

    ``routes_app`` is where :func:`route_scopes` looks for the routes when the metadata
    asks for them (default: the request's ``scope["app"]``); the document is built at the
    first request and kept.
    """

    def __init__(self, metadata: ProtectedResourceMetadata, *, routes_app: object = None) -> None:
        if not isinstance(metadata, ProtectedResourceMetadata):
            raise TypeError("metadata must be a ProtectedResourceMetadata")
        metadata.document()  # fails now if authorization_servers is unknown
        self.metadata = metadata
        self.path = metadata.path
        self._routes_app = routes_app
        self._body: bytes | None = None

    def matches(self, scope: Scope) -> bool:
        """True for an HTTP request on the document's path: the full path, or the path
        the app routes on (without ``root_path``)."""
        if scope["type"] != "http":
            return False
        path: str = scope["path"]
        if path == self.path:
            return True
        root: str = scope.get("root_path", "")
        return bool(root) and path == root + self.path

    def body(self, scope: Scope | None = None) -> bytes:
        """The document's bytes, built on first use (the routes' scopes then collected)."""
        if self._body is None:
            metadata = self.metadata
            extra: tuple[str, ...] = ()
            if metadata.route_scopes:
                extra = route_scopes(_source(self._routes_app, scope))
            document = metadata.document(extra)
            self._body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return self._body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        cors = (b"access-control-allow-origin", b"*")
        if method in ("GET", "HEAD"):
            body = self.body(scope)
            cache = f"public, max-age={self.metadata.max_age}".encode("ascii")
            headers = _reply_headers(body, (b"cache-control", cache), cors)
            status = 200
            if method in _NO_BODY_METHODS:
                body = b""
        elif method == "OPTIONS":
            body = b""
            headers = [
                (b"allow", _ALLOWED),
                cors,
                (b"access-control-allow-methods", b"GET, HEAD"),
                (b"access-control-allow-headers", b"*"),
                (b"access-control-max-age", b"86400"),
                (b"content-length", b"0"),
            ]
            status = 204
        else:
            body = json.dumps(
                {
                    "error": "method_not_allowed",
                    "error_description": "the metadata accepts GET and HEAD",
                },
                separators=(",", ":"),
            ).encode("ascii")
            headers = _reply_headers(body, (b"allow", _ALLOWED), cors)
            status = 405
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
