"""Key fetching never blocks the event loop: a flood of unknown ``kid``s on a slow IdP.

The guarded Starlette app runs with ``cooldown`` seconds between refetches for unknown key
ids; the issuer's JWKS endpoint answers after ``delay`` seconds (FakeIssuer's ``slow``
fault, on a real loopback server). ``/health`` is probed at a steady rate, first alone
(quiet), then while a paced flood of tokens with unknown key ids hits ``/orders``. An
in-server task measures event-loop lag (how late a 5 ms sleep wakes up) in both phases.
"""

from __future__ import annotations

import json
import math
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks._common import AUDIENCE, SCOPES, Server, issuer_env, servers
from benchmarks._stats import fmt, ratio, table
from benchmarks.loadgen import Load, LoadResult, run_client
from resource_guard.testing import FakeIssuer


@dataclass(frozen=True)
class FloodResult:
    """What the flood cost (latencies in microseconds, lag in milliseconds)."""

    seconds: float
    flood_requests: int
    cooldown: float
    fetches: int
    allowed_fetches: int
    health_p99_quiet_us: float
    health_p99_flood_us: float
    lag_max_quiet_ms: float
    lag_max_flood_ms: float

    @property
    def health_ratio(self) -> float:
        """``/health`` p99 during the flood over its p99 without it."""
        return ratio(self.health_p99_flood_us, self.health_p99_quiet_us)


def _lag(server: Server) -> dict[str, float]:
    """Read (and reset) the server's event-loop lag statistics."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(b"GET /_bench/lag HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    report: dict[str, float] = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    return report


def _probe(server: Server, seconds: float, rate: float) -> LoadResult:
    return run_client(Load(server.port, path="/health", connections=1, duration=seconds, rate=rate))


def measure_flood(
    *,
    seconds: float = 5.0,
    flood_rate: float = 500.0,
    probe_rate: float = 200.0,
    cooldown: float = 1.0,
    delay: float = 0.05,
    unknown_kids: int = 200,
) -> FloodResult:
    """Run the quiet phase, then the flood phase; report fetches, latency and lag."""
    fake = FakeIssuer(audience=AUDIENCE)
    with fake.serve():
        env = {
            **issuer_env(fake),
            "BENCH_COOLDOWN": str(cooldown),
            "BENCH_LAG": "1",
        }
        flood = tuple(
            fake.mint(scopes=SCOPES, kid=f"unknown-{index}", expires_in=7200)
            for index in range(unknown_kids)
        )
        with servers({"flood": ("starlette-guarded", env)}) as started:
            server = started["flood"]
            _lag(server)
            quiet = _probe(server, seconds, probe_rate)
            quiet_lag = _lag(server)
            fake.fault("slow", endpoint="jwks", delay=delay)
            before = fake.counts["jwks"]
            with ThreadPoolExecutor(2) as pool:
                flooding = pool.submit(
                    run_client,
                    Load(
                        server.port,
                        tokens=flood,
                        connections=2,
                        duration=seconds,
                        rate=flood_rate,
                    ),
                )
                busy = _probe(server, seconds, probe_rate)
                flooded = flooding.result()
            fetches = fake.counts["jwks"] - before
            flood_lag = _lag(server)
    return FloodResult(
        seconds=seconds,
        flood_requests=flooded.requests,
        cooldown=cooldown,
        fetches=fetches,
        allowed_fetches=math.ceil(seconds / cooldown) + 1,
        health_p99_quiet_us=quiet.p99_us,
        health_p99_flood_us=busy.p99_us,
        lag_max_quiet_ms=quiet_lag["max_ms"],
        lag_max_flood_ms=flood_lag["max_ms"],
    )


def render(result: FloodResult) -> str:
    """The flood table."""
    rows = [
        (
            "unknown-kid requests (all refused)",
            str(result.flood_requests),
            f"{result.flood_requests / result.seconds:,.0f}/s for {result.seconds:g} s",
        ),
        (
            "JWKS fetches during the flood",
            str(result.fetches),
            f"at most {result.allowed_fetches} (one per {result.cooldown:g} s cooldown)",
        ),
        (
            "/health p99 µs, quiet → flood",
            f"{fmt(result.health_p99_quiet_us, 0)} → {fmt(result.health_p99_flood_us, 0)}",
            f"x{fmt(result.health_ratio, 2)} (target ≤ 2)",
        ),
        (
            "event-loop lag max ms, quiet → flood",
            f"{fmt(result.lag_max_quiet_ms, 2)} → {fmt(result.lag_max_flood_ms, 2)}",
            "target < 10 ms",
        ),
    ]
    return table(("key fetching under a flood", "measured", "bound"), rows)
