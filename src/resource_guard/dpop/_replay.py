"""Replay stores: where DPoP proof ids are remembered for as long as a proof is acceptable."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from cachetools import TLRUCache

from .. import _options as opt
from ..exceptions import ReplayStoreUnavailableError

__all__ = ["MemoryReplayStore", "ReplayStore"]


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


def _expiry(_key: str, expires_in: float, now: float) -> float:
    return now + expires_in


class MemoryReplayStore:
    """The replay store of one process: a bounded cachetools ``TLRUCache`` whose entries
    each live for their proof's remaining window, then drop out.

    Only this process sees it: behind a load balancer, a proof accepted by one process can
    be replayed to another unless every process shares one store (see
    ``resource_guard.dpop.redis``).

    Full of live entries, it **fails closed**: a new proof gets
    :class:`~resource_guard.ReplayStoreUnavailableError` (503 with ``Retry-After``) instead
    of evicting a live entry, whose proof could then be replayed. Size ``max_entries`` for
    the peak rate of DPoP requests times the proof window (100 000 covers about 330 proofs
    a second with the default 300 s window, in some 30 MB). ``seen_before`` never awaits,
    so on one event loop it is atomic; share one instance across threads only with a lock
    of your own.

    Args:
        max_entries: most proof ids remembered at once (1 to 10 000 000).
        retry_after: the ``Retry-After`` seconds a refusal for a full store suggests.
        timer: seconds on the clock proofs' ``iat`` is judged by: the wall clock
            (``time.time``), so that a clock stepped back keeps entries longer, never less
            than their proof is acceptable (a monotonic timer would let a proof whose
            ``iat`` looks fresh again be replayed); injectable for tests.
    """

    __slots__ = ("_cache", "max_entries", "retry_after")

    def __init__(
        self,
        max_entries: int = 100_000,
        *,
        retry_after: float = 5,
        timer: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = opt.count("max_entries", max_entries, low=1, high=10_000_000)
        self.retry_after = opt.seconds("retry_after", retry_after, low=1, high=3600)
        if not callable(timer):
            raise TypeError("timer must be a callable returning seconds")
        self._cache: TLRUCache[str, float] = TLRUCache(self.max_entries, _expiry, timer)

    def __len__(self) -> int:
        """Proof ids remembered now (expired ones may count until the next write)."""
        return len(self._cache)

    async def seen_before(self, jti: str, expires_in: float) -> bool:
        """True for a ``jti`` remembered and still live; else remember it for
        ``expires_in`` seconds and return False. Raises ReplayStoreUnavailableError
        when every entry is live and there is no room for it."""
        cache = self._cache
        if jti in cache:  # TLRUCache answers only for live entries
            return True
        if len(cache) >= self.max_entries:  # len() drops expired entries first
            raise ReplayStoreUnavailableError(
                f"the DPoP replay store is full ({self.max_entries} live proofs)",
                retry_after=self.retry_after,
            )
        cache[jti] = max(0.0, expires_in)
        return False

    async def aclose(self) -> None:
        """Nothing to release (kept for the :class:`ReplayStore` protocol)."""
