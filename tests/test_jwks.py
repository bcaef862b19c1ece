"""The key source: discovery, eager fetch, refresh, cooldown, single-flight, stale-if-error.

Every rule of DESIGN.md "Key handling rules" with exact fetch counts. Time is a fake clock
that tests move; the fake issuer serves in-process, except where a test says loopback.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from resource_guard import (
    AccessToken,
    InvalidTokenError,
    KeySourceStatus,
    KeysUnavailableError,
    TokenVerifier,
    UnknownKeyError,
    UnsupportedAlgorithmError,
)
from resource_guard._fetch import MAX_DOCUMENT_BYTES
from resource_guard._jwks import MAX_BACKOFF, RemoteKeySource
from resource_guard._keyset import KeySet
from resource_guard.testing import FakeClock, FakeIssuer, SigningKey
from tests.helpers import b64url
from tests.test_keyset import short_coordinate_key

pytestmark = pytest.mark.fake_issuer(clock=True, algorithm="ES256", jwks_max_age=None)
"""``fake`` runs on the test's ``clock`` and publishes keys without a max-age."""

AUDIENCE = "api://default"
TTL = 600.0  # the default refresh_interval: the keys' age when the JWKS sets no max-age
DUE = 0.8 * TTL  # keys are refreshed when they reach 80 % of their age
COOLDOWN = 30.0

Factory = Callable[..., TokenVerifier]


class Gate(httpx.AsyncBaseTransport):
    """Forwards to the fake issuer, records every URL, and can hold JWKS requests.

    ``linger``: seconds a held request takes to give up when cancelled (a slow close).
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._open = asyncio.Event()
        self._open.set()
        self.urls: list[str] = []
        self.held = 0
        self.linger = 0.0

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        if request.url.path.endswith("/jwks.json") and not self._open.is_set():
            self.held += 1
            try:
                await self._open.wait()
            except asyncio.CancelledError:
                await asyncio.sleep(self.linger)
                raise
            finally:
                self.held -= 1
        return await self._inner.handle_async_request(request)


@pytest.fixture
def gate(fake: FakeIssuer) -> Gate:
    return Gate(fake.transport())


@pytest.fixture
async def make(fake: FakeIssuer, clock: FakeClock, gate: Gate) -> AsyncIterator[Factory]:
    """Build verifiers on the fake issuer (through ``gate``); all closed at the end."""
    made: list[TokenVerifier] = []
    async with httpx.AsyncClient(transport=gate) as client:

        def factory(**options: Any) -> TokenVerifier:
            options = {"http_client": client, "clock": clock, **options}
            verifier = TokenVerifier(fake.issuer, AUDIENCE, **options)
            made.append(verifier)
            return verifier

        yield factory
        gate.open()
        for verifier in made:
            await asyncio.wait_for(verifier.aclose(), 5)


@pytest.fixture
async def verifier(make: Factory) -> TokenVerifier:
    """A started verifier with the default options."""
    verifier = make()
    await verifier.start()
    return verifier


async def settle() -> None:
    """Wait for the JWKS fetches running in the background (tasks the source names so)."""
    for _ in range(20):
        fetches = [t for t in asyncio.all_tasks() if t.get_name() == "resource-guard-jwks-fetch"]
        if not fetches:
            return
        await asyncio.wait(fetches, timeout=2)


async def until(condition: Callable[[], bool], timeout: float = 1.0) -> None:
    """Let the event loop run until ``condition`` holds (at most ``timeout`` seconds)."""
    for _ in range(int(timeout / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail("the condition never came true")


def refused_at_once(
    verifier: TokenVerifier, token: str
) -> InvalidTokenError | KeysUnavailableError:
    """Run verify() for one step: it must refuse without waiting on anything."""
    coroutine: Coroutine[Any, Any, AccessToken] = verifier.verify(token)
    try:
        coroutine.send(None)
    except (InvalidTokenError, KeysUnavailableError) as exc:
        return exc
    except StopIteration:
        pytest.fail("the token was accepted")
    coroutine.close()
    pytest.fail("verify() waited instead of refusing at once")


def random_kid() -> str:
    return secrets.token_urlsafe(12)


# -- eager fetch and fresh keys -------------------------------------------------------------


async def test_start_fetches_discovery_and_keys_eagerly(make: Factory, fake: FakeIssuer) -> None:
    verifier = make()
    assert fake.counts == {}
    await verifier.start()
    assert fake.counts == {"discovery": 1, "jwks": 1}
    await verifier.start()  # idempotent: keys are fresh
    await verifier.verify(fake.mint())
    assert fake.counts == {"discovery": 1, "jwks": 1}


async def test_without_start_the_first_requests_share_one_fetch(
    make: Factory, fake: FakeIssuer
) -> None:
    verifier = make()
    tokens = [fake.mint(subject=f"user-{index}") for index in range(100)]
    results = await asyncio.gather(*(verifier.verify(token) for token in tokens))
    assert [access.subject for access in results] == [f"user-{i}" for i in range(100)]
    assert fake.counts == {"discovery": 1, "jwks": 1}


async def test_a_background_task_refreshes_the_keys_when_due_without_any_request(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    """The refresher naps in real time (at least 1 s a turn), so this test takes two."""
    verifier = make(refresh_interval=1)
    await verifier.start()
    await asyncio.sleep(1.2)  # one turn went by, but the (fake) clock says not yet due
    assert fake.counts["jwks"] == 1
    clock.advance(1)
    await until(lambda: fake.counts["jwks"] == 2, timeout=2)
    assert fake.counts == {"discovery": 1, "jwks": 2}


async def test_an_unexpected_error_while_fetching_is_a_logged_failure(
    fake: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An odd client error never escapes to a request or kills refreshing (discovery
    fails first here: every fetch goes through the same hardened GET)."""
    inner = fake.transport()
    broken = [True]

    async def handler(request: httpx.Request) -> httpx.Response:
        if broken[0]:
            raise RuntimeError("a bug in some transport")
        return await inner.handle_async_request(request)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        TokenVerifier(fake.issuer, AUDIENCE, http_client=client, clock=clock) as verifier,
    ):
        reason = "unexpected RuntimeError: a bug in some transport"
        assert reason in (verifier.key_source.last_error or "")
        assert "JWKS fetch failed (discovery failed: " in caplog.text
        assert "Traceback" not in caplog.text
        with pytest.raises(KeysUnavailableError):
            await verifier.verify(fake.mint())
        broken[0] = False
        clock.advance(COOLDOWN)
        assert (await verifier.verify(fake.mint())).subject == "user-123"


