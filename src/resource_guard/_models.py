"""AccessToken: what a successful verification hands to the application."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .exceptions import InsufficientScopeError


@dataclass(frozen=True, slots=True, repr=False)
class AccessToken:
    """A verified access token.

    Built only by :meth:`TokenVerifier.verify`; every field comes from claims that passed
    verification. The raw token is deliberately not kept.
    """

    claims: Mapping[str, Any]
    """Every claim of the payload, read-only."""
    scopes: frozenset[str]
    """Scopes granted to the caller (``scope``, ``scp`` and any configured claims)."""
    expires_at: datetime
    """When the token expires (``exp``), an aware UTC datetime."""
    subject: str | None = None
    """The ``sub`` claim."""
    client_id: str | None = None
    """The OAuth client: ``client_id``, else ``azp``, else ``cid``, else ``appid``."""
    issuer: str = ""
    """The ``iss`` claim (equal to the configured issuer)."""
    key_id: str | None = field(default=None)
    """The ``kid`` of the key that verified the signature."""

    @property
    def audience(self) -> tuple[str, ...]:
        """The ``aud`` claim as a tuple."""
        aud = self.claims.get("aud")
        if isinstance(aud, str):
            return (aud,)
        return tuple(aud or ())

    @property
    def token_id(self) -> str | None:
        """The ``jti`` claim."""
        jti = self.claims.get("jti")
        return jti if isinstance(jti, str) else None

    @property
    def issued_at(self) -> datetime | None:
        """The ``iat`` claim as an aware UTC datetime."""
        iat = self.claims.get("iat")
        return datetime.fromtimestamp(iat, UTC) if isinstance(iat, int | float) else None

    def has_scopes(self, *required: str, any_of: bool = False) -> bool:
        """True when the token holds all ``required`` scopes (one of them with ``any_of``)."""
        if not required:
            return True
        if any_of:
            return not self.scopes.isdisjoint(required)
        return self.scopes.issuperset(required)

    def require_scopes(self, required: Iterable[str], *, any_of: bool = False) -> None:
        """Raise :class:`InsufficientScopeError` unless the token holds the scopes."""
        wanted = tuple(required)
        if self.has_scopes(*wanted, any_of=any_of):
            return
        missing = [scope for scope in wanted if scope not in self.scopes]
        raise InsufficientScopeError(wanted, missing, any_of=any_of)

    def __repr__(self) -> str:
        return (
            f"AccessToken(subject={self.subject!r}, client_id={self.client_id!r}, "
            f"scopes={sorted(self.scopes)!r}, expires_at={self.expires_at.isoformat()!r})"
        )
