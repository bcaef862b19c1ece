"""A flood of tokens with random unknown kids, over a real loopback issuer.

An attacker who sends tokens naming keys that do not exist must not be able to turn the
resource server against its identity provider (at most one JWKS request per cooldown) nor
slow down legitimate callers (the event loop keeps ticking; valid tokens keep their
latency). The bounds asserted are generous on purpose (a shared 2-core machine): this is a
guard against blocking and amplification, not a benchmark. Run with ``-s`` to see numbers.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from resource_guard import TokenVerifier
from resource_guard.testing import FakeIssuer, SigningKey, generate_key
from tests.helpers import bearer

from ._harness import AUDIENCE, Guarded, asgi_call, b64url, json_bytes

pytestmark = pytest.mark.slow

FLOOD = 10_000
WORKERS = 50
COOLDOWN = 0.25  # seconds; short so that a flood of about a second spans several cooldowns
MAX_LAG = 0.25
MAX_LATENCY = 0.25


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return generate_key("ES256")


@pytest.fixture(scope="module")
def idp(key: SigningKey) -> Iterator[FakeIssuer]:
    fake = FakeIssuer(audience=AUDIENCE)
    fake.add_key(key, make_current=True)
    with fake.serve():
        yield fake


@pytest.fixture
async def app(idp: FakeIssuer, idp_client: httpx.AsyncClient) -> AsyncIterator[Guarded]:
    verifier = TokenVerifier(idp.issuer, AUDIENCE, cooldown=COOLDOWN, http_client=idp_client)
    await verifier.start()
    guarded = Guarded(verifier, idp)
    yield guarded
    await guarded.aclose()
    await verifier.aclose()


def random_kid_tokens(issuer: str, count: int) -> list[str]:
    """Well-formed ES256 tokens naming a random kid each, with a random signature."""
    payload = b64url(json_bytes({"iss": issuer, "aud": AUDIENCE, "exp": 4_000_000_000}))
    return [
        f"{b64url(json_bytes({'alg': 'ES256', 'kid': b64url(os.urandom(16))}))}"
        f".{payload}.{b64url(os.urandom(64))}"
        for _ in range(count)
    ]


async def tick(stop: asyncio.Event, lags: list[float], period: float = 0.005) -> None:
    """How late the event loop wakes a sleeper: its lag, measured every ``period``."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - started - period)


async def valid_traffic(
    app: Guarded, tokens: list[str], stop: asyncio.Event, latencies: list[float]
) -> list[int]:
    """A legitimate client: one new valid token every 5 ms until ``stop``."""
    statuses: list[int] = []
    for token in tokens:
        if stop.is_set():
            break
        started = time.perf_counter()
        status, _, _ = await asgi_call(app.app, bearer(token))
        latencies.append(time.perf_counter() - started)
        statuses.append(status)
        await asyncio.sleep(0.005)
    return statuses


async def flood(app: Guarded, tokens: list[str]) -> list[int]:
    queue = iter(tokens)
    statuses: list[int] = []

    async def worker() -> None:
        for token in queue:
            await asyncio.sleep(0)  # each request arrives by I/O, as it would from a socket
            status, _, _ = await asgi_call(app.app, bearer(token))
            statuses.append(status)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return statuses


async def test_a_flood_of_random_kids_costs_one_fetch_per_cooldown_and_blocks_nobody(
    app: Guarded, idp: FakeIssuer, key: SigningKey
) -> None:
    attack = random_kid_tokens(idp.issuer, FLOOD)
    legit = [idp.mint(subject=f"user-{n}", key=key) for n in range(2_000)]
    stop = asyncio.Event()
    lags: list[float] = []
    latencies: list[float] = []
    fetches_before = idp.counts["jwks"]

    # The lag measured is ours, not a full collection of the whole test session's heap
    # (hundreds of ms late in a long run under coverage): what exists now is frozen.
    gc.collect()
    gc.freeze()
    try:
        ticker = asyncio.create_task(tick(stop, lags))
        client = asyncio.create_task(valid_traffic(app, legit, stop, latencies))
        started = time.perf_counter()
        flooded = await flood(app, attack)
        duration = time.perf_counter() - started
        stop.set()
        served = await client
        await ticker
    finally:
        gc.unfreeze()

    fetches = idp.counts["jwks"] - fetches_before
    print(
        f"\nflood: {FLOOD} requests in {duration:.2f} s, {fetches} JWKS fetches "
        f"(bound {duration / COOLDOWN + 1:.1f}); valid: {len(served)} requests, latency "
        f"median {statistics.median(latencies) * 1000:.2f} ms, max {max(latencies) * 1000:.1f} ms;"
        f" event-loop lag max {max(lags) * 1000:.1f} ms over {len(lags)} ticks"
    )
    assert flooded == [401] * FLOOD
    assert served
    assert set(served) == {200}
    assert 1 <= fetches <= duration / COOLDOWN + 1
    assert max(lags) < MAX_LAG
    assert max(latencies) < MAX_LATENCY
    # Nothing of the flood is remembered: no per-kid state, no cache entries for refusals.
    verifier = app.verifier
    assert verifier._parser._headers.__len__() <= 256
    assert verifier.token_cache is not None
    assert len(verifier.token_cache) <= len(served)
    assert verifier.key_source.keys is not None
    assert len(verifier.key_source.keys) == 1


@pytest.mark.parametrize("cached", [False, True], ids=["no-keys", "cached-keys-random-kids"])
async def test_a_flood_while_the_idp_is_down_costs_one_fetch_per_cooldown(
    idp: FakeIssuer, key: SigningKey, idp_client: httpx.AsyncClient, cached: bool
) -> None:
    """Requests waiting for keys may fetch during the backoff (issue 11), but a flood of
    them still costs a failing IdP at most one request per cooldown."""
    verifier = TokenVerifier(idp.issuer, AUDIENCE, cooldown=COOLDOWN, http_client=idp_client)
    guarded = Guarded(verifier, idp)
    try:
        if cached:
            await verifier.start()
        idp.fault("status", status=503)
        if not cached:
            await verifier.start()
        tokens = (
            random_kid_tokens(idp.issuer, FLOOD // 2)
            if cached
            else [idp.mint(subject=f"user-{n}", key=key) for n in range(FLOOD // 2)]
        )
        fetches_before = idp.counts["jwks"]
        started = time.perf_counter()
        flooded = await flood(guarded, tokens)
        duration = time.perf_counter() - started
        fetches = idp.counts["jwks"] - fetches_before
        print(f"\noutage flood: {len(tokens)} requests in {duration:.2f} s, {fetches} fetches")
        assert flooded == [401 if cached else 503] * len(tokens)
        assert fetches <= duration / COOLDOWN + 1
    finally:
        idp.clear_faults()
        await guarded.aclose()
        await verifier.aclose()


async def test_inside_the_cooldown_an_unknown_kid_is_refused_at_once(
    app: Guarded, idp: FakeIssuer
) -> None:
    """A burst arriving while a refetch was just made never waits for the IdP."""
    tokens = random_kid_tokens(idp.issuer, 1_001)
    assert (await asgi_call(app.app, bearer(tokens[0])))[0] == 401  # triggers the refetch
    fetches = idp.counts["jwks"]
    started = time.perf_counter()
    statuses = await asyncio.gather(*(asgi_call(app.app, bearer(t)) for t in tokens[1:]))
    elapsed = time.perf_counter() - started
    assert {status for status, _, _ in statuses} == {401}
    assert idp.counts["jwks"] - fetches <= elapsed / COOLDOWN + 1