def records_at_or_above(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= level]


async def test_a_transport_raising_attribute_error_is_an_ordinary_failed_fetch(
    fake: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: an event loop's transport once raised AttributeError when the IdP closed a
    connection during connect. It is a failed fetch like any other: one WARNING naming the
    reason, nothing at ERROR, the traceback at DEBUG only; stale keys serve, retries back off."""
    caplog.set_level(logging.DEBUG)
    inner = fake.transport()
    broken = [False]

    async def handler(request: httpx.Request) -> httpx.Response:
        if broken[0]:
            raise AttributeError("'NoneType' object has no attribute 'send'")
        return await inner.handle_async_request(request)

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        TokenVerifier(fake.issuer, AUDIENCE, http_client=client, clock=clock) as verifier,
    ):
        source = verifier.key_source
        token = fake.mint(expires_in=7200)
        broken[0] = True
        clock.advance(DUE + 1)
        caplog.clear()
        assert (await verifier.verify(token)).subject == "user-123"  # starts the refresh
        await settle()
        assert records_at_or_above(caplog, logging.ERROR) == []
        assert source.fetch_count == 2
        reason = "unexpected AttributeError: 'NoneType' object has no attribute 'send'"
        assert source.last_error == reason
        [warning] = records_at_or_above(caplog, logging.WARNING)
        assert f"JWKS fetch failed ({reason}); serving keys" in warning.getMessage()
        assert all(record.exc_info is None for record in records_at_or_above(caplog, logging.INFO))
        assert any(record.exc_info for record in caplog.records)  # the traceback, at DEBUG
        clock.advance(COOLDOWN - 1)  # inside the backoff: stale keys serve, no new fetch
        assert (await verifier.verify(fake.mint())).subject == "user-123"
        await settle()
        assert source.fetch_count == 2
    assert token not in caplog.text


async def test_a_bug_while_reading_the_jwks_is_a_failed_fetch_with_its_traceback_at_debug(
    verifier: TokenVerifier,
    fake: FakeIssuer,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(document: object, previous: KeySet | None = None) -> KeySet:
        raise TypeError("a bug")

    monkeypatch.setattr(KeySet, "from_jwks", broken)
    caplog.set_level(logging.DEBUG)
    assert await verifier.key_source.refresh() is False
    assert records_at_or_above(caplog, logging.ERROR) == []
    assert verifier.key_source.last_error == "unexpected TypeError: a bug"
    [warning] = records_at_or_above(caplog, logging.WARNING)
    assert warning.exc_info is None
    assert any(record.exc_info for record in caplog.records if record.levelno == logging.DEBUG)
    assert (await verifier.verify(fake.mint())).subject == "user-123"


async def test_no_fetch_per_request_while_keys_are_fresh(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    started = clock.now
    for second in range(0, int(DUE) - 1, 10):
        clock.now = started + second
        await verifier.verify(fake.mint(subject=f"user-{second}"))
        await settle()
    assert fake.counts["jwks"] == 1


async def test_an_unreachable_idp_at_start_is_logged_not_raised(
    make: Factory, fake: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fault("status", status=503)
    verifier = make()
    await verifier.start()
    assert "JWKS fetch failed" in caplog.text
    with pytest.raises(KeysUnavailableError) as caught:
        await verifier.verify(fake.mint())
    assert caught.value.retry_after >= 1
    assert fake.counts["jwks"] == 1


async def test_while_down_without_keys_requests_do_not_reach_the_idp(
    make: Factory, fake: FakeIssuer
) -> None:
    """Inside the backoff a request gets 503 at once; the IdP sees nothing more."""
    fake.fault("status", status=503)
    verifier = make()
    await verifier.start()
    for _ in range(100):
        with pytest.raises(KeysUnavailableError):
            await verifier.verify(fake.mint())
    assert fake.counts["jwks"] == 1


# -- refresh at age ---------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["new-token", "cached-token"])
async def test_keys_are_refreshed_at_their_age_without_blocking_the_request(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, gate: Gate, cached: bool
) -> None:
    token = fake.mint(expires_in=3600)
    await verifier.verify(token)
    clock.advance(DUE - 1)
    await verifier.verify(token if cached else fake.mint())
    await settle()
    assert fake.counts["jwks"] == 1
    gate.close()
    clock.advance(2)
    access = await asyncio.wait_for(verifier.verify(token if cached else fake.mint()), 1)
    assert access.subject == "user-123"
    await until(lambda: gate.held == 1)  # the refresh is running, held at the IdP
    gate.open()
    await settle()
    assert fake.counts["jwks"] == 2
    clock.advance(DUE - 1)
    await verifier.verify(fake.mint())
    await settle()
    assert fake.counts["jwks"] == 2


@pytest.mark.parametrize("cached", [False, True], ids=["new-token", "cached-token"])
async def test_keys_nobody_refreshed_past_their_age_are_refreshed_before_use(
    make: Factory, fake: FakeIssuer, clock: FakeClock, cached: bool
) -> None:
    """After an idle spell with no refresh (start() never ran, or the process slept), keys
    past their age are checked first: a key the IdP dropped meanwhile is refused at once."""
    verifier = make()  # never started: no background refresher
    old = fake.current_key
    token = fake.mint(expires_in=7200)
    await verifier.verify(token)
    fake.rotate_keys()
    fake.remove_key(old.kid)
    clock.advance(TTL + 60)
    with pytest.raises(UnknownKeyError):
        await verifier.verify(token if cached else fake.mint(key=old, expires_in=7200))
    assert fake.counts["jwks"] == 2


async def test_keys_past_their_age_serve_on_when_that_refresh_fails(
    make: Factory, fake: FakeIssuer, clock: FakeClock, gate: Gate
) -> None:
    verifier = make()
    token = fake.mint(expires_in=7200)
    await verifier.verify(token)
    fake.fault("status", status=503)
    clock.advance(TTL + 60)
    assert (await verifier.verify(token)).subject == "user-123"
    assert fake.counts["jwks"] == 2
    gate.close()  # from now on no request may wait on the IdP
    for _ in range(3):
        await asyncio.wait_for(verifier.verify(fake.mint()), 1)
    assert fake.counts["jwks"] == 2


async def assert_refreshed_just_after(
    due: float, verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    """Traffic keeps the first JWKS until ``due`` seconds after start, then refreshes it."""
    clock.advance(due - 1)
    await verifier.verify(fake.mint())
    await settle()
    assert fake.counts["jwks"] == 1
    clock.advance(2)
    await verifier.verify(fake.mint())
    await settle()
    assert fake.counts["jwks"] == 2


@pytest.mark.parametrize(
    ("max_age", "ttl"),
    [(120, 120.0), (0, 60.0), (5, 60.0), (100_000, TTL), (None, TTL)],
    ids=["honoured", "zero-raised-to-floor", "small-raised-to-floor", "large-capped", "none"],
)
async def test_cache_control_max_age_is_honoured_within_bounds(
    make: Factory, fake: FakeIssuer, clock: FakeClock, max_age: int | None, ttl: float
) -> None:
    fake.jwks_max_age = max_age
    verifier = make(max_stale=0)
    await verifier.start()
    await assert_refreshed_just_after(0.8 * ttl, verifier, fake, clock)


async def test_the_age_floor_is_the_cooldown_when_it_is_longer(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    fake.jwks_max_age = 1
    verifier = make(cooldown=200)
    await verifier.start()
    await assert_refreshed_just_after(0.8 * 200, verifier, fake, clock)


async def test_discovery_happens_once(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    for _ in range(3):
        clock.advance(DUE + 1)
        await verifier.verify(fake.mint())
        await settle()
    assert fake.counts == {"discovery": 1, "jwks": 4}


# -- unknown kid, cooldown, single-flight ---------------------------------------------------


async def test_an_unknown_kid_refetches_once_then_the_new_key_verifies(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    clock.advance(COOLDOWN + 1)
    new = fake.rotate_keys()
    assert (await verifier.verify(fake.mint(subject="a"))).key_id == new.kid
    assert fake.counts["jwks"] == 2
    assert (await verifier.verify(fake.mint(subject="b"))).key_id == new.kid
    assert fake.counts["jwks"] == 2


async def test_a_new_kid_inside_the_cooldown_is_refused_until_it_passes(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    """The start-up fetch starts a cooldown too; when it ends the new key is fetched."""
    fake.rotate_keys()
    clock.advance(COOLDOWN - 1)
    assert isinstance(refused_at_once(verifier, fake.mint()), UnknownKeyError)
    assert fake.counts["jwks"] == 1
    clock.advance(2)
    await verifier.verify(fake.mint())
    assert fake.counts["jwks"] == 2


async def test_concurrent_requests_for_a_new_kid_share_one_fetch(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, gate: Gate
) -> None:
    clock.advance(COOLDOWN + 1)
    new = fake.rotate_keys()
    gate.close()
    tasks = [
        asyncio.create_task(verifier.verify(fake.mint(subject=f"u{index}"))) for index in range(100)
    ]
    await until(lambda: gate.held == 1)
    await asyncio.sleep(0.01)
    assert gate.held == 1
    gate.open()
    results = await asyncio.gather(*tasks)
    assert {access.key_id for access in results} == {new.kid}
    assert len({access.subject for access in results}) == 100
    assert fake.counts["jwks"] == 2


async def test_a_thousand_random_kids_cost_at_most_one_fetch_per_cooldown(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    clock.advance(COOLDOWN + 1)
    tokens = [fake.mint(kid=random_kid()) for _ in range(1000)]
    results = await asyncio.gather(
        *(verifier.verify(token) for token in tokens), return_exceptions=True
    )
    assert all(isinstance(result, UnknownKeyError) for result in results)
    assert fake.counts["jwks"] == 2
    for token in tokens:  # the same cooldown: refused at once, no fetch, no waiting
        assert isinstance(refused_at_once(verifier, token), UnknownKeyError)
    clock.advance(COOLDOWN - 1)
    assert isinstance(refused_at_once(verifier, fake.mint(kid=random_kid())), UnknownKeyError)
    assert fake.counts["jwks"] == 2


async def test_one_more_fetch_is_allowed_after_the_cooldown(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    clock.advance(COOLDOWN + 1)
    with pytest.raises(UnknownKeyError):
        await verifier.verify(fake.mint(kid=random_kid()))
    assert fake.counts["jwks"] == 2
    clock.advance(COOLDOWN + 1)
    with pytest.raises(UnknownKeyError):
        await verifier.verify(fake.mint(kid=random_kid()))
    assert fake.counts["jwks"] == 3
    refused_at_once(verifier, fake.mint(kid=random_kid()))
    assert fake.counts["jwks"] == 3


async def test_failed_fetches_count_toward_the_cooldown(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock
) -> None:
    clock.advance(COOLDOWN + 1)
    fake.fault("status", status=503, times=1)
    with pytest.raises(UnknownKeyError):
        await verifier.verify(fake.mint(kid=random_kid()))
    assert fake.counts["jwks"] == 2
    fake.rotate_keys()  # the IdP is back with a new key, but the cooldown holds
    clock.advance(COOLDOWN - 1)
    assert isinstance(refused_at_once(verifier, fake.mint()), UnknownKeyError)
    assert fake.counts["jwks"] == 2
    clock.advance(COOLDOWN)  # past the cooldown and the jittered backoff (<= 1.5 x)
    await verifier.verify(fake.mint())
    assert fake.counts["jwks"] == 3


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, gate: Gate
) -> None:
    clock.advance(COOLDOWN + 1)
    fake.rotate_keys()
    gate.close()
    first = asyncio.create_task(verifier.verify(fake.mint(subject="first")))
    second = asyncio.create_task(verifier.verify(fake.mint(subject="second")))
    await until(lambda: gate.held == 1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.open()
    assert (await asyncio.wait_for(second, 2)).subject == "second"
    assert fake.counts["jwks"] == 2


async def test_the_fetch_completes_when_every_caller_is_cancelled(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, gate: Gate
) -> None:
    clock.advance(COOLDOWN + 1)
    new = fake.rotate_keys()
    gate.close()
    callers = [asyncio.create_task(verifier.verify(fake.mint())) for _ in range(3)]
    await until(lambda: gate.held == 1)
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    gate.open()
    await settle()
    assert fake.counts["jwks"] == 2
    assert (await verifier.verify(fake.mint())).key_id == new.kid
    assert fake.counts["jwks"] == 2


# -- stale-if-error, backoff, recovery ------------------------------------------------------


async def test_cached_keys_serve_while_the_idp_is_down_until_age_plus_max_stale(
    make: Factory, fake: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = make(max_stale=1000)
    await verifier.start()
    started = clock.now
    fake.fault("status", status=503)
    cached = fake.mint(expires_in=7200)
    await verifier.verify(cached)
    for at in (DUE + 1, TTL + 1, TTL + 500, TTL + 999):
        clock.now = started + at
        assert (await verifier.verify(fake.mint())).subject == "user-123"
        assert (await verifier.verify(cached)).subject == "user-123"
        await settle()
    assert fake.counts["jwks"] == 5  # one attempt per visit, each past the last backoff
    assert "serving keys fetched" in caplog.text
    assert cached not in caplog.text
    clock.now = started + TTL + 1001
    for token in (fake.mint(), cached):
        with pytest.raises(KeysUnavailableError) as caught:
            await verifier.verify(token)
        assert caught.value.retry_after >= 1
        assert "503" in caught.value.message
    assert fake.counts["jwks"] == 5  # inside the backoff: refused without a fetch


async def test_max_stale_zero_fails_closed_at_the_keys_age(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    verifier = make(max_stale=0)
    await verifier.start()
    started = clock.now
    fake.fault("status", status=503)
    cached = fake.mint(expires_in=7200)
    await verifier.verify(cached)
    clock.now = started + TTL - 1
    await verifier.verify(cached)
    await verifier.verify(fake.mint())
    clock.now = started + TTL + 1
    for token in (cached, fake.mint()):
        with pytest.raises(KeysUnavailableError):
            await verifier.verify(token)


async def test_keys_come_back_without_a_restart_when_the_idp_recovers(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    verifier = make(max_stale=0)
    fake.fault("status", status=503)
    await verifier.start()
    with pytest.raises(KeysUnavailableError) as caught:
        await verifier.verify(fake.mint())
    fetches = fake.counts["jwks"]
    fake.clear_faults()
    clock.advance(caught.value.retry_after)
    assert (await verifier.verify(fake.mint())).subject == "user-123"
    assert fake.counts["jwks"] == fetches + 1


def source_for(
    fake: FakeIssuer, client: httpx.AsyncClient, clock: FakeClock, jitter: float, **options: Any
) -> RemoteKeySource:
    settings: dict[str, Any] = {
        "issuer": fake.issuer,
        "jwks_uri": fake.jwks_uri,
        "refresh_interval": TTL,
        "cooldown": 10.0,
        "max_stale": 0.0,
        "timeout": 5.0,
        "http_client": client,
        "allow_insecure_http": False,
        "clock": clock,
        "jitter": lambda: jitter,
        **options,
    }
    return RemoteKeySource(**settings)


async def assert_next_background_refresh_after(
    delay: float, source: RemoteKeySource, fake: FakeIssuer, clock: FakeClock
) -> None:
    """Requests with a known kid (stale keys serve) start no refresh until ``delay`` has
    passed, then one (the background refresh of a dead IdP is paced by the backoff)."""
    kid = fake.current_key.kid
    fetches = fake.counts["jwks"]
    clock.advance(delay - 1)
    assert (await source.get_key(kid, "ES256")).kid == kid
    await settle()
    assert fake.counts["jwks"] == fetches
    clock.advance(1)
    assert (await source.get_key(kid, "ES256")).kid == kid
    await settle()
    assert fake.counts["jwks"] == fetches + 1


@pytest.mark.parametrize(
    ("jitter", "delays"),
    [
        (0.0, [10, 20, 40, 80, 160, 300, 300]),
        (0.5, [13, 25, 50, 100, 200, 375, 375]),
        (0.999, [15, 30, 60, 120, 240, 450, 450]),
    ],
)
async def test_background_refreshes_back_off_exponentially_with_jitter(
    fake: FakeIssuer, clock: FakeClock, jitter: float, delays: list[int]
) -> None:
    async with fake.async_client() as client:
        source = source_for(fake, client, clock, jitter, max_stale=86_400.0)
        assert await source.refresh()
        fake.fault("status", status=503)
        clock.advance(DUE)
        source.refresh_if_due(clock.now)  # due: the first background attempt fails
        await settle()
        assert fake.counts["jwks"] == 2
        for delay in delays:
            await assert_next_background_refresh_after(delay, source, fake, clock)
        await source.aclose()
    assert fake.counts["jwks"] == len(delays) + 2


async def test_a_long_outage_keeps_the_backoff_bounded(
    fake: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """More than a thousand failures in a row must not overflow the backoff arithmetic."""
    caplog.set_level(logging.CRITICAL, logger="resource_guard.jwks")
    async with fake.async_client() as client:
        source = source_for(fake, client, clock, 0.0, cooldown=0.0, max_stale=86_400.0)
        assert await source.refresh()
        fake.fault("status", status=503)
        clock.advance(DUE)
        for _ in range(1030):  # 2.0 ** 1024 is the first power of two a float cannot hold
            assert await source.refresh() is False
        await assert_next_background_refresh_after(MAX_BACKOFF, source, fake, clock)
        await source.aclose()
    assert fake.counts["jwks"] == 1032


async def test_without_keys_the_first_request_one_cooldown_after_recovery_gets_keys(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    """Issue 11: the backoff paces the background refresh only. Requests waiting for keys
    may cause one fetch per cooldown, so service returns within one cooldown of the IdP's
    recovery, not at the next background retry (by then up to 5 minutes away)."""
    verifier = make(max_stale=0)
    token = fake.mint(expires_in=3600)
    fake.fault("status", status=503)
    await verifier.start()
    retry_after: list[float] = []
    for failures in range(2, 7):  # the background backoff grows to 30 * 2 ** 5 s
        with pytest.raises(KeysUnavailableError) as caught:
            await verifier.verify(token)  # inside the cooldown: refused at once, no fetch
        retry_after.append(caught.value.retry_after)
        assert fake.counts["jwks"] == failures - 1
        clock.advance(caught.value.retry_after)
        with pytest.raises(KeysUnavailableError):
            await verifier.verify(token)  # one fetch, which fails
        assert fake.counts["jwks"] == failures
    fake.clear_faults()  # the IdP is back
    clock.advance(COOLDOWN - 1)
    assert isinstance(refused_at_once(verifier, token), KeysUnavailableError)
    assert fake.counts["jwks"] == 6
    clock.advance(1)
    assert (await verifier.verify(token)).subject == "user-123"
    assert fake.counts["jwks"] == 7
    assert retry_after == [COOLDOWN] * 5  # Retry-After: when a request may fetch again


async def test_a_new_kid_published_as_the_idp_recovers_is_accepted_within_one_cooldown(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    """Stale keys serve through an outage while background refreshes back off; a new key
    the IdP publishes as it returns is fetched for the first token that names it, one
    cooldown after the last attempt, not when the backoff ends."""
    verifier = make()
    await verifier.start()
    known = fake.mint(expires_in=7200)
    fake.fault("status", status=503)
    clock.advance(DUE + 1)
    for failures in range(1, 6):  # background refreshes, each once the backoff allows
        assert (await verifier.verify(known)).subject == "user-123"
        await settle()
        assert fake.counts["jwks"] == 1 + failures
        clock.advance(1.5 * MAX_BACKOFF + 1)
    clock.advance(-(1.5 * MAX_BACKOFF + 1) + COOLDOWN + 1)  # one cooldown after the last try
    assert (await verifier.verify(known)).subject == "user-123"
    await settle()
    assert fake.counts["jwks"] == 6  # the backoff (>= 480 s now) holds the background back
    fake.clear_faults()
    new = fake.rotate_keys()
    assert (await verifier.verify(fake.mint())).key_id == new.kid
    assert fake.counts["jwks"] == 7
    assert verifier.key_source.last_error is None


@pytest.mark.parametrize("cached", [False, True], ids=["no-keys", "cached-keys-random-kids"])
async def test_during_an_outage_waiting_requests_cost_one_fetch_per_cooldown(
    make: Factory, fake: FakeIssuer, clock: FakeClock, cached: bool
) -> None:
    verifier = make()
    if not cached:
        fake.fault("status", status=503)
    await verifier.start()
    fake.fault("status", status=503)
    expected = UnknownKeyError if cached else KeysUnavailableError
    for step in range(1, 7):
        clock.advance(COOLDOWN / 2)
        tokens = [fake.mint(kid=random_kid()) if cached else fake.mint() for _ in range(200)]
        results = await asyncio.gather(
            *(verifier.verify(token) for token in tokens), return_exceptions=True
        )
        assert all(isinstance(result, expected) for result in results)
        assert fake.counts["jwks"] == 1 + step // 2


# -- revocation, bad keys, the no-kid rule ---------------------------------------------------


async def test_a_key_dropped_by_a_refresh_is_revoked_at_once(
    make: Factory, fake: FakeIssuer, clock: FakeClock
) -> None:
    verifier = make()
    old = fake.current_key
    token = fake.mint(expires_in=3600)
    await verifier.start()
    await verifier.verify(token)  # now in the verified-token cache
    kept = fake.add_key("ES256")
    kept_token = fake.mint(key=kept, expires_in=3600)
    clock.advance(COOLDOWN + 1)
    kept_access = await verifier.verify(kept_token)  # cached too
    new = fake.rotate_keys()
    fake.remove_key(old.kid)
    clock.advance(DUE + 1)
    await verifier.verify(token)  # still published as far as we know: starts the refresh
    await settle()
    assert fake.counts["jwks"] == 3
    with pytest.raises(UnknownKeyError):
        await verifier.verify(token)
    with pytest.raises(UnknownKeyError):
        await verifier.verify(fake.mint(key=old, subject="other"))
    assert await verifier.verify(kept_token) is kept_access  # a kept key keeps its cache
    assert (await verifier.verify(fake.mint())).key_id == new.kid
    assert fake.counts["jwks"] == 3


BadKey = tuple[object, SigningKey | None]
"""A JWK to publish, and the private key that signs tokens for it (if there is one)."""


def _variant(fake: FakeIssuer, kid: str, **changes: Any) -> BadKey:
    key = fake.generate_key("ES256", kid)
    return {**key.public_jwk(), **changes}, key


def _weak_rsa(fake: FakeIssuer) -> BadKey:
    key = fake.generate_key("RS256", "weak-rsa", key_size=1024)
    return key.public_jwk(), key


def _private(fake: FakeIssuer) -> BadKey:
    key = fake.generate_key("ES256", "private")
    return key.private_jwk(), key


def _off_curve(fake: FakeIssuer) -> BadKey:
    jwk = fake.generate_key("ES256", "off-curve").public_jwk()
    return {**jwk, "y": jwk["x"]}, None


BAD_KEYS: dict[str, Callable[[FakeIssuer], BadKey]] = {
    "weak-rsa-1024": _weak_rsa,
    "private-key": _private,
    "use-enc": lambda fake: _variant(fake, "enc", use="enc"),
    "use-enc-same-kid": lambda fake: _variant(fake, fake.current_key.kid, use="enc"),
    "key-ops-without-verify": lambda fake: _variant(fake, "ops", key_ops=["sign"]),
    "key-ops-not-a-list": lambda fake: _variant(fake, "ops-text", key_ops="verify"),
    "alg-mismatch": lambda fake: _variant(fake, "mismatch", alg="ES384"),
    "alg-for-other-kty": lambda fake: _variant(fake, "kty-mismatch", alg="RS256"),
    "oct": lambda fake: ({"kty": "oct", "kid": "oct", "alg": "HS256", "k": "c2VjcmV0"}, None),
    "unknown-kty": lambda fake: ({"kty": "PQ", "kid": "pq", "x": "AAAA"}, None),
    "no-kty": lambda fake: ({"kid": "no-kty", "x": "AAAA"}, None),
    "off-curve": _off_curve,
    "bad-base64": lambda fake: ({"kty": "RSA", "kid": "b64", "n": "!!", "e": "AQAB"}, None),
    "string": lambda fake: ("garbage", None),
    "number": lambda fake: (42, None),
    "null": lambda fake: (None, None),
    "list": lambda fake: ([fake.current_key.public_jwk()], None),
}


@pytest.mark.parametrize("name", list(BAD_KEYS))
async def test_one_bad_key_never_spoils_the_good_ones(
    make: Factory, fake: FakeIssuer, name: str
) -> None:
    jwk, signer = BAD_KEYS[name](fake)
    fake.publish_raw_jwk(jwk)
    verifier = make()
    await verifier.start()
    assert (await verifier.verify(fake.mint())).key_id == fake.current_key.kid
    if signer is not None:  # a real signature by the bad key's private half
        with pytest.raises(InvalidTokenError):
            await verifier.verify(fake.mint(key=signer))
    assert fake.counts["jwks"] == 1


async def test_an_hmac_token_for_a_published_oct_key_is_refused(
    make: Factory, fake: FakeIssuer
) -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    fake.publish_raw_jwk({"kty": "oct", "kid": "oct", "k": b64url(secret)})
    verifier = make()
    await verifier.start()
    with pytest.raises(UnsupportedAlgorithmError):
        await verifier.verify(fake.mint(algorithm="HS256", key=secret, kid="oct"))


@pytest.mark.parametrize(
    "spoil",
    ["only-bad-keys", "empty-keys", "no_keys", "not_object", "garbage"],
)
async def test_a_jwks_without_usable_keys_keeps_the_previous_keys(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, spoil: str
) -> None:
    old = fake.current_key
    token = fake.mint(expires_in=3600)
    if spoil.endswith("-keys"):
        fake.remove_key(old.kid)
        if spoil == "only-bad-keys":
            fake.publish_raw_jwk({**old.public_jwk(), "use": "enc"})
            fake.publish_raw_jwk({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"})
    else:
        fake.fault(spoil)
    clock.advance(DUE + 1)
    await verifier.verify(token)
    await settle()
    assert fake.counts["jwks"] == 2
    assert verifier.key_source.last_error is not None
    assert (await verifier.verify(token)).key_id == old.kid
    assert (await verifier.verify(fake.mint(key=old, subject="fresh"))).key_id == old.kid


async def test_a_token_without_kid_is_accepted_when_exactly_one_key_fits(
    make: Factory, fake: FakeIssuer
) -> None:
    fake.add_key("EdDSA")  # another key, but not one for ES256
    verifier = make()
    await verifier.start()
    access = await verifier.verify(fake.mint(kid=None))
    assert access.key_id == fake.current_key.kid


async def test_a_token_without_kid_is_refused_when_several_keys_fit(
    make: Factory, fake: FakeIssuer
) -> None:
    fake.add_key("ES256")
    verifier = make()
    await verifier.start()
    with pytest.raises(UnknownKeyError, match="2 keys fit"):
        await verifier.verify(fake.mint(kid=None))


@pytest.mark.parametrize("fit", ["several-keys-fit", "no-key-fits"])
async def test_a_token_without_kid_never_triggers_a_refetch(
    make: Factory, fake: FakeIssuer, clock: FakeClock, fit: str
) -> None:
    """Issue 11: only a well-formed token naming an unknown kid may cost the IdP a fetch. A
    kid-less token whose key cannot be chosen is refused at once while usable keys are cached
    (here even a key the IdP published meanwhile for its alg is not fetched for it)."""
    if fit == "several-keys-fit":
        fake.add_key("ES256")
    verifier = make()
    await verifier.start()
    clock.advance(COOLDOWN + 1)  # past the cooldown: an unknown kid could refetch now
    token = (
        fake.mint(kid=None) if fit == "several-keys-fit" else fake.mint(algorithm="ES384", kid=None)
    )
    for _ in range(3):
        assert isinstance(refused_at_once(verifier, token), UnknownKeyError)
    assert fake.counts["jwks"] == 1


async def test_a_token_without_kid_fetches_keys_when_none_are_cached(
    make: Factory, fake: FakeIssuer
) -> None:
    verifier = make()
    assert (await verifier.verify(fake.mint(kid=None))).key_id == fake.current_key.kid
    assert fake.counts["jwks"] == 1


# -- interop: the same key, spelled as other libraries spell it ---------------------------


def decoded(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
async def test_a_jwk_with_a_short_ec_coordinate_verifies_end_to_end(
    make: Factory, fake: FakeIssuer, alg: str
) -> None:
    """Issue 11: authlib drops leading zero octets of x and y (1 key in 128 for P-256 and
    P-384, 3 in 4 for P-521); the JWK is the same key and must verify its tokens."""
    key, jwk = short_coordinate_key(alg, f"short-{alg}")
    fake.publish_raw_jwk(jwk)
    verifier = make()
    await verifier.start()
    assert (await verifier.verify(fake.mint(key=key))).key_id == key.kid
    assert fake.counts["jwks"] == 1


async def test_a_jwk_with_an_ec_coordinate_longer_than_the_curve_is_skipped(
    make: Factory, fake: FakeIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    key = fake.generate_key("ES256", "too-long")
    jwk = key.public_jwk()
    fake.publish_raw_jwk({**jwk, "x": b64url(b"\0" + decoded(jwk["x"]))})
    verifier = make()
    await verifier.start()
    assert "coordinate longer than the curve size (1 key: kid='too-long')" in caplog.text
    with pytest.raises(UnknownKeyError):
        await verifier.verify(fake.mint(key=key))
    assert (await verifier.verify(fake.mint())).key_id == fake.current_key.kid


async def test_rsa_members_with_a_leading_zero_octet_verify_end_to_end(
    make: Factory, fake: FakeIssuer
) -> None:
    key = fake.generate_key("RS256", "rsa-zero")
    jwk = key.public_jwk()
    padded = {name: b64url(b"\0" + decoded(jwk[name])) for name in ("n", "e")}
    fake.publish_raw_jwk({**jwk, **padded})
    verifier = make()
    await verifier.start()
    assert (await verifier.verify(fake.mint(key=key))).key_id == "rsa-zero"


# -- a junk-filled JWKS -----------------------------------------------------------------


async def test_a_junk_filled_jwks_costs_one_log_line_per_fetch(
    fake: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: ~127,000 entries like `1` around one real key, under the size cap."""
    key = fake.current_key
    body = json.dumps({"keys": [key.public_jwk(), *[1] * 127_000]}, separators=(",", ":"))
    assert len(body) < MAX_DOCUMENT_BYTES
    served: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        served.append(request.url.path)
        return httpx.Response(200, content=body.encode())

    caplog.set_level(logging.DEBUG, logger="resource_guard.keys")
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        TokenVerifier(
            fake.issuer, AUDIENCE, jwks_uri=fake.jwks_uri, http_client=client, clock=clock
        ) as verifier,
    ):
        assert (await verifier.verify(fake.mint())).key_id == key.kid
        assert await verifier.key_source.refresh()
    assert served == ["/jwks.json", "/jwks.json"]
    records = [record for record in caplog.records if record.name == "resource_guard.keys"]
    assert [record.levelname for record in records] == ["WARNING", "DEBUG"]


