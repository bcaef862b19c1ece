"""The introspection cache: answers of the introspection endpoint, by token digest.

Two bounded LRUs, keyed by :func:`~resource_guard._token_cache.token_digest` (never the
token): active answers (an AccessToken until the earliest of its ``exp`` and the
configured bound, so that a revoked token stops working within that bound) and refusals
(for a few seconds, so that a client retrying a dead token does not hammer the endpoint).
Refusals have their own budget: a flood of junk tokens never evicts an active answer.

Plain ``OrderedDict`` LRUs, like the verified-token cache, rather than cachetools'
``TLRUCache``: a hit is on every request's path, and a ``TLRUCache`` look-up costs about
2.3 µs against 0.2 µs here (measured on the benchmark machine), which alone would make an
opaque token's cache hit twice a JWT's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TypeVar

from .._models import AccessToken
from ..exceptions import InvalidTokenError

__all__ = ["IntrospectionCache"]


T = TypeVar("T")


def _put(
    entries: OrderedDict[bytes, tuple[T, float]], key: bytes, value: T, until: float, maxsize: int
) -> None:
    entries[key] = (value, until)
    entries.move_to_end(key)
    if len(entries) > maxsize:
        entries.popitem(last=False)


class IntrospectionCache:
    """Active answers and refusals by token digest, each bounded and expiring."""

    __slots__ = ("_active", "_refused", "maxsize", "refusal_maxsize")

    def __init__(self, maxsize: int, refusal_maxsize: int) -> None:
        self.maxsize = maxsize
        self.refusal_maxsize = refusal_maxsize
        self._active: OrderedDict[bytes, tuple[AccessToken, float]] = OrderedDict()
        self._refused: OrderedDict[bytes, tuple[InvalidTokenError, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._active) + len(self._refused)

    def __iter__(self) -> Iterator[bytes]:
        """The keys (token digests) of every entry, active answers first."""
        yield from tuple(self._active)
        yield from tuple(self._refused)

    def active(self, digest: bytes, now: float) -> AccessToken | None:
        """The AccessToken of an active answer still within its time at ``now`` (marked
        recently used); an entry past its time is dropped. The request path: one look-up."""
        entries = self._active
        entry = entries.get(digest)
        if entry is None:
            return None
        if now <= entry[1]:
            entries.move_to_end(digest)
            return entry[0]
        del entries[digest]
        return None

    def refusal(self, digest: bytes, now: float) -> InvalidTokenError | None:
        """The error of a refusal still within its time at ``now``, else None."""
        entries = self._refused
        entry = entries.get(digest)
        if entry is None:
            return None
        if now <= entry[1]:
            return entry[0]
        del entries[digest]
        return None

    def put_active(self, digest: bytes, token: AccessToken, until: float) -> None:
        """Remember an active answer until ``until``; evict the least recently used."""
        if self.maxsize:
            self._refused.pop(digest, None)
            _put(self._active, digest, token, until, self.maxsize)

    def put_refusal(self, digest: bytes, error: InvalidTokenError, until: float) -> None:
        """Remember a refusal until ``until``; evict the oldest beyond its budget."""
        if self.refusal_maxsize:
            self._active.pop(digest, None)
            _put(self._refused, digest, error, until, self.refusal_maxsize)

    def forget(self, digest: bytes) -> None:
        """Drop whatever is remembered for ``digest``."""
        self._active.pop(digest, None)
        self._refused.pop(digest, None)

    def clear(self) -> None:
        """Forget everything."""
        self._active.clear()
        self._refused.clear()
