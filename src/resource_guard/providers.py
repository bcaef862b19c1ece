"""Identity-provider presets: a :class:`TokenVerifier` from the values an IdP's console shows.

```python
from resource_guard import providers

verifier = providers.entra(tenant_id="3f1c...", audience="api://orders")
```

One function per provider. Each takes keyword-only values, checks them at once (a
``ValueError`` or ``TypeError`` saying what to fix) and passes ``**options`` (``http_client``,
``clock``, ``leeway``...) on to :class:`TokenVerifier`. An option a preset sets itself
(``scope_claims``, ``claim_values``...) may be passed to replace the preset's choice;
``issuer`` and ``audience`` come from the preset's own arguments only. Every preset needs
an audience (or app-client) allow-list: none verifies without one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import _options as opt
from ._verifier import TokenVerifier

__all__ = ["auth0", "cognito", "entra", "keycloak", "okta", "temporal"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_SEGMENT = re.compile(r"[^/?#\s]+")
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_POOL_ID = re.compile(r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+")


def _text(name: str, value: object, pattern: re.Pattern[str], example: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str such as {example!r}, got {type(value).__name__}")
    if pattern.fullmatch(value) is None:
        raise ValueError(f"{name} must look like {example!r}, got {value!r:.80}")
    return value


def _domain(value: object, example: str) -> str:
    if isinstance(value, str) and "://" in value:
        raise ValueError(f"domain is a host name such as {example!r}: leave out https://")
    return _text("domain", value, _HOST, example)


def _verifier(
    issuer: str, audience: str | Sequence[str], preset: dict[str, Any], options: dict[str, Any]
) -> TokenVerifier:
    for name in ("issuer", "audience"):
        if name in options:
            raise TypeError(f"{name}= is set by the preset; pass the preset's own arguments")
    return TokenVerifier(issuer, audience, **{**preset, **options})


def okta(
    *,
    domain: str,
    audience: str | Sequence[str],
    authorization_server: str | None = "default",
    **options: Any,
) -> TokenVerifier:
    """Okta: a custom authorization server (``https://{domain}/oauth2/{server}``), or the
    org authorization server (``https://{domain}``) with ``authorization_server=None``.

    Scopes come from ``scp`` (a list), the client from ``cid``.

    Args:
        domain: the Okta domain, e.g. ``dev-123456.okta.com`` (no ``https://``).
        audience: the authorization server's Audience, e.g. ``api://default``.
        authorization_server: the server's ID (``default``, ``aus...``); None: the org server.
    """
    host = _domain(domain, "dev-123456.okta.com")
    if authorization_server is None:
        issuer = f"https://{host}"
    else:
        server = _text("authorization_server", authorization_server, _SEGMENT, "default")
        issuer = f"https://{host}/oauth2/{server}"
    return _verifier(issuer, audience, {"scope_claims": ("scp",)}, options)


def auth0(*, domain: str, audience: str | Sequence[str], **options: Any) -> TokenVerifier:
    """Auth0: issuer ``https://{domain}/`` (with its trailing slash); scopes from ``scope``
    and, with RBAC's "Add Permissions in the Access Token", ``permissions``; client ``azp``.

    Args:
        domain: the tenant domain (``example.eu.auth0.com``) or your custom domain.
        audience: the API's Identifier (APIs > your API > Settings).
    """
    host = _domain(domain, "example.eu.auth0.com")
    preset = {"scope_claims": ("scope", "permissions")}
    return _verifier(f"https://{host}/", audience, preset, options)


def entra(
    *, tenant_id: str, audience: str | Sequence[str], version: int = 2, **options: Any
) -> TokenVerifier:
    """Microsoft Entra ID, one tenant: v2 tokens (issuer
    ``https://login.microsoftonline.com/{tenant_id}/v2.0``) or v1 (``version=1``, issuer
    ``https://sts.windows.net/{tenant_id}/``).

    Scopes come from ``scp`` (delegated) and ``roles`` (app permissions, client
    credentials); the client from ``azp`` (v2) or ``appid`` (v1). v1 keys are read from
    ``https://login.microsoftonline.com/{tenant_id}/discovery/keys``; v2 keys are discovered.

    Args:
        tenant_id: the Directory (tenant) ID, a GUID.
        audience: the Application (client) ID and/or the Application ID URI
            (``api://...``); give both to accept both.
        version: the token version the app registration issues (its manifest's
            ``requestedAccessTokenVersion``): 2 or 1.
    """
    if isinstance(tenant_id, str) and tenant_id in ("common", "organizations", "consumers"):
        raise ValueError(
            f"tenant_id {tenant_id!r} is multi-tenant: pass your Directory (tenant) ID, a GUID"
        )
    tenant = _text("tenant_id", tenant_id, _GUID, "3f1c8a4e-1111-4d2b-9c3a-0123456789ab")
    if isinstance(version, bool) or version not in (1, 2):
        raise ValueError(f"version must be 2 (v2.0 tokens) or 1 (v1.0 tokens), got {version!r}")
    scopes = {"scope_claims": ("scp", "roles")}
    if version == 2:
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
        return _verifier(issuer, audience, scopes, options)
    keys = f"https://login.microsoftonline.com/{tenant}/discovery/keys"
    issuer = f"https://sts.windows.net/{tenant}/"
    return _verifier(issuer, audience, {**scopes, "jwks_uri": keys}, options)


@dataclass(frozen=True, slots=True)
class _ClientRoles:
    """Keycloak's ``resource_access.<client>.roles`` of the given clients, as scopes (a
    mapper, because a client id may hold dots, which a dotted ``scope_claims`` path splits)."""

    clients: tuple[str, ...]

    def __call__(self, claims: Mapping[str, Any]) -> list[str]:
        access = claims.get("resource_access")
        if access is None:
            return []
        if not isinstance(access, Mapping):
            raise ValueError("resource_access is not an object")
        roles: list[str] = []
        for client in self.clients:
            entry = access.get(client)
            if entry is None:
                continue
            found = entry.get("roles", []) if isinstance(entry, Mapping) else None
            if not isinstance(found, list):
                raise ValueError("resource_access.<client>.roles is not a list")
            roles.extend(found)
        return roles


def keycloak(
    *, base_url: str, realm: str, audience: str | Sequence[str], **options: Any
) -> TokenVerifier:
    """Keycloak: issuer ``{base_url}/realms/{realm}``; the payload's ``typ`` must be
    ``Bearer`` (ID and refresh tokens are refused).

    Scopes come from ``scope``, ``realm_access.roles`` and ``resource_access.<client>.roles``
    of each audience client; the client from ``azp``. Keycloak names the API in ``aud`` only
    when an "Audience" protocol mapper adds it (docs/providers.md).

    Args:
        base_url: the server's URL, e.g. ``https://keycloak.example.com`` (add ``/auth`` for
            Keycloak 16 and older).
        realm: the realm's name.
        audience: the API's client ID (the client whose roles count too).
    """
    parts = urlsplit(base_url) if isinstance(base_url, str) else None
    if parts is None:
        raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("base_url must be an http(s) URL such as 'https://keycloak.example.com'")
    name = _text("realm", realm, _SEGMENT, "shop")
    clients = opt.strings("audience", audience)
    preset = {
        "scope_claims": ("scope", "realm_access.roles"),
        "scope_mapper": _ClientRoles(clients),
        "claim_values": {"typ": "Bearer"},
    }
    return _verifier(f"{base_url.rstrip('/')}/realms/{name}", clients, preset, options)


def cognito(*, user_pool_id: str, client_id: str | Sequence[str], **options: Any) -> TokenVerifier:
    """Amazon Cognito access tokens: issuer
    ``https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`` (the region is the pool
    id's prefix). They carry no ``aud``: ``client_id`` must name an allowed app client, and
    ``token_use`` must be ``access`` (ID tokens are refused). Scopes come from ``scope``.

    Args:
        user_pool_id: the User pool ID, e.g. ``eu-west-1_AbCdEf123``.
        client_id: the App client ID(s) whose tokens this API accepts.
    """
    pool = _text("user_pool_id", user_pool_id, _POOL_ID, "eu-west-1_AbCdEf123")
    region = pool.partition("_")[0]
    clients = opt.strings("client_id", client_id)
    preset = {
        "audience_claim": "client_id",
        "claim_values": {"token_use": "access"},
        "scope_claims": ("scope",),
    }
    issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"
    return _verifier(issuer, clients, preset, options)


def temporal(*, issuer: str, audience: str | Sequence[str], **options: Any) -> TokenVerifier:
    """A Temporal-style IdP: ``permissions`` entries ``<namespace>:<role>`` (``orders:write``,
    ``system:admin``) become scopes as they are; other scope claims are ignored.

    Args:
        issuer: the IdP's issuer URL, exactly as in ``iss``.
        audience: the audience the IdP puts in ``aud`` for the Temporal service.
    """
    return _verifier(issuer, audience, {"scope_claims": ("permissions",)}, options)