# -- discovery ---------------------------------------------------------------------------


async def test_discovery_falls_back_to_rfc8414_when_oidc_is_missing(
    clock: FakeClock,
) -> None:
    fake = FakeIssuer("https://idp.example.test/oauth2/default", clock=clock, algorithm="ES256")
    fake.fault("status", endpoint="discovery", status=404)
    async with fake.async_client() as client:
        verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=client, clock=clock)
        async with verifier:
            assert (await verifier.verify(fake.mint())).issuer == fake.issuer
    assert fake.counts == {"discovery": 1, "oauth_metadata": 1, "jwks": 1}


@pytest.mark.parametrize(
    "named",
    [
        "https://evil.example.test",
        "https://issuer.example.test/",
        "HTTPS://ISSUER.EXAMPLE.TEST",
        "https://issuer.example.test/other",
    ],
)
async def test_a_discovery_document_for_another_issuer_is_refused(
    make: Factory, fake: FakeIssuer, named: str
) -> None:
    """Mix-up defence: the document must name the configured issuer exactly."""
    fake.metadata_overrides["issuer"] = named
    verifier = make()
    await verifier.start()
    with pytest.raises(KeysUnavailableError):
        await verifier.verify(fake.mint())
    assert "names another issuer" in (verifier.key_source.last_error or "")
    assert fake.counts == {"discovery": 1}


