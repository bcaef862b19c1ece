"""The answer cache: bounded in time (exp, cache_ttl) and size, keyed by digest, refusals
remembered briefly, revocations visible within the bound; one call per token at a time."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from unittest import mock

import pytest

from resource_guard import (
    AccessToken,
    InactiveTokenError,
    IntrospectionUnavailableError,
    IntrospectionVerifier,
)
from resource_guard._token_cache import token_digest
from resource_guard.introspection import IntrospectedToken, IntrospectionCache
from resource_guard.testing import FakeClock, FakeIssuer

from .conftest import MakeVerifier


async def test_an_active_answer_is_reused_until_the_bound(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    verifier = make_verifier(cache_ttl=60)
    token = issuer.issue_opaque(expires_in=3600)
    first = await verifier.verify(token)
    assert verifier.cached(token) is first
    assert verifier.cached(token.encode()) is first
    clock.advance(60)
    assert await verifier.verify(token) is first
    assert issuer.introspection_count == 1
    clock.advance(1)
    assert verifier.cached(token) is None
    assert await verifier.verify(token) is not first
    assert issuer.introspection_count == 2


async def test_an_active_answer_is_never_reused_past_exp(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    verifier = make_verifier(cache_ttl=600, leeway=0)
    token = issuer.issue_opaque(expires_in=30)
    await verifier.verify(token)
    clock.advance(30)
    assert verifier.cached(token) is not None
    clock.advance(1)
    assert verifier.cached(token) is None
    with pytest.raises(InactiveTokenError):
        await verifier.verify(token)
    assert issuer.introspection_count == 2


async def test_revocation_is_seen_within_the_configured_bound(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    verifier = make_verifier(cache_ttl=20)
    token = issuer.issue_opaque(expires_in=3600)
    await verifier.verify(token)
    issuer.revoke(token)
    clock.advance(20)
    await verifier.verify(token)  # still within the bound: the cached answer
    clock.advance(1)
    with pytest.raises(InactiveTokenError):
        await verifier.verify(token)
    assert issuer.introspection_count == 2


async def test_a_zero_cache_ttl_asks_every_time(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(cache_ttl=0)
    token = issuer.issue_opaque()
    for _ in range(3):
        await verifier.verify(token)
    assert issuer.introspection_count == 3
    assert verifier.cached(token) is None


async def test_a_refusal_is_reused_briefly(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    verifier = make_verifier(negative_cache_ttl=5)
    for _ in range(3):
        with pytest.raises(InactiveTokenError) as caught:
            await verifier.verify("unknown-token")
    assert caught.value.__traceback__ is not None
    assert issuer.introspection_count == 1
    assert verifier.cached("unknown-token") is None
    clock.advance(6)
    with pytest.raises(InactiveTokenError):
        await verifier.verify("unknown-token")
    assert issuer.introspection_count == 2


async def test_each_raise_is_a_fresh_error(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    errors = []
    for _ in range(2):
        with pytest.raises(InactiveTokenError) as caught:
            await verifier.verify("unknown-token")
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert errors[0].message == errors[1].message


async def test_a_zero_negative_ttl_remembers_no_refusal(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(negative_cache_ttl=0)
    for _ in range(2):
        with pytest.raises(InactiveTokenError):
            await verifier.verify("unknown-token")
    assert issuer.introspection_count == 2


async def test_the_cache_key_is_a_digest_never_the_token(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    token = issuer.issue_opaque()
    await verifier.verify(token)
    with pytest.raises(InactiveTokenError):
        await verifier.verify("unknown-token")
    keys = list(verifier.cache)
    assert keys == [token_digest(token.encode()), token_digest(b"unknown-token")]
    assert all(token.encode() not in key for key in keys)


async def test_the_caches_are_bounded_and_refusals_never_evict_answers(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(cache_size=2, negative_cache_size=2)
    tokens = [issuer.issue_opaque() for _ in range(3)]
    for token in tokens:
        await verifier.verify(token)
    for index in range(5):
        with pytest.raises(InactiveTokenError):
            await verifier.verify(f"junk-{index}")
    assert len(verifier.cache) == 4
    assert verifier.cached(tokens[0]) is None  # the least recently used went first
    assert verifier.cached(tokens[1]) is not None
    assert verifier.cached(tokens[2]) is not None


async def test_zero_sized_caches_remember_nothing(
    issuer: FakeIssuer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(cache_size=0, negative_cache_size=0)
    token = issuer.issue_opaque()
    await verifier.verify(token)
    with pytest.raises(InactiveTokenError):
        await verifier.verify("junk")
    assert len(verifier.cache) == 0


def test_the_cache_forgets_and_clears() -> None:
    cache = IntrospectionCache(4, 4)
    access = AccessToken(claims={}, scopes=frozenset(), expires_at=datetime.now(UTC))
    cache.put_active(b"a", access, 10.0)
    cache.put_refusal(b"b", InactiveTokenError("no"), 10.0)
    assert cache.active(b"a", 5.0) is access
    assert cache.refusal(b"b", 11.0) is None  # expired: dropped
    assert len(cache) == 1
    cache.put_refusal(b"a", InactiveTokenError("no"), 10.0)  # a refusal replaces an answer
    assert cache.active(b"a", 5.0) is None
    cache.put_active(b"a", access, 10.0)
    assert cache.refusal(b"a", 5.0) is None
    cache.forget(b"a")
    assert len(cache) == 0
    cache.put_active(b"c", access, 10.0)
    cache.clear()
    assert len(cache) == 0


async def test_concurrent_requests_with_one_new_token_make_one_call(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.fault("slow", endpoint="introspection", delay=0.2)
    token = issuer.issue_opaque()
    results = await asyncio.wait_for(
        asyncio.gather(*(verifier.verify(token) for _ in range(100))), timeout=10
    )
    assert issuer.introspection_count == 1
    assert verifier.introspection_count == 1
    assert len({id(result) for result in results}) == 1
    assert verifier.pending == 0


async def test_concurrent_refusals_share_one_call_too(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.fault("slow", endpoint="introspection", delay=0.1)
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(verifier.verify("junk") for _ in range(20)), return_exceptions=True),
        timeout=10,
    )
    assert all(isinstance(outcome, InactiveTokenError) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 20
    assert issuer.introspection_count == 1
    assert verifier.pending == 0


async def test_a_cancelled_request_does_not_cancel_the_shared_call(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.fault("slow", endpoint="introspection", delay=0.2)
    token = issuer.issue_opaque()
    first = asyncio.ensure_future(verifier.verify(token))
    second = asyncio.ensure_future(verifier.verify(token))
    await asyncio.sleep(0.05)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert isinstance(await asyncio.wait_for(second, timeout=5), AccessToken)
    assert issuer.introspection_count == 1
    assert verifier.cached(token) is not None  # the answer was kept, not poisoned
    await verifier.verify(token)
    assert (issuer.introspection_count, verifier.pending) == (1, 0)


async def test_a_call_whose_every_request_was_cancelled_still_completes(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.fault("slow", endpoint="introspection", delay=0.1)
    token = issuer.issue_opaque()
    alone = asyncio.ensure_future(verifier.verify(token))
    await asyncio.sleep(0.02)
    alone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await alone
    assert verifier.pending == 1  # the shared call goes on without its requester
    for _ in range(100):  # bounded: about 1 s
        if verifier.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert verifier.pending == 0
    assert verifier.cached(token) is not None
    await verifier.verify(token)
    assert issuer.introspection_count == 1


async def test_calls_in_flight_are_bounded(issuer: FakeIssuer, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(max_pending=2)
    issuer.fault("slow", endpoint="introspection", delay=0.2)
    tokens = [issuer.issue_opaque() for _ in range(3)]
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(verifier.verify(token) for token in tokens), return_exceptions=True),
        timeout=10,
    )
    assert [type(outcome) for outcome in outcomes] == [
        IntrospectedToken,
        IntrospectedToken,
        IntrospectionUnavailableError,
    ]
    refused = outcomes[2]
    assert isinstance(refused, IntrospectionUnavailableError)
    assert refused.retry_after == 1.0
    assert issuer.introspection_count == 2


async def test_aclose_cancels_calls_in_flight(
    issuer: FakeIssuer, verifier: IntrospectionVerifier
) -> None:
    issuer.fault("slow", endpoint="introspection", delay=1)
    request = asyncio.ensure_future(verifier.verify(issuer.issue_opaque()))
    await asyncio.sleep(0.05)
    assert verifier.pending == 1
    await verifier.aclose()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(request, timeout=5)
    assert verifier.pending == 0


class Audited(IntrospectionVerifier):
    async def verify(self, token: str) -> AccessToken:
        return await super().verify(token)


async def test_cached_answers_none_while_verify_is_overridden(
    issuer: FakeIssuer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    token = issuer.issue_opaque()
    verifier = make_verifier()
    await verifier.verify(token)
    assert verifier.cached(token) is not None
    with mock.patch.object(verifier, "verify"):
        assert verifier.cached(token) is None
    subclassed = Audited(
        issuer.issuer,
        "api://orders",
        client_id="orders-api",
        client_secret="orders-api-secret",
        clock=clock,
    )
    try:
        await subclassed.verify(token)
        assert subclassed.cached(token) is None
    finally:
        await subclassed.aclose()


@pytest.mark.parametrize(
    "token", [None, 5, "x" * 20_000, "ünï", b"\xff"], ids=["none", "int", "long", "str", "bytes"]
)
def test_cached_never_raises(verifier: IntrospectionVerifier, token: object) -> None:
    assert verifier.cached(token) is None  # type: ignore[arg-type]


async def test_a_new_event_loop_starts_afresh(issuer: FakeIssuer, clock: FakeClock) -> None:
    """A verifier used from two event loops in turn (two asyncio.run calls, each closing
    it) keeps working."""
    verifier = IntrospectionVerifier(
        issuer.issuer,
        "api://orders",
        client_id="orders-api",
        client_secret="orders-api-secret",
        clock=clock,
        cache_ttl=0,
    )
    token = issuer.issue_opaque()

    def run_once() -> str | None:
        async def go() -> str | None:
            try:
                return (await verifier.verify(token)).subject
            finally:
                await verifier.aclose()  # on the loop that used it: its connections close

        return asyncio.run(go())

    assert await asyncio.to_thread(run_once) == "user-123"
    assert await asyncio.to_thread(run_once) == "user-123"
    assert issuer.introspection_count == 2
