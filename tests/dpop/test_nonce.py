"""NonceSource: stateless nonces, current and previous window accepted."""

from __future__ import annotations

from typing import Any

import pytest

from resource_guard.dpop import NonceSource
from resource_guard.testing import FakeClock

SECRET = b"s" * 32


@pytest.fixture
def nonces(clock: FakeClock) -> NonceSource:
    return NonceSource(SECRET, window=60, clock=clock)


def test_a_nonce_is_valid_for_its_window_and_the_next(
    nonces: NonceSource, clock: FakeClock
) -> None:
    first = nonces.current()
    assert nonces.valid(first)
    assert nonces.fresh(first)
    clock.advance(60)
    second = nonces.current()
    assert second != first
    assert nonces.valid(first)
    assert not nonces.fresh(first)
    assert nonces.fresh(second)
    clock.advance(60)
    assert not nonces.valid(first)
    assert nonces.valid(second)


def test_after_a_long_pause_only_the_recent_windows_count(
    nonces: NonceSource, clock: FakeClock
) -> None:
    old = nonces.current()
    clock.advance(600)
    assert not nonces.valid(old)
    previous = NonceSource(SECRET, window=60, clock=lambda: clock() - 60).current()
    assert nonces.valid(previous)


@pytest.mark.parametrize("nonce", ["", "garbage", "é" * 24, "x" * 5000])
def test_anything_else_is_refused(nonces: NonceSource, nonce: str) -> None:
    assert not nonces.valid(nonce)
    assert not nonces.fresh(nonce)


def test_one_secret_makes_the_same_nonces_in_every_process(clock: FakeClock) -> None:
    one = NonceSource(SECRET.decode(), window=60, clock=clock)
    other = NonceSource(SECRET, window=60, clock=clock)
    assert other.valid(one.current())
    assert not NonceSource(window=60, clock=clock).valid(one.current())


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"secret": b"short"}, ValueError),
        ({"secret": 5}, TypeError),
        ({"window": 1}, ValueError),
        ({"clock": "now"}, TypeError),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        NonceSource(**options)