async def test_rfc8414_metadata_for_another_issuer_is_refused(
    make: Factory, fake: FakeIssuer
) -> None:
    fake.fault("status", endpoint="discovery", status=404)
    fake.metadata_overrides["issuer"] = "https://evil.example.test"
    verifier = make()
    await verifier.start()
    assert "names another issuer" in (verifier.key_source.last_error or "")
    assert fake.counts == {"discovery": 1, "oauth_metadata": 1}


async def test_discovery_failing_everywhere_leaves_no_keys(make: Factory, fake: FakeIssuer) -> None:
    fake.fault("status", endpoint="discovery", status=500)
    fake.fault("garbage", endpoint="oauth_metadata")
    verifier = make()
    await verifier.start()
    with pytest.raises(KeysUnavailableError, match="discovery failed"):
        await verifier.verify(fake.mint())
    assert fake.counts == {"discovery": 1, "oauth_metadata": 1}


@pytest.mark.parametrize(
    ("jwks_uri", "reason"),
    [
        ("http://issuer.example.test/jwks.json", "must use https"),
        ("http://10.1.2.3/jwks.json", "must use https"),
        ("https://user:pw@issuer.example.test/jwks.json", "credentials"),
        ("/jwks.json", "absolute"),
        ("https://issuer.example.test:abc/jwks.json", "not a valid URL"),
        ("https://issuer.example.test/jwks\r\n.json", "not a valid URL"),
        (None, "no 'jwks_uri'"),
        (["https://issuer.example.test/jwks.json"], "no 'jwks_uri'"),
    ],
)
async def test_a_bad_discovered_jwks_uri_is_refused(
    make: Factory,
    fake: FakeIssuer,
    gate: Gate,
    caplog: pytest.LogCaptureFixture,
    jwks_uri: object,
    reason: str,
) -> None:
    fake.metadata_overrides["jwks_uri"] = jwks_uri
    verifier = make()
    await verifier.start()
    assert reason in (verifier.key_source.last_error or "")
    assert gate.urls == [fake.discovery_url]
    assert "unexpected" not in caplog.text


