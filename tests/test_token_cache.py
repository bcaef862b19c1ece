"""VerifiedTokenCache: bounded, least recently used first, entries that stop holding drop."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resource_guard import AccessToken
from resource_guard._keyset import load_key
from resource_guard._token_cache import CacheEntry, VerifiedTokenCache, token_digest
from resource_guard.testing import generate_key

KEY = generate_key("ES256", "k1")


def entry(not_before: float = 0, not_after: float = 100) -> CacheEntry:
    token = AccessToken(claims={}, scopes=frozenset(), expires_at=datetime.now(UTC))
    return CacheEntry(token, load_key(KEY.public_jwk()), not_before, not_after)


def test_the_key_is_a_digest_never_the_token() -> None:
    digest = token_digest(b"header.payload.signature")
    assert digest == token_digest(b"header.payload.signature")
    assert b"payload" not in digest
    assert len(digest) == 64


@pytest.mark.parametrize(
    ("now", "held"),
    [(-1, False), (0, True), (50, True), (100, True), (101, False)],
    ids=["before", "start", "inside", "end", "after"],
)
def test_an_entry_holds_only_inside_its_window(now: float, held: bool) -> None:
    cache = VerifiedTokenCache(4)
    cache.put(b"d", entry())
    assert (cache.get(b"d", now) is not None) is held
    assert len(cache) == int(held)  # an entry that no longer holds is dropped


def test_an_entry_whose_key_was_revoked_is_dropped() -> None:
    cache = VerifiedTokenCache(4)
    revoked = entry()
    revoked.key.revoked = True
    cache.put(b"d", revoked)
    assert cache.get(b"d", 50) is None
    assert len(cache) == 0


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = VerifiedTokenCache(2)
    cache.put(b"a", entry())
    cache.put(b"b", entry())
    assert cache.get(b"a", 1) is not None  # "a" is now the most recent
    cache.put(b"c", entry())
    assert [cache.get(d, 1) is not None for d in (b"a", b"b", b"c")] == [True, False, True]
    assert len(cache) == 2


def test_forget_and_clear() -> None:
    cache = VerifiedTokenCache(4)
    for digest in (b"a", b"b", b"c"):
        cache.put(digest, entry())
    cache.forget(b"a")
    cache.forget(b"missing")
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
