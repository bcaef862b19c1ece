"""Opaque tokens: IntrospectionVerifier next to TokenVerifier, and against a slow endpoint.

Three measurements:

* **hit**: a token answered from the cache, opaque (IntrospectionVerifier) against JWT
  (TokenVerifier), both through ``cached()`` with the raw bytes after ``Bearer `` (what the
  middleware calls first) and through ``await verify()``. Rounds alternate the two; the
  ratio is per round (target: within 10 %).
* **miss**: every request a new token, introspected at an endpoint on 127.0.0.1 that
  answers after 5 ms (a minimal asyncio server in a process of its own, pinned to the
  server CPU like the benchmark apps; the fake issuer's threaded test server would measure
  itself); ``concurrency`` requests in flight at a time for ``duration`` seconds: requests
  per second and latency percentiles.
* **burst**: 1,000 concurrent requests with one new token: how many introspection calls
  reached the endpoint (single-flight: exactly one) and how long the burst took.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks._common import AUDIENCE, CLIENT_ID, ROOT, SCOPES, SERVER_CPU, pinned
from benchmarks._stats import fmt, median, per_await, per_call, percentile, ratio, table
from resource_guard import IntrospectionVerifier, TokenVerifier
from resource_guard.testing import FakeIssuer

RESOURCE_SERVER = "bench-resource-server"
SECRET = "bench-resource-server-secret"
ENDPOINT_LATENCY = 0.005
ISSUER = "https://issuer.example.test"


@dataclass(frozen=True)
class HitRow:
    """Medians over rounds, microseconds per token; ``ratio``: opaque / JWT."""

    path: str
    jwt_us: float
    opaque_us: float
    ratio: float


@dataclass(frozen=True)
class MissResult:
    """Cache misses against the slow endpoint."""

    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    calls: int


@dataclass(frozen=True)
class BurstResult:
    """One new token, many concurrent requests."""

    requests: int
    calls: int
    duration_ms: float


@dataclass(frozen=True)
class IntrospectionReport:
    hits: list[HitRow]
    misses: list[MissResult]
    burst: BurstResult


def _issuer() -> FakeIssuer:
    fake = FakeIssuer(audience=AUDIENCE, algorithm="ES256")
    fake.register_client(RESOURCE_SERVER, SECRET)
    return fake


def _introspection_verifier(fake: FakeIssuer, **options: Any) -> IntrospectionVerifier:
    return IntrospectionVerifier(
        fake.issuer,
        AUDIENCE,
        client_id=RESOURCE_SERVER,
        client_secret=SECRET,
        **options,
    )


async def _hits(rounds: int, iterations: int) -> list[HitRow]:
    fake = _issuer()
    jwt_token = fake.mint(scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
    opaque_token = fake.issue_opaque(scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
    async with (
        fake.async_client() as client,
        TokenVerifier(fake.issuer, AUDIENCE, http_client=client) as jwt_side,
        _introspection_verifier(fake, http_client=client, cache_ttl=3600) as opaque_side,
    ):
        await jwt_side.verify(jwt_token)
        await opaque_side.verify(opaque_token)
        jwt_raw, opaque_raw = jwt_token.encode(), opaque_token.encode()
        assert jwt_side.cached(jwt_raw) is not None
        assert opaque_side.cached(opaque_raw) is not None
        times: dict[str, list[float]] = {key: [] for key in ("cj", "co", "vj", "vo")}
        for _ in range(rounds):
            gc.collect()
            times["cj"].append(per_call(lambda: jwt_side.cached(jwt_raw), iterations))
            times["co"].append(per_call(lambda: opaque_side.cached(opaque_raw), iterations))
            times["vj"].append(await per_await(lambda: jwt_side.verify(jwt_token), iterations))
            times["vo"].append(
                await per_await(lambda: opaque_side.verify(opaque_token), iterations)
            )
        assert fake.introspection_count == 1
    return [
        HitRow(
            path,
            median(times[jwt]),
            median(times[opaque]),
            median(map(ratio, times[opaque], times[jwt])),
        )
        for path, jwt, opaque in (
            ("cached(bytes): the middleware's path", "cj", "co"),
            ("await verify(token)", "vj", "vo"),
        )
    ]


class RemoteEndpoint:
    """An introspection endpoint on 127.0.0.1 in a process of its own (pinned to the server
    CPU): a minimal asyncio HTTP/1.1 server that calls every token active after ``latency``
    seconds, so the figures are the verifier's and the latency's, not a test server's
    threads. ``calls``: the requests it answered, known once it stopped."""

    def __init__(self, latency: float) -> None:
        command = [sys.executable, "-m", "benchmarks.introspection_bench", "serve", str(latency)]
        self._process = subprocess.Popen(
            pinned(command, SERVER_CPU),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url:
            raise RuntimeError("the introspection benchmark's endpoint did not start")
        self.calls = -1

    def stop(self) -> None:
        out, _ = self._process.communicate(timeout=30)
        self.calls = int(out.strip() or -1)


async def serve(latency: float) -> None:
    """The RemoteEndpoint process: serve until stdin closes, then print the call count."""
    calls = 0
    answer = json.dumps(
        {"active": True, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 86400}
    ).encode()
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(answer)}\r\n\r\n".encode()
        + answer
    )

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                calls += 1
                if latency:
                    await asyncio.sleep(latency)
                writer.write(reply)
        writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/introspect", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    server.close()
    print(calls, flush=True)


def _remote_verifier(url: str, **options: Any) -> IntrospectionVerifier:
    return IntrospectionVerifier(
        ISSUER,
        AUDIENCE,
        client_id=RESOURCE_SERVER,
        client_secret=SECRET,
        introspection_endpoint=url,
        **options,
    )


async def _miss(issuer: str, concurrency: int, duration: float) -> MissResult:
    latencies: list[float] = []
    count = itertools.count()
    verifier = _remote_verifier(issuer, max_pending=concurrency * 2)
    async with verifier:
        await verifier.verify("warm-up")  # connections open, the endpoint answers
        calls_before = verifier.introspection_count
        stop = time.perf_counter() + duration

        async def worker() -> None:
            clock = time.perf_counter
            while clock() < stop:
                token = f"opaque-{next(count)}"
                started = clock()
                await verifier.verify(token)
                latencies.append(clock() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        calls = verifier.introspection_count - calls_before
    return MissResult(
        concurrency=concurrency,
        requests=len(latencies),
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 50) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
        calls=calls,
    )


async def _burst(issuer: str, requests: int) -> BurstResult:
    async with _remote_verifier(issuer, max_pending=4) as verifier:
        started = time.perf_counter()
        results = await asyncio.gather(*(verifier.verify("burst") for _ in range(requests)))
        duration = time.perf_counter() - started
        assert len({id(result) for result in results}) == 1
        calls = verifier.introspection_count
    return BurstResult(requests, calls, duration * 1e3)


def measure(
    *,
    rounds: int = 9,
    iterations: int = 20_000,
    concurrency: Sequence[int] = (1, 4, 16),
    duration: float = 3.0,
    burst: int = 1000,
    latency: float = ENDPOINT_LATENCY,
) -> IntrospectionReport:
    """Every measurement of this module (see the module docstring)."""

    async def remote(url: str) -> tuple[list[MissResult], BurstResult]:
        misses = [await _miss(url, each, duration) for each in concurrency]
        return misses, await _burst(url, burst)

    hits = asyncio.run(_hits(rounds, iterations))
    server = RemoteEndpoint(latency)
    try:
        misses, bursting = asyncio.run(remote(server.url))
    finally:
        server.stop()
    # Every call the verifiers counted reached the endpoint, and nothing else did.
    counted = sum(1 + miss.calls for miss in misses) + bursting.calls  # 1: each warm-up
    assert server.calls == counted, (server.calls, counted)
    return IntrospectionReport(hits, misses, bursting)


def render(report: IntrospectionReport) -> str:
    """The three tables, one after the other."""
    hits = table(
        ("cache hit", "JWT µs", "opaque µs", "opaque / JWT"),
        (
            (row.path, fmt(row.jwt_us, 2), fmt(row.opaque_us, 2), fmt(row.ratio, 2))
            for row in report.hits
        ),
    )
    misses = table(
        (
            "cache miss, endpoint +5 ms",
            "in flight",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "calls",
        ),
        [
            (
                "new token every request",
                str(miss.concurrency),
                str(miss.requests),
                fmt(miss.rps, 0),
                fmt(miss.p50_ms, 2),
                fmt(miss.p99_ms, 2),
                str(miss.calls),
            )
            for miss in report.misses
        ],
    )
    burst = report.burst
    bursts = table(
        ("burst", "requests", "introspection calls", "ms"),
        [("one new token", str(burst.requests), str(burst.calls), fmt(burst.duration_ms, 1))],
    )
    return "\n\n".join((hits, misses, bursts))


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    asyncio.run(serve(float(sys.argv[2])))