async def test_a_discovered_loopback_http_jwks_uri_is_allowed(
    make: Factory, fake: FakeIssuer, gate: Gate
) -> None:
    fake.metadata_overrides["jwks_uri"] = "http://127.0.0.1:9/jwks.json"
    verifier = make()
    await verifier.start()
    assert gate.urls == [fake.discovery_url, "http://127.0.0.1:9/jwks.json"]


async def test_a_configured_jwks_uri_skips_discovery(
    make: Factory, fake: FakeIssuer, gate: Gate
) -> None:
    verifier = make(jwks_uri=fake.jwks_uri)
    await verifier.start()
    await verifier.verify(fake.mint())
    assert fake.counts == {"jwks": 1}
    assert gate.urls == [fake.jwks_uri]


async def test_token_endpoint_reuses_the_discovery_document(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    assert await verifier.token_endpoint() == fake.token_endpoint
    assert fake.counts["discovery"] == 1


async def test_token_endpoint_is_discovered_once_when_jwks_uri_is_configured(
    make: Factory, fake: FakeIssuer
) -> None:
    verifier = make(jwks_uri=fake.jwks_uri)
    fake.fault("status", endpoint="discovery", status=500, times=1)
    fake.fault("status", endpoint="oauth_metadata", status=500, times=1)
    assert await verifier.token_endpoint() is None
    assert await verifier.token_endpoint() == fake.token_endpoint
    assert await verifier.token_endpoint() == fake.token_endpoint
    assert fake.counts == {"discovery": 2, "oauth_metadata": 1}


@pytest.mark.parametrize(
    "endpoint",
    [
        pytest.param("http://idp.example.com/token", id="plain-http-not-loopback"),
        pytest.param("https://user:pw@idp.example.com/token", id="credentials"),
        pytest.param(42, id="not-a-string"),
    ],
)
async def test_a_discovered_token_endpoint_is_checked_like_a_configured_url(
    make: Factory, fake: FakeIssuer, endpoint: object
) -> None:
    """The OpenAPI token URL comes from the verifier: an IdP's plain-http or credential-
    carrying endpoint is not handed on to clients."""
    fake.metadata_overrides["token_endpoint"] = endpoint
    assert await make().token_endpoint() is None


# -- lifecycle ----------------------------------------------------------------------------


async def test_aclose_leaves_no_pending_tasks(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, gate: Gate
) -> None:
    gate.close()
    clock.advance(DUE + 1)
    await verifier.verify(fake.mint())  # starts a refresh, held at the IdP
    await until(lambda: gate.held == 1)
    current = asyncio.current_task()
    assert len(asyncio.all_tasks() - {current}) == 2  # the refresher and the fetch
    closing = asyncio.create_task(verifier.aclose())
    await asyncio.wait({closing}, timeout=2)
    assert closing.done()
    assert asyncio.all_tasks() == {current}
    await asyncio.wait_for(verifier.aclose(), 2)  # idempotent


async def test_aclose_lets_its_own_cancellation_through(
    verifier: TokenVerifier, fake: FakeIssuer, clock: FakeClock, gate: Gate
) -> None:
    """A shutdown deadline can cut aclose() short even if a fetch is slow to stop."""
    gate.close()
    gate.linger = 0.4
    clock.advance(DUE + 1)
    await verifier.verify(fake.mint())
    await until(lambda: gate.held == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(verifier.aclose(), 0.05)
    assert loop.time() - started < 0.3
    await settle()


def test_one_verifier_serves_two_event_loops_in_turn(fake: FakeIssuer, clock: FakeClock) -> None:
    """asyncio.run twice (as test sessions do): tasks and connections start afresh."""
    with fake.serve():
        verifier = TokenVerifier(fake.issuer, AUDIENCE, clock=clock)

        async def first() -> None:
            await verifier.start()
            await verifier.verify(fake.mint(subject="first"))

        async def second() -> None:
            assert (await verifier.verify(fake.mint(subject="second"))).subject == "second"
            clock.advance(COOLDOWN + 1)
            new = fake.rotate_keys()
            assert (await verifier.verify(fake.mint())).key_id == new.kid
            await verifier.aclose()
            assert asyncio.all_tasks() == {asyncio.current_task()}

        asyncio.run(first())
        asyncio.run(second())
    gc.collect()  # a connection left behind on the first loop would warn here
    assert fake.counts == {"discovery": 1, "jwks": 2}


def test_aclose_on_a_later_event_loop_works(fake: FakeIssuer, clock: FakeClock) -> None:
    with fake.serve():
        verifier = TokenVerifier(fake.issuer, AUDIENCE, clock=clock)

        async def use() -> None:
            await verifier.start()
            await verifier.verify(fake.mint())

        asyncio.run(use())
        asyncio.run(verifier.aclose())


# -- end to end over loopback HTTP -------------------------------------------------------------


async def test_end_to_end_over_loopback_http(fake: FakeIssuer, clock: FakeClock) -> None:
    with fake.serve():
        assert fake.issuer.startswith("http://127.0.0.1:")
        async with TokenVerifier(fake.issuer, AUDIENCE, clock=clock) as verifier:
            assert fake.counts == {"discovery": 1, "jwks": 1}
            assert (await verifier.verify(fake.mint())).issuer == fake.issuer
            clock.advance(COOLDOWN + 1)
            new = fake.rotate_keys()
            assert (await verifier.verify(fake.mint())).key_id == new.kid
            with pytest.raises(UnknownKeyError):
                await verifier.verify(fake.mint(kid=random_kid()))
            assert fake.counts == {"discovery": 1, "jwks": 2}
        assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("gzip_bomb", "inflates to more than"),
        ("oversized", "larger than"),
        ("redirect", "redirect (not followed) 302"),
        ("garbage", "not JSON"),
        ("not_object", "not a JSON object"),
        ("no_keys", "'keys' list"),
        ("status", "HTTP status 503"),
    ],
)
async def test_a_misbehaving_jwks_endpoint_over_loopback_yields_no_keys(
    fake: FakeIssuer, clock: FakeClock, kind: str, reason: str
) -> None:
    fake.fault(kind)
    with fake.serve():
        async with TokenVerifier(fake.issuer, AUDIENCE, clock=clock, timeout=2) as verifier:
            with pytest.raises(KeysUnavailableError) as caught:
                await verifier.verify(fake.mint())
    assert reason in caught.value.message
    assert fake.counts == {"discovery": 1, "jwks": 1}  # a redirect target is never asked


