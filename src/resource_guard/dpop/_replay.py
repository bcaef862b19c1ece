"""Replay stores: where DPoP proof ids are remembered for as long as a proof is acceptable."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ReplayStore"]


class ReplayStore(Protocol):
    """Remembers proof ids so that each DPoP proof is accepted once (RFC 9449 §11.1).

    ``seen_before`` is atomic: of any number of concurrent calls with the same ``jti``
    (across every process sharing the store), exactly one returns False. ``jti`` is what
    the DPoP policy hands over: a digest of the key's thumbprint and the proof's ``jti``,
    never the raw proof. ``expires_in`` (seconds) is how long the proof could still be
    accepted; the store must remember the id at least that long.
    """

    async def seen_before(self, jti: str, expires_in: float) -> bool:
        """True when ``jti`` was recorded before and is still remembered (a replay);
        otherwise record it and return False. Raises
        :class:`~resource_guard.ReplayStoreUnavailableError` when it cannot tell."""
        ...

    async def aclose(self) -> None:
        """Release connections (a no-op for a store that holds none)."""
        ...
