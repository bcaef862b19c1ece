"""DPoP (RFC 9449): sender-constrained access tokens, checked on the resource server."""

from ._replay import ReplayStore

__all__ = ["ReplayStore"]
