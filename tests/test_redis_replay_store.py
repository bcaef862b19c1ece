"""RedisReplayStore against a real redis-server started by the suite (tests/redis_server.py):
one atomic ``SET NX PX`` per proof, namespaced hashed keys, expiry, and what happens when
Redis is down, unreachable or silent (503, or a logged "not seen" with ``fail_open``)."""

from __future__ import annotations

import ast
import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import resource_guard
from resource_guard import ReplayStoreUnavailableError
from resource_guard.dpop import ReplayStore
from resource_guard.dpop.redis import DEFAULT_NAMESPACE, MAX_TTL, RedisReplayStore
from tests.redis_server import RedisServer, free_port, require_redis_server

TIMEOUT = 0.2
SLACK = 1.0
"""Seconds a failure may take beyond the store's timeout on a busy test machine."""


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: tests share the session's server."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def store(redis_server: RedisServer, namespace: str) -> AsyncIterator[RedisReplayStore]:
    replay = RedisReplayStore(redis_server.url, namespace=namespace, timeout=TIMEOUT)
    yield replay
    await replay.aclose()


@pytest.fixture
async def inspector(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain client to look at what the store wrote."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel does) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_the_store_meets_the_replay_store_contract() -> None:
    store: ReplayStore = RedisReplayStore("redis://127.0.0.1:1/0")
    assert callable(store.seen_before)


async def test_a_proof_is_new_once_then_a_replay(store: RedisReplayStore) -> None:
    assert await store.seen_before("jti-1", 60) is False
    assert await store.seen_before("jti-1", 60) is True
    assert await store.seen_before("jti-2", 60) is False


async def test_an_id_is_forgotten_after_its_window(store: RedisReplayStore) -> None:
    assert await store.seen_before("short", 0.05) is False
    assert await store.seen_before("short", 0.05) is True
    await asyncio.sleep(0.15)  # Redis expires a key on access once its PX has passed
    assert await store.seen_before("short", 0.05) is False


async def test_concurrent_checks_of_one_id_let_exactly_one_through(
    redis_server: RedisServer, namespace: str
) -> None:
    """Across two stores (two connection pools, as two processes would have)."""
    first = RedisReplayStore(redis_server.url, namespace=namespace, timeout=2.0)
    second = RedisReplayStore(redis_server.unix_url, namespace=namespace, timeout=2.0)
    try:
        results = await asyncio.gather(
            *((first if index % 2 else second).seen_before("contended", 60) for index in range(40))
        )
    finally:
        await first.aclose()
        await second.aclose()
    assert sorted(results) == [False] + [True] * 39


async def test_namespaces_keep_stores_apart(redis_server: RedisServer, namespace: str) -> None:
    one = RedisReplayStore(redis_server.url, namespace=namespace + "a:")
    two = RedisReplayStore(redis_server.url, namespace=namespace + "b:")
    try:
        assert await one.seen_before("same", 60) is False
        assert await two.seen_before("same", 60) is False
        assert await one.seen_before("same", 60) is True
    finally:
        await one.aclose()
        await two.aclose()


async def test_keys_are_namespaced_digests_with_the_window_as_ttl(
    store: RedisReplayStore, inspector: aioredis.Redis, namespace: str
) -> None:
    long_id = "x" * 10_000
    assert await store.seen_before(long_id, 30) is False
    keys = await inspector.keys(namespace + "*")
    assert len(keys) == 1
    key = keys[0].decode() if isinstance(keys[0], bytes) else keys[0]
    assert key == store.key(long_id)
    assert len(key) == len(namespace) + 64
    assert "xxxx" not in key
    assert 29_000 < await inspector.pttl(key) <= 30_000


@pytest.mark.parametrize(
    ("expires_in", "low", "high"),
    [(float("nan"), MAX_TTL * 1000 - 5000, MAX_TTL * 1000), (1e12, 0, MAX_TTL * 1000), (-5, 0, 1)],
    ids=["nan", "huge", "negative"],
)
async def test_a_window_out_of_range_is_clamped(
    store: RedisReplayStore,
    inspector: aioredis.Redis,
    expires_in: float,
    low: float,
    high: float,
) -> None:
    assert await store.seen_before("clamped", expires_in) is False
    ttl = await inspector.pttl(store.key("clamped"))
    assert ttl == -2 or low <= ttl <= high  # -2: the 1 ms key is already gone


async def test_a_unix_socket_url_works(redis_server: RedisServer, namespace: str) -> None:
    store = RedisReplayStore(redis_server.unix_url, namespace=namespace)
    try:
        assert await store.seen_before("via-unix", 60) is False
        assert await store.seen_before("via-unix", 60) is True
        assert await store.ping() is True
    finally:
        await store.aclose()


async def test_a_stopped_redis_fails_closed_within_the_timeout(tmp_path: Path) -> None:
    require_redis_server()
    server = RedisServer(tmp_path).start()
    store = RedisReplayStore(server.url, timeout=TIMEOUT, retry_after=7)
    try:
        assert await store.seen_before("before", 60) is False
        server.stop()
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailableError) as caught:
            await store.seen_before("after", 60)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert caught.value.retry_after == 7
        assert "Redis" in caught.value.message
        assert await store.ping() is False
    finally:
        server.stop()
        await store.aclose()


