"""The client-credentials token endpoint (RFC 6749 §4.4): parse, authenticate, authorise.

Pure functions: a request and the registered clients in, a :class:`Grant` (or an
:class:`OAuthError` for the RFC 6749 §5.2 error reply) out. Minting is the issuer's job.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote_plus

from .._scopes import SCOPE_TOKEN
from ._http import HTTPReply, HTTPRequest, json_reply

__all__ = [
    "Grant",
    "OAuthError",
    "RegisteredClient",
    "authenticate_client",
    "authorize",
    "error_reply",
    "read_form",
    "token_reply",
]

_REPEATABLE = frozenset({"resource"})
"""Parameters a client may send several times (RFC 8707 §2: one ``resource`` per target)."""
_NO_STORE = (("cache-control", "no-store"), ("pragma", "no-cache"))


@dataclass(frozen=True, slots=True)
class RegisteredClient:
    """A confidential client the fake issuer knows (the secret stays out of its repr)."""

    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    audience: str | tuple[str, ...] | None = None
    expires_in: int = 300


@dataclass(frozen=True, slots=True)
class Grant:
    """What an accepted request is granted: the client, scopes and audience to mint for."""

    client: RegisteredClient
    scopes: tuple[str, ...]
    audience: str | tuple[str, ...] | None
    """The ``aud``: several for several RFC 8707 ``resource`` parameters."""


class OAuthError(Exception):
    """An RFC 6749 §5.2 error reply."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


def error_reply(exc: OAuthError) -> HTTPReply:
    """The JSON error reply; ``invalid_client`` also carries a Basic challenge."""
    headers = list(_NO_STORE)
    if exc.status == 401:
        headers.append(("www-authenticate", 'Basic realm="fake-issuer", charset="UTF-8"'))
    if exc.status == 405:
        headers.append(("allow", "POST"))
    document = {"error": exc.error, "error_description": exc.description}
    return json_reply(exc.status, document, *headers)


def token_reply(access_token: str, grant: Grant, *, token_type: str = "Bearer") -> HTTPReply:
    """The RFC 6749 §5.1 success reply (``token_type`` ``DPoP`` for a key-bound token)."""
    document: dict[str, object] = {
        "access_token": access_token,
        "token_type": token_type,
        "expires_in": grant.client.expires_in,
    }
    if grant.scopes:
        document["scope"] = " ".join(grant.scopes)
    return json_reply(200, document, *_NO_STORE)


def read_form(request: HTTPRequest) -> dict[str, str]:
    """The form of a POST to an endpoint (repeated parameters refused but ``resource``)."""
    content_types = request.header_values("content-type")
    media_type = content_types[0].split(";", 1)[0].strip().lower() if content_types else ""
    if len(content_types) != 1 or media_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            400, "invalid_request", "the body must be application/x-www-form-urlencoded"
        )
    try:
        pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "the body is not UTF-8") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form and name not in _REPEATABLE:
            raise OAuthError(400, "invalid_request", f"parameter {name!r} is repeated")
        form[name] = value
    return form


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(client_id, client_secret) from a Basic header (RFC 6749 §2.3.1), None if not Basic."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise OAuthError(401, "invalid_client", "malformed Basic credentials")
    return unquote_plus(client_id), unquote_plus(secret)


def authenticate_client(
    request: HTTPRequest, form: Mapping[str, str], clients: Mapping[str, RegisteredClient]
) -> RegisteredClient:
    """The client a request authenticates (``client_secret_basic`` or ``_post``)."""
    headers = request.header_values("authorization")
    if len(headers) > 1:
        raise OAuthError(400, "invalid_request", "more than one Authorization header")
    basic = _basic_credentials(headers[0]) if headers else None
    if headers and basic is None:
        raise OAuthError(401, "invalid_client", "unsupported client authentication scheme")
    if basic is not None:
        if "client_secret" in form:
            raise OAuthError(
                400, "invalid_request", "use one client authentication method, not two"
            )
        if "client_id" in form and form["client_id"] != basic[0]:
            raise OAuthError(400, "invalid_request", "client_id differs from the Basic one")
        client_id, secret = basic
    else:
        if "client_id" not in form or "client_secret" not in form:
            raise OAuthError(401, "invalid_client", "client authentication is required")
        client_id, secret = form["client_id"], form["client_secret"]
    client = clients.get(client_id)
    expected = client.client_secret if client is not None else ""
    matches = hmac.compare_digest(secret.encode(), expected.encode())
    if client is None or not matches:
        raise OAuthError(401, "invalid_client", "client authentication failed")
    return client


def _scopes(form: Mapping[str, str], client: RegisteredClient) -> tuple[str, ...]:
    requested = form.get("scope", "")
    if not requested.strip():
        return client.scopes
    scopes = tuple(dict.fromkeys(requested.split(" ")))
    if not all(SCOPE_TOKEN.fullmatch(scope) for scope in scopes):
        raise OAuthError(400, "invalid_scope", "the scope parameter is malformed")
    if not set(scopes) <= set(client.scopes):
        raise OAuthError(400, "invalid_scope", "a requested scope is not allowed for this client")
    return scopes


def _audience(form: Mapping[str, str], client: RegisteredClient) -> str | None:
    requested = form.get("audience") or None
    if requested is None:
        allowed = client.audience
        return allowed if isinstance(allowed, str) or allowed is None else allowed[0]
    if client.audience is None:
        return requested
    allowed_set = {client.audience} if isinstance(client.audience, str) else set(client.audience)
    if requested not in allowed_set:
        raise OAuthError(400, "invalid_target", "the audience is not allowed for this client")
    return requested


_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[\x21-\x7e]+")
"""RFC 3986 absolute-URI, roughly: a scheme, ``:``, then visible ASCII (no spaces)."""


def _resources(request: HTTPRequest) -> tuple[str, ...]:
    """The RFC 8707 ``resource`` parameters (a form :func:`read_form` accepted), each an
    absolute URI without a fragment, else ``invalid_target``."""
    pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    resources = tuple(dict.fromkeys(value for name, value in pairs if name == "resource"))
    for resource in resources:
        if not _ABSOLUTE_URI.fullmatch(resource) or "#" in resource:
            raise OAuthError(
                400, "invalid_target", "a resource must be an absolute URI without a fragment"
            )
    return resources


def _target(
    request: HTTPRequest, form: Mapping[str, str], client: RegisteredClient
) -> str | tuple[str, ...] | None:
    """The ``aud`` to mint: the requested resources (RFC 8707), else the audience. A
    client registered with audiences may name only those as resources."""
    resources = _resources(request) if "resource" in form else ()
    if not resources:
        return _audience(form, client)
    if form.get("audience"):
        raise OAuthError(400, "invalid_request", "send resource or audience, not both")
    allowed = client.audience
    allowed_set = None if allowed is None else {allowed} if isinstance(allowed, str) else {*allowed}
    if allowed_set is not None and not allowed_set.issuperset(resources):
        raise OAuthError(400, "invalid_target", "a resource is not allowed for this client")
    return resources[0] if len(resources) == 1 else resources


def authorize(request: HTTPRequest, clients: Mapping[str, RegisteredClient]) -> Grant:
    """Check a token request end to end; raise :class:`OAuthError` to refuse it."""
    if request.method != "POST":
        raise OAuthError(405, "invalid_request", "the token endpoint accepts POST only")
    form = read_form(request)
    client = authenticate_client(request, form, clients)
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "the grant_type parameter is missing")
    if grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
    return Grant(client, _scopes(form, client), _target(request, form, client))
