"""TrustedIssuers of three issuers next to one TokenVerifier, per algorithm.

The token comes from the last of the three issuers. Each round times, in turn, on one
token: a cache hit as the middleware asks for it (``cached()`` on a fresh ``bytes`` object
per request, so nothing of the token's hash is remembered between calls) through the single
verifier and through TrustedIssuers; a cold verification (every cache off, keys loaded)
through each; and a refusal of a token naming an issuer nobody trusts (no request made).
Ratios compare TrustedIssuers with the single verifier measured in the same round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from benchmarks._common import AUDIENCE, CLIENT_ID, SCOPES
from benchmarks._stats import fmt, median, ratio, table
from resource_guard import TokenVerifier, TrustedIssuers, UnknownIssuerError
from resource_guard.testing import FakeIssuer

ALGORITHMS = ("ES256", "RS256")
ISSUERS = 3


@dataclass(frozen=True)
class IssuersRow:
    """Medians over the rounds (microseconds per token); ratios are TrustedIssuers over one
    TokenVerifier, per round."""

    algorithm: str
    single_hit_us: float
    trusted_hit_us: float
    hit_ratio: float
    single_cold_us: float
    trusted_cold_us: float
    cold_ratio: float
    refused_us: float


def _hits(cached: Callable[[bytes], object], copies: Sequence[bytes]) -> float:
    clock = time.perf_counter
    start = clock()
    for raw in copies:
        cached(raw)
    return (clock() - start) / len(copies) * 1e6


async def _awaits(call: Callable[[], Awaitable[object]], iterations: int) -> float:
    clock = time.perf_counter
    start = clock()
    for _ in range(iterations):
        await call()
    return (clock() - start) / iterations * 1e6


async def _refusals(trusted: TrustedIssuers, token: str, iterations: int) -> float:
    clock = time.perf_counter
    start = clock()
    for _ in range(iterations):
        with contextlib.suppress(UnknownIssuerError):
            await trusted.verify(token)
    return (clock() - start) / iterations * 1e6


def _verifiers(idps: Sequence[FakeIssuer], cache_size: int) -> list[TokenVerifier]:
    return [
        TokenVerifier(idp.issuer, AUDIENCE, http_client=idp.async_client(), cache_size=cache_size)
        for idp in idps
    ]


async def _measure_one(
    algorithm: str, rounds: int, iterations: int, hot_iterations: int
) -> IssuersRow:
    idps = [
        FakeIssuer(f"https://idp-{n}.bench", audience=AUDIENCE, algorithm=algorithm)
        for n in range(ISSUERS)
    ]
    last = idps[-1]
    token = last.mint(scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
    stranger = last.mint(claims={"iss": "https://stranger.bench"}, expires_in=7200)
    async with (
        _verifiers([last], 4096)[0] as single_hot,
        _verifiers([last], 0)[0] as single_cold,
        TrustedIssuers(_verifiers(idps, 4096)) as trusted_hot,
        TrustedIssuers(_verifiers(idps, 0), cache_size=0) as trusted_cold,
    ):
        for verifier in (single_hot, single_cold, trusted_hot, trusted_cold):
            await verifier.verify(token)
        raw = token.encode()
        if single_hot.cached(raw) is None or trusted_hot.cached(raw) is None:
            raise AssertionError("the cache-hit loops would time cache misses")
        copies = [bytes(bytearray(raw)) for _ in range(hot_iterations)]
        times: dict[str, list[float]] = {
            name: [] for name in ("single_hit", "trusted_hit", "single", "trusted", "refused")
        }
        for _ in range(rounds):
            gc.collect()
            times["single_hit"].append(_hits(single_hot.cached, copies))
            times["trusted_hit"].append(_hits(trusted_hot.cached, copies))
            times["single"].append(await _awaits(lambda: single_cold.verify(token), iterations))
            times["trusted"].append(await _awaits(lambda: trusted_cold.verify(token), iterations))
            times["refused"].append(await _refusals(trusted_cold, stranger, iterations))
    return IssuersRow(
        algorithm=algorithm,
        single_hit_us=median(times["single_hit"]),
        trusted_hit_us=median(times["trusted_hit"]),
        hit_ratio=median(map(ratio, times["trusted_hit"], times["single_hit"])),
        single_cold_us=median(times["single"]),
        trusted_cold_us=median(times["trusted"]),
        cold_ratio=median(map(ratio, times["trusted"], times["single"])),
        refused_us=median(times["refused"]),
    )


def measure(
    *,
    algorithms: Sequence[str] = ALGORITHMS,
    rounds: int = 9,
    iterations: int = 300,
    hot_iterations: int = 20_000,
) -> list[IssuersRow]:
    """One row per algorithm."""

    async def all_rows() -> list[IssuersRow]:
        return [
            await _measure_one(algorithm, rounds, iterations, hot_iterations)
            for algorithm in algorithms
        ]

    return asyncio.run(all_rows())


def render(rows: Sequence[IssuersRow]) -> str:
    """The issuers table."""
    headers = (
        "algorithm",
        "hit: 1 verifier µs",
        f"hit: {ISSUERS} issuers µs",
        "x 1",
        "cold: 1 verifier µs",
        f"cold: {ISSUERS} issuers µs",
        "x 1",
        "unknown iss refused µs",
    )
    return table(
        headers,
        (
            (
                row.algorithm,
                fmt(row.single_hit_us, 2),
                fmt(row.trusted_hit_us, 2),
                fmt(row.hit_ratio, 2),
                fmt(row.single_cold_us),
                fmt(row.trusted_cold_us),
                fmt(row.cold_ratio, 2),
                fmt(row.refused_us, 2),
            )
            for row in rows
        ),
    )