# -- status snapshot ------------------------------------------------------------------------


async def test_status_before_any_fetch_reports_nothing_usable(
    fake: FakeIssuer, clock: FakeClock
) -> None:
    async with fake.async_client() as client:
        status = source_for(fake, client, clock, 0.0).status()
    assert status == KeySourceStatus(
        keys=(),
        usable=False,
        stale=False,
        fetched_at=None,
        age=None,
        usable_until=None,
        next_refresh=None,
        last_error=None,
        fetch_count=0,
    )


async def test_status_after_a_fetch_summarises_the_keys_without_key_material(
    fake: FakeIssuer, clock: FakeClock
) -> None:
    async with fake.async_client() as client:
        source = source_for(fake, client, clock, 0.0)
        assert await source.refresh()
        fetched_at = clock.now
        clock.advance(7)
        status = source.status()
        await source.aclose()
    assert status.keys == ((fake.current_key.kid, "ES256"),)
    assert (status.usable, status.stale, status.last_error) == (True, False, None)
    assert (status.fetched_at, status.age, status.fetch_count) == (fetched_at, 7.0, 1)
    assert status.usable_until == fetched_at + TTL
    assert status.next_refresh == fetched_at + DUE
    assert json.loads(json.dumps(dataclasses.asdict(status)))["keys"] == [
        [fake.current_key.kid, "ES256"]
    ]


