"""MemoryReplayStore: each proof id once, for its window, and closed when full."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resource_guard import ReplayStoreUnavailableError
from resource_guard.dpop import MemoryReplayStore, ReplayStore
from resource_guard.testing import FakeClock


@pytest.fixture
def store(clock: FakeClock) -> MemoryReplayStore:
    return MemoryReplayStore(3, timer=clock)


def test_it_meets_the_protocol(store: MemoryReplayStore) -> None:
    assert isinstance(store, MemoryReplayStore)
    protocol: ReplayStore = store  # mypy checks the structural match
    assert protocol is store


async def test_an_id_is_new_once_then_a_replay(store: MemoryReplayStore) -> None:
    assert await store.seen_before("a", 60) is False
    assert await store.seen_before("a", 60) is True
    assert await store.seen_before("b", 60) is False
    assert len(store) == 2


async def test_an_id_is_forgotten_after_its_window(
    store: MemoryReplayStore, clock: FakeClock
) -> None:
    await store.seen_before("a", 60)
    clock.advance(59)
    assert await store.seen_before("a", 60) is True
    clock.advance(2)
    assert await store.seen_before("a", 60) is False


async def test_a_clock_stepped_back_keeps_an_id_longer_never_shorter(
    store: MemoryReplayStore, clock: FakeClock
) -> None:
    await store.seen_before("a", 60)
    clock.advance(-30)  # an NTP step back: the proof's window lasts longer too
    clock.advance(80)
    assert await store.seen_before("a", 60) is True


async def test_concurrent_calls_with_one_id_let_exactly_one_through(
    store: MemoryReplayStore,
) -> None:
    answers = await asyncio.gather(*(store.seen_before("same", 60) for _ in range(20)))
    assert answers.count(False) == 1


async def test_a_full_store_fails_closed_instead_of_forgetting_a_live_id(
    store: MemoryReplayStore, clock: FakeClock
) -> None:
    for jti in "abc":
        await store.seen_before(jti, 60)
    with pytest.raises(ReplayStoreUnavailableError) as caught:
        await store.seen_before("d", 60)
    assert caught.value.retry_after == 5
    assert await store.seen_before("a", 60) is True  # still remembered: no replay
    clock.advance(61)
    assert await store.seen_before("d", 60) is False  # expired entries made room


async def test_a_negative_window_is_remembered_for_no_time(store: MemoryReplayStore) -> None:
    assert await store.seen_before("a", -5) is False
    assert await store.seen_before("a", 60) is False


async def test_aclose_is_harmless(store: MemoryReplayStore) -> None:
    await store.aclose()
    assert await store.seen_before("a", 1) is False


def test_the_default_bound() -> None:
    assert MemoryReplayStore().max_entries == 100_000


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_entries": 0}, ValueError),
        ({"max_entries": "10"}, TypeError),
        ({"retry_after": 0}, ValueError),
        ({"timer": 1}, TypeError),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        MemoryReplayStore(**options)
