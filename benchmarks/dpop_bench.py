"""DPoP through BearerAuthMiddleware (in-process ASGI calls), per proof algorithm.

Each round times, in turn: a request with a cached plain bearer token ("bearer"); the same
kind of request with a cached DPoP-bound token and a fresh proof ("dpop": every proof is
minted before the clock starts, so only checking it counts); ``ProofVerifier.verify`` on
fresh proofs by itself ("proof"); and the bare ``cryptography`` verification of one proof's
signature ("floor", as in the verify benchmark). Ratios are per round: "proof / floor" is
what checking a proof costs in signatures; "dpop - bearer" what DPoP adds to a request
(the proof check, the replay store, the request URI).

``measure_dpop(replay_store=...)`` takes a factory of the replay store to measure with
(default: :class:`~resource_guard.dpop.MemoryReplayStore`), so a shared store (Redis on
loopback) gets a row of its own next to the memory one.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import AUDIENCE, CLIENT_ID, SCOPES
from benchmarks._stats import fmt, median, per_call, ratio, table
from benchmarks.verify_bench import floor_check
from resource_guard import TokenVerifier
from resource_guard._keyset import load_key
from resource_guard.dpop import DPoPKey, DPoPPolicy, MemoryReplayStore, ProofVerifier, ReplayStore
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeIssuer

ALGORITHMS = ("ES256", "EdDSA", "RS256")
URL = "https://api.bench/orders"
ReplayStoreFactory = Callable[[], ReplayStore]


@dataclass(frozen=True)
class DPoPRow:
    """Medians over the rounds (microseconds per request or proof)."""

    store: str
    algorithm: str
    bearer_us: float
    dpop_us: float
    added_us: float
    proof_us: float
    floor_us: float
    proof_ratio: float


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": "/orders",
        "raw_path": b"/orders",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.bench"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 443),
    }


async def _requests(app: Any, scopes: Sequence[dict[str, Any]]) -> float:
    """Microseconds per request; each scope is used once (a request never repeats)."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    clock = time.perf_counter
    start = clock()
    for scope in scopes:
        await app(scope, receive, send)
    elapsed = clock() - start
    if set(statuses) != {200}:
        raise AssertionError(f"the benchmark requests were refused: {sorted(set(statuses))}")
    return elapsed / len(scopes) * 1e6


async def _measure_one(
    algorithm: str, store: ReplayStoreFactory, rounds: int, iterations: int
) -> tuple[str, DPoPRow]:
    fake = FakeIssuer("https://idp.bench", audience=AUDIENCE, algorithm="ES256")
    key = DPoPKey.generate(algorithm)
    replay_store = store()
    policy = DPoPPolicy(replay_store=replay_store)
    verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client(), dpop=policy)
    app = BearerAuthMiddleware(
        _ok, verifier=verifier, manage_verifier=False, public_url="https://api.bench"
    )
    plain = fake.mint(scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200)
    bound = fake.mint(
        scopes=SCOPES, client_id=CLIENT_ID, expires_in=7200, claims={"cnf": {"jkt": key.thumbprint}}
    )
    checker = ProofVerifier()
    try:
        await verifier.start()
        await verifier.verify(plain)
        await verifier.verify(bound)
        bearer_scopes = [_scope([(b"authorization", f"Bearer {plain}".encode())])] * iterations
        floor = floor_check(_public_key(key), algorithm, key.proof("GET", URL, access_token=bound))
        times: dict[str, list[float]] = {name: [] for name in ("bearer", "dpop", "proof", "floor")}
        for _ in range(rounds):
            dpop_scopes = [
                _scope(
                    [
                        (b"authorization", f"DPoP {bound}".encode()),
                        (b"dpop", key.proof("GET", URL, access_token=bound).encode()),
                    ]
                )
                for _ in range(iterations)
            ]
            proofs = iter([key.proof("GET", URL, access_token=bound) for _ in range(iterations)])
            gc.collect()
            times["bearer"].append(await _requests(app, bearer_scopes))
            times["dpop"].append(await _requests(app, dpop_scopes))
            times["proof"].append(
                per_call(
                    lambda proofs=proofs: checker.verify(  # type: ignore[misc]
                        next(proofs), method="GET", url=URL, access_token=bound
                    ),
                    iterations,
                )
            )
            times["floor"].append(per_call(floor, iterations))
    finally:
        await verifier.aclose()
    label = type(replay_store).__name__
    return label, DPoPRow(
        store=label,
        algorithm=algorithm,
        bearer_us=median(times["bearer"]),
        dpop_us=median(times["dpop"]),
        added_us=median(d - b for d, b in zip(times["dpop"], times["bearer"], strict=True)),
        proof_us=median(times["proof"]),
        floor_us=median(times["floor"]),
        proof_ratio=median(map(ratio, times["proof"], times["floor"])),
    )


