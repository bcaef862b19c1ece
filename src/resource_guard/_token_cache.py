"""The verified-token cache: tokens a verifier accepted, answered again without a signature.

Keyed by a BLAKE2b digest of the token (RFC 7693), never the token itself; bounded, the
least recently used entry goes first. An entry holds only while its time window holds and
its key was not revoked; the owner adds its own conditions (keys still usable).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from ._keyset import VerificationKey
from ._models import AccessToken

__all__ = ["CacheEntry", "VerifiedTokenCache", "token_digest"]


def token_digest(token: bytes) -> bytes:
    """The cache key of a token's bytes. Python's BLAKE2b costs less per call inside a busy
    server than OpenSSL's SHA-256 with its per-call set-up."""
    return hashlib.blake2b(token).digest()


@dataclass(slots=True)
class CacheEntry:
    """A verified token, the key that verified it, and when it may be answered again."""

    token: AccessToken
    key: VerificationKey
    not_before: float
    not_after: float


class VerifiedTokenCache:
    """A bounded LRU of :class:`CacheEntry` by token digest (an OrderedDict: look-ups,
    reordering and eviction stay in C)."""

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes, now: float) -> CacheEntry | None:
        """The entry when it still holds at ``now`` (time window, key not revoked), marked
        recently used; an entry that no longer holds is dropped and None returned."""
        entries = self._entries
        entry = entries.get(digest)
        if entry is None:
            return None
        if entry.not_before <= now <= entry.not_after and not entry.key.revoked:
            entries.move_to_end(digest)
            return entry
        del entries[digest]
        return None

    def forget(self, digest: bytes) -> None:
        """Drop the entry of ``digest`` if there is one."""
        self._entries.pop(digest, None)

    def put(self, digest: bytes, entry: CacheEntry) -> None:
        """Remember ``entry``; evict the least recently used one beyond ``maxsize``."""
        entries = self._entries
        entries[digest] = entry
        if len(entries) > self.maxsize:
            entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
