"""Where an issuer publishes its metadata (shared by the key source and the client)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def metadata_urls(issuer: str) -> tuple[str, str]:
    """OIDC Discovery first, then RFC 8414 (whose well-known segment precedes the path)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oidc = urlunsplit(
        (parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", "")
    )
    oauth = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    return oidc, oauth