async def test_an_unreachable_redis_fails_closed_at_once() -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{free_port()}/0", timeout=TIMEOUT)
    try:
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailableError, match="could not answer: ConnectionError"):
            await store.seen_before("jti", 60)
        assert time.monotonic() - started < TIMEOUT + SLACK
    finally:
        await store.aclose()


async def test_a_silent_redis_fails_closed_after_the_timeout(silent_port: int) -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{silent_port}/0", timeout=TIMEOUT)
    try:
        started = time.monotonic()
        with pytest.raises(ReplayStoreUnavailableError, match="timed out"):
            await store.seen_before("jti", 60)
        elapsed = time.monotonic() - started
        assert TIMEOUT * 0.9 <= elapsed < TIMEOUT * 2 + SLACK
        assert await store.ping() is False
    finally:
        await store.aclose()


async def test_the_outer_deadline_bounds_a_client_without_timeouts(silent_port: int) -> None:
    """A caller's client may have no socket timeout: the store's own deadline still holds."""
    client = aioredis.Redis(host="127.0.0.1", port=silent_port, socket_timeout=None)
    store = RedisReplayStore(client=client, timeout=TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ReplayStoreUnavailableError, match="timed out"):
        await store.seen_before("jti", 60)
    assert time.monotonic() - started < TIMEOUT + SLACK
    await store.aclose()
    await client.aclose()


async def test_fail_open_lets_the_proof_through_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RedisReplayStore(f"redis://127.0.0.1:{free_port()}/0", timeout=TIMEOUT, fail_open=True)
    try:
        with caplog.at_level(logging.WARNING, logger="resource_guard.dpop"):
            assert await store.seen_before("jti", 60) is False
            assert await store.seen_before("jti", 60) is False  # no replay check is possible
    finally:
        await store.aclose()
    warnings = [record for record in caplog.records if record.name == "resource_guard.dpop"]
    assert len(warnings) == 1
    assert "fail_open" in warnings[0].getMessage()
    assert "127.0.0.1" not in warnings[0].getMessage()


