"""HTTP through uvicorn on 127.0.0.1: the bare endpoint and the same behind each guard.

Every server runs in its own process pinned to one core; the load generator (wrk, or the
asyncio client) runs on the other. In each round every variant is loaded in turn, so a
variant's ratio compares it with its bare endpoint measured moments apart; the table
shows medians over the rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks._common import (
    AUDIENCE,
    CLIENT_ID,
    SCOPES,
    Server,
    http_get,
    issuer_env,
    servers,
)
from benchmarks._stats import fmt, median, ratio, table
from benchmarks.loadgen import Load, LoadResult, run
from resource_guard.testing import FakeIssuer


@dataclass(frozen=True)
class Variant:
    """One server under load: its app, what it is compared with, the tokens it gets."""

    label: str
    app: str
    base: str
    distinct_tokens: int = 1
    cache_size: int = 4096


VARIANTS: tuple[Variant, ...] = (
    Variant("starlette (bare)", "starlette", "starlette (bare)"),
    Variant("+ BearerAuthMiddleware, one token", "starlette-guarded", "starlette (bare)"),
    Variant(
        "+ BearerAuthMiddleware, 1,000 tokens, cache off",
        "starlette-guarded",
        "starlette (bare)",
        distinct_tokens=1000,
        cache_size=0,
    ),
    Variant("+ naive PyJWT middleware, one token", "starlette-pyjwt", "starlette (bare)"),
    Variant("+ an empty middleware (reference)", "starlette-passthrough", "starlette (bare)"),
    Variant("fastapi (bare)", "fastapi", "fastapi (bare)"),
    Variant("+ an empty dependency (reference)", "fastapi-empty-dependency", "fastapi (bare)"),
    Variant("+ BearerAuthMiddleware + require_scopes", "fastapi-scopes", "fastapi (bare)"),
)


@dataclass(frozen=True)
class Sample:
    """One variant in one round."""

    busy: LoadResult
    """``connections`` connections: throughput and p99."""
    single: LoadResult
    """One connection: p50 latency."""
    cpu_us: float
    """Server CPU time per request in the busy run."""


@dataclass(frozen=True)
class HttpRow:
    """Medians over the rounds; ratios are to the variant's bare endpoint, per round."""

    label: str
    rps: float
    rps_ratio: float
    p50_us: float
    p50_ratio: float
    p99_us: float
    p99_ratio: float
    cpu_us: float
    cpu_ratio: float
    errors: int


def _sample(
    server: Server, tokens: tuple[str, ...], *, connections: int, duration: float, use_wrk: bool
) -> Sample:
    before = server.cpu_seconds()
    busy = run(
        Load(server.port, tokens=tokens, connections=connections, duration=duration),
        use_wrk=use_wrk,
    )
    cpu = (server.cpu_seconds() - before) / busy.requests * 1e6 if busy.requests else 0.0
    single = run(
        Load(server.port, tokens=tokens, connections=1, duration=duration), use_wrk=use_wrk
    )
    return Sample(busy, single, cpu)


def measure_http(
    *,
    rounds: int = 5,
    duration: float = 3.0,
    connections: int = 16,
    use_wrk: bool = True,
    variants: Sequence[Variant] = VARIANTS,
) -> list[HttpRow]:
    """Load every variant ``rounds`` times, in alternation; one row per variant."""
    fake = FakeIssuer(audience=AUDIENCE)
    with fake.serve():
        env = issuer_env(fake)
        tokens = {
            variant.label: tuple(
                fake.mint(f"user-{index}", scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
                for index in range(variant.distinct_tokens)
            )
            for variant in variants
        }
        specs = {
            variant.label: (variant.app, {**env, "BENCH_CACHE_SIZE": str(variant.cache_size)})
            for variant in variants
        }
        samples: dict[str, list[Sample]] = {variant.label: [] for variant in variants}
        with servers(specs) as started:
            for variant in variants:  # warm up: keys fetched, code paths and caches hot
                header = {"Authorization": f"Bearer {tokens[variant.label][0]}"}
                for _ in range(20):
                    http_get(started[variant.label].port, "/orders", header)
            for _ in range(rounds):
                for variant in variants:
                    samples[variant.label].append(
                        _sample(
                            started[variant.label],
                            tokens[variant.label],
                            connections=connections,
                            duration=duration,
                            use_wrk=use_wrk,
                        )
                    )
    return [_row(variant, samples) for variant in variants]


def _row(variant: Variant, samples: dict[str, list[Sample]]) -> HttpRow:
    mine, base = samples[variant.label], samples[variant.base]

    def ratios(value: str) -> float:
        return median(
            ratio(_value(own, value), _value(bare, value))
            for own, bare in zip(mine, base, strict=True)
        )

    return HttpRow(
        label=variant.label,
        rps=median(sample.busy.rps for sample in mine),
        rps_ratio=ratios("rps"),
        p50_us=median(sample.single.p50_us for sample in mine),
        p50_ratio=ratios("p50"),
        p99_us=median(sample.busy.p99_us for sample in mine),
        p99_ratio=ratios("p99"),
        cpu_us=median(sample.cpu_us for sample in mine),
        cpu_ratio=ratios("cpu"),
        errors=sum(sample.busy.errors + sample.single.errors for sample in mine),
    )


def _value(sample: Sample, name: str) -> float:
    if name == "rps":
        return sample.busy.rps
    if name == "p50":
        return sample.single.p50_us
    if name == "p99":
        return sample.busy.p99_us
    return sample.cpu_us


def render(rows: Sequence[HttpRow], *, connections: int) -> str:
    """The HTTP table."""
    headers = (
        "server",
        "req/s",
        "x bare",
        "p50 µs (1 conn)",
        "x bare",
        f"p99 µs ({connections} conns)",
        "x bare",
        "CPU µs/req",
        "x bare",
        "errors",
    )
    return table(
        headers,
        (
            (
                row.label,
                fmt(row.rps, 0),
                fmt(row.rps_ratio, 2),
                fmt(row.p50_us, 0),
                fmt(row.p50_ratio, 2),
                fmt(row.p99_us, 0),
                fmt(row.p99_ratio, 2),
                fmt(row.cpu_us, 0),
                fmt(row.cpu_ratio, 2),
                str(row.errors),
            )
            for row in rows
        ),
    )