async def test_status_reports_stale_keys_the_error_and_the_backoff(
    fake: FakeIssuer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.CRITICAL, logger="resource_guard.jwks")
    async with fake.async_client() as client:
        source = source_for(fake, client, clock, 0.0, max_stale=3_600.0)
        assert await source.refresh()
        fetched_at = clock.now
        fake.fault("status", status=503)
        clock.advance(TTL + 1)
        assert await source.refresh() is False
        status = source.status()
        await source.aclose()
    assert (status.usable, status.stale) == (True, True)
    assert status.fetched_at == fetched_at
    assert status.usable_until == fetched_at + TTL + 3_600.0
    assert status.next_refresh == clock.now + 10.0  # the backoff: cooldown, no jitter
    assert "HTTP status 503" in (status.last_error or "")
    assert status.fetch_count == 2


async def test_status_is_a_frozen_snapshot(fake: FakeIssuer, clock: FakeClock) -> None:
    async with fake.async_client() as client:
        source = source_for(fake, client, clock, 0.0)
        before = source.status()
        assert await source.refresh()
        await source.aclose()
    assert before.fetch_count == 0
    assert source.status().fetch_count == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.fetch_count = 5  # type: ignore[misc]
    assert not hasattr(before, "__dict__")


async def test_the_verifier_s_key_source_status_is_public(verifier: TokenVerifier) -> None:
    status = verifier.key_source.status()
    assert isinstance(status, KeySourceStatus)
    assert status.usable
    assert status.keys


async def test_a_foreign_issuer_message_names_both_the_mismatch_and_the_url(
    make: Factory, fake: FakeIssuer
) -> None:
    """One discovery for the key source and the client: the same words in both."""
    fake.metadata_overrides["issuer"] = "https://evil.example.test"
    verifier = make()
    await verifier.start()
    error = verifier.key_source.status().last_error or ""
    assert error.startswith(f"discovery failed: {fake.discovery_url}: its issuer differs")
    assert "'https://evil.example.test'" in error