async def test_a_client_given_is_used_and_left_open(
    redis_server: RedisServer, namespace: str
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    store = RedisReplayStore(client=client, namespace=namespace)
    try:
        assert await store.seen_before("mine", 60) is False
        await store.aclose()
        assert await client.exists(namespace.encode() + b"x") == 0  # still usable
    finally:
        await client.aclose()


def test_repr_shows_no_url_or_password() -> None:
    store = RedisReplayStore("redis://user:hunter2@127.0.0.1:6379/0")
    assert repr(store) == (
        f"RedisReplayStore(namespace={DEFAULT_NAMESPACE!r}, timeout=0.25, fail_open=False)"
    )


BAD: Any = 5
"""A value of the wrong type."""


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "exactly one of url="),
        ({"url": "redis://h/0", "client": aioredis.Redis()}, ValueError, "exactly one of url="),
        ({"url": "http://127.0.0.1:6379"}, ValueError, "must start with redis://"),
        ({"url": BAD}, TypeError, "url must be a str"),
        ({"url": "redis://127.0.0.1:port/0"}, ValueError, "not a valid Redis URL"),
        ({"client": BAD}, TypeError, "redis.asyncio.Redis"),
        ({"url": "redis://h/0", "namespace": ""}, ValueError, "namespace"),
        ({"url": "redis://h/0", "namespace": BAD}, ValueError, "namespace"),
        ({"url": "redis://h/0", "namespace": "n" * 201}, ValueError, "namespace"),
        ({"url": "redis://h/0", "fail_open": "yes"}, TypeError, "fail_open must be a bool"),
        ({"url": "redis://h/0", "timeout": 0}, ValueError, "timeout"),
        ({"url": "redis://h/0", "timeout": "1"}, TypeError, "timeout"),
        ({"url": "redis://h/0", "retry_after": -1}, ValueError, "retry_after"),
        ({"url": "redis://h/0", "max_connections": 0}, ValueError, "max_connections"),
    ],
    ids=[
        "neither",
        "both",
        "http-url",
        "int-url",
        "bad-port",
        "int-client",
        "empty-namespace",
        "int-namespace",
        "long-namespace",
        "str-fail-open",
        "zero-timeout",
        "str-timeout",
        "negative-retry-after",
        "no-connections",
    ],
)
def test_a_bad_configuration_fails_at_construction(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RedisReplayStore(**options)


def test_a_missing_redis_server_skips_where_it_cannot_be_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        require_redis_server(tmp_path / "redis-server")


def test_a_missing_redis_server_fails_where_make_test_installs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    with pytest.raises(pytest.fail.Exception, match="make packages"):
        require_redis_server(tmp_path / "redis-server")


def test_only_the_redis_module_imports_redis() -> None:
    """The redis extra stays optional: no other module of the package needs it."""
    source = Path(resource_guard.__file__).parent
    importers = set()
    for path in source.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            if any(name == "redis" or name.startswith("redis.") for name in names):
                importers.add(path.relative_to(source).as_posix())
    assert importers == {"dpop/redis.py"}


def test_the_benchmark_measures_a_redis_row() -> None:
    """``benchmarks/dpop_bench.py``'s Redis row runs (one tiny round, its own server)."""
    from benchmarks import dpop_bench

    require_redis_server()
    memory = dpop_bench.measure_dpop(algorithms=("ES256",), rounds=1, iterations=3)
    shared = dpop_bench.measure_dpop_redis(rounds=1, iterations=3)
    assert [(row.store, row.algorithm) for row in shared] == [("RedisReplayStore", "ES256")]
    assert shared[0].dpop_us > 0
    assert "RedisReplayStore adds" in dpop_bench.render_round_trip(memory, shared)


def test_the_benchmark_skips_the_redis_row_without_redis_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from benchmarks import dpop_bench

    monkeypatch.setattr("tests.redis_server.REDIS_SERVER", Path("/nonexistent/redis-server"))
    assert dpop_bench.measure_dpop_redis(rounds=1, iterations=1) == []


async def test_a_burst_beyond_the_pool_waits_for_a_connection(
    redis_server: RedisServer, namespace: str
) -> None:
    store = RedisReplayStore(redis_server.url, namespace=namespace, max_connections=2, timeout=2.0)
    try:
        results = await asyncio.gather(*(store.seen_before(f"jti-{n}", 60) for n in range(30)))
    finally:
        await store.aclose()
    assert results == [False] * 30


async def test_closing_twice_is_harmless(redis_server: RedisServer, namespace: str) -> None:
    """Verifiers sharing one policy each close its store at shutdown."""
    store = RedisReplayStore(redis_server.url, namespace=namespace, timeout=TIMEOUT)
    assert await store.seen_before("once", 5) is False
    await store.aclose()
    await store.aclose()