def _public_key(key: DPoPKey) -> Any:
    return load_key(key.public_jwk).key


def measure_dpop(
    *,
    algorithms: Sequence[str] = ALGORITHMS,
    replay_store: ReplayStoreFactory = MemoryReplayStore,
    rounds: int = 5,
    iterations: int = 500,
) -> list[DPoPRow]:
    """One row per algorithm, measured with stores made by ``replay_store``."""

    async def all_rows() -> list[DPoPRow]:
        return [
            (await _measure_one(algorithm, replay_store, rounds, iterations))[1]
            for algorithm in algorithms
        ]

    return asyncio.run(all_rows())


def render(rows: Sequence[DPoPRow]) -> str:
    """The table: per store and algorithm, µs per request and per proof."""
    return table(
        (
            "store",
            "proof alg",
            "bearer req",
            "DPoP req",
            "added",
            "proof check",
            "floor",
            "proof / floor",
        ),
        [
            (
                row.store,
                row.algorithm,
                fmt(row.bearer_us),
                fmt(row.dpop_us),
                fmt(row.added_us),
                fmt(row.proof_us),
                fmt(row.floor_us),
                f"{fmt(row.proof_ratio, 2)}x",
            )
            for row in rows
        ],
    )


REDIS_MISSING = (
    "redis-server is not installed: no Redis row (as root on Debian, `make packages` installs it)"
)
"""What to print instead of the Redis rows when :func:`measure_dpop_redis` returns none."""


def measure_dpop_redis(
    *, algorithms: Sequence[str] = ("ES256",), rounds: int = 5, iterations: int = 500
) -> list[DPoPRow]:
    """The rows of :func:`measure_dpop` with the Redis replay store: a redis-server started
    for the run on 127.0.0.1 (TCP, as a fleet on a fast network reaches it), one
    ``SET NX PX`` round trip per proof. Empty when redis-server is not installed."""
    from tests.redis_server import REDIS_SERVER, RedisServer

    from resource_guard.dpop.redis import RedisReplayStore

    if not os.access(REDIS_SERVER, os.X_OK):
        return []
    with tempfile.TemporaryDirectory() as directory, RedisServer(Path(directory)) as server:
        return measure_dpop(
            algorithms=algorithms,
            replay_store=lambda: RedisReplayStore(server.url, timeout=1.0),
            rounds=rounds,
            iterations=iterations,
        )


def render_round_trip(memory: Sequence[DPoPRow], shared: Sequence[DPoPRow]) -> str:
    """One line per algorithm: what the shared store adds to a DPoP request over memory."""
    by_algorithm = {row.algorithm: row for row in memory}
    return "\n".join(
        f"{row.store} adds {fmt(row.dpop_us - by_algorithm[row.algorithm].dpop_us)} µs per "
        f"DPoP request ({row.algorithm}) over {by_algorithm[row.algorithm].store}"
        for row in shared
        if row.algorithm in by_algorithm
    )
