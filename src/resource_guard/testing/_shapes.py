"""Token shapes: what an identity provider's access tokens look like, for ``FakeIssuer(shape=)``.

A shape moves the generic claims :meth:`FakeIssuer.mint` builds (``client_id``, ``scope``,
``aud``) to where that provider puts them, adds its fixed claims and picks its header
``typ``, as the provider's documentation shows its tokens.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

__all__ = ["SHAPES", "apply_shape", "shape_headers"]

SHAPES: Final = ("auth0", "cognito", "entra-v1", "entra-v2", "keycloak", "okta", "temporal")
"""Names ``FakeIssuer(shape=...)`` accepts, one per provider of :mod:`resource_guard.providers`."""

_TYP: Final[dict[str, str | None]] = {
    "auth0": "JWT",
    "cognito": None,
    "entra-v1": "JWT",
    "entra-v2": "JWT",
    "keycloak": "JWT",
    "okta": None,
    "temporal": "JWT",
}
_CLIENT: Final = {"auth0": "azp", "entra-v1": "appid", "entra-v2": "azp", "keycloak": "azp"}
"""Where a shape puts the client (``client_id`` stays for the others; Okta: ``cid``)."""


def _rename(payload: dict[str, Any], old: str, new: str) -> None:
    if old in payload:
        payload[new] = payload.pop(old)


def apply_shape(shape: str, payload: dict[str, Any]) -> str | None:
    """Reshape ``payload`` in place for ``shape``; return the header ``typ`` it uses."""
    scopes = payload.pop("scope", None)
    words = scopes.split(" ") if scopes else []
    if shape == "okta":  # scp is a list, cid the client, jti "AT...."
        _rename(payload, "client_id", "cid")
        payload.update(ver=1, jti="AT." + payload["jti"], scp=words)
    elif shape == "cognito":  # no aud: the app client is client_id
        payload.pop("aud", None)
        payload.update(token_use="access", version=2)
        if scopes:
            payload["scope"] = scopes
    elif shape.startswith("entra"):  # scp space-delimited, tid from the issuer's path
        _rename(payload, "client_id", _CLIENT[shape])
        tenant = urlsplit(payload["iss"]).path.split("/")[1:2]
        payload.update(ver=shape[-1] + ".0", tid="".join(tenant), nbf=payload["iat"])
        if scopes:
            payload["scp"] = scopes
    elif shape == "temporal":
        payload["permissions"] = words
    else:  # auth0, keycloak
        _rename(payload, "client_id", _CLIENT[shape])
        if scopes:
            payload["scope"] = scopes
        if shape == "auth0":  # RBAC with "Add Permissions in the Access Token"
            payload["permissions"] = words
        else:
            payload["typ"] = "Bearer"
    return _TYP[shape]


def shape_headers(shape: str, kid: str | None) -> dict[str, Any]:
    """Header fields a shape adds: Entra repeats the key id as ``x5t``."""
    return {"x5t": kid} if shape.startswith("entra") and kid is not None else {}
